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
    except (StackError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
