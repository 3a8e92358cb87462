"""The `careline` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from careline.supervisor import StackError, find_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="careline", description="CareLine clinic assistant")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="start Redis (if needed), the action server, Rasa and the gateway")

    ev = sub.add_parser("eval", help="evaluation reports (JSON on stdout)")
    ev_sub = ev.add_subparsers(dest="what", required=True)
    nlu = ev_sub.add_parser("nlu", help="intent classification on cases {id, text, intent}")
    nlu.add_argument("--cases", required=True, type=Path, help="JSON Lines file of cases")
    nlu.add_argument("--model", type=Path, help="model archive (default: newest in models/, or the running Rasa)")

    rag = ev_sub.add_parser("rag", help="retrieval and answering on cases {id, question, relevant | answerable}")
    rag.add_argument("--cases", required=True, type=Path, help="JSON Lines file of cases")

    tri = ev_sub.add_parser("triage", help="one-shot triage of narratives {id, text, expected}")
    tri.add_argument("--cases", required=True, type=Path, help="JSON Lines file of cases")
    saf = ev_sub.add_parser("safety", help="the safety screen on messages {id, text, expected: emergency|crisis|none}")
    saf.add_argument("--cases", required=True, type=Path, help="JSON Lines file of cases")

    kb = sub.add_parser("kb", help="the knowledge base: ingest, stats, search")
    kb_sub = kb.add_subparsers(dest="what", required=True)
    ing = kb_sub.add_parser("ingest", help="index MedQuAD and the clinic files into Chroma (re-runnable)")
    ing.add_argument("--folders", help="comma-separated MedQuAD folders (default: all nine)")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    kb_sub.add_parser("stats", help="what the store holds")
    cal = kb_sub.add_parser("calibrate", help="fit the answer/abstain model on labelled RAG cases")
    cal.add_argument("--cases", required=True, type=Path)
    se = kb_sub.add_parser("search", help="retrieve passages for a question")
    se.add_argument("query")
    se.add_argument("-k", type=int, default=5)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        root = find_root()
        if args.command == "run":
            from careline.supervisor import run_forever
            return run_forever(root)
        if args.command == "eval" and args.what == "nlu":
            from careline.eval_nlu import evaluate
            if not args.cases.exists():
                print(f"error: no such file: {args.cases}", file=sys.stderr)
                return 2
            json.dump(evaluate(root, args.cases, args.model), sys.stdout, indent=2)
            print()
            return 0
        if args.command == "eval" and args.what == "rag":
            from careline.kb import evaluate_rag
            if not args.cases.exists():
                print(f"error: no such file: {args.cases}", file=sys.stderr)
                return 2
            json.dump(evaluate_rag(root, args.cases), sys.stdout, indent=2)
            print()
            return 0
        if args.command == "eval" and args.what in ("triage", "safety"):
            from careline.eval_triage import evaluate_safety, evaluate_triage
            if not args.cases.exists():
                print(f"error: no such file: {args.cases}", file=sys.stderr)
                return 2
            report = evaluate_triage(args.cases) if args.what == "triage" else evaluate_safety(args.cases)
            json.dump(report, sys.stdout, indent=2)
            print()
            return 0
        if args.command == "kb":
            from careline import kb
            if args.what == "ingest":
                folders = [f for f in (args.folders or "").split(",") if f] or None
                result = kb.run_ingest(root, folders, progress=not args.quiet)
                print(json.dumps({k: v for k, v in result.items() if k != "curation"}, indent=2))
                print("curation:", json.dumps(result["curation"].get("changed", {})), file=sys.stderr)
                return 0
            if args.what == "calibrate":
                print(json.dumps(kb.calibrate(root, args.cases), indent=2))
                return 0
            if args.what == "stats":
                print(json.dumps(kb.stats(root), indent=2))
                return 0
            if args.what == "search":
                print(json.dumps(kb.search(root, args.query, args.k), indent=2))
                return 0
    except (StackError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
