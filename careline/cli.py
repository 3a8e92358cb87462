"""The `careline` command."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from pathlib import Path

from careline.supervisor import StackError, find_root


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        root = find_root()
        if args.command in ("retention", "patient"):
            return _privacy_command(root, args)
        if args.command == "run":
            from careline.supervisor import run_forever

            return run_forever(root)
        if args.command == "eval":
            return _eval_command(root, args)
        if args.command == "kb":
            return _kb_command(root, args)
        if args.command == "staff":
            return _staff_command(root, args)
        if args.command in ("schedule", "appointments", "db"):
            return _schedule_command(root, args)
        if args.command == "worker":
            return _worker_command(root)
    except (StackError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="careline", description="CareLine clinic assistant")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start Redis (if needed), the action server, Rasa and the gateway")
    _add_eval_parsers(sub)
    _add_kb_parsers(sub)
    _add_privacy_parsers(sub)
    _add_staff_parsers(sub)
    _add_schedule_parsers(sub)
    sub.add_parser(
        "worker", help="send reminders, one-time codes and waitlist offers (without the gateway's own worker)"
    )
    return parser


def _add_eval_parsers(sub) -> None:
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


def _add_kb_parsers(sub) -> None:
    kb = sub.add_parser("kb", help="the knowledge base: ingest, stats, search")
    kb_sub = kb.add_subparsers(dest="what", required=True)
    ing = kb_sub.add_parser("ingest", help="index MedQuAD and the clinic files into Chroma (re-runnable)")
    ing.add_argument("--folders", help="comma-separated MedQuAD folders (default: all nine)")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    kb_sub.add_parser("stats", help="what the store holds")
    cal = kb_sub.add_parser("calibrate", help="fit the answer/abstain model on labelled RAG cases")
    cal.add_argument(
        "--cases", required=True, type=Path, action="append", help="JSON Lines file of cases; repeat to fit on several"
    )
    se = kb_sub.add_parser("search", help="retrieve passages for a question")
    se.add_argument("query")
    se.add_argument("-k", type=int, default=5)


def _add_privacy_parsers(sub) -> None:
    ret = sub.add_parser("retention", help="data retention (RETENTION_DAYS from the first message)")
    ret_sub = ret.add_subparsers(dest="what", required=True)
    ret_sub.add_parser("sweep", help="erase every conversation older than the retention (re-runnable; for cron)")

    pat = sub.add_parser("patient", help="one patient's data: export it, or erase it")
    pat_sub = pat.add_subparsers(dest="what", required=True)
    for name, text in (
        ("export", "print everything held about a patient as JSON (writes a privacy_audit row)"),
        ("erase", "erase a patient's data everywhere but the consent and audit records"),
    ):
        cmd = pat_sub.add_parser(name, help=text)
        cmd.add_argument("--channel", required=True, choices=["sms", "web", "api"])
        cmd.add_argument(
            "--address",
            required=True,
            help="sms: the number (+15551234567); web: the chat token; api: the conversation_id",
        )
        cmd.add_argument("--actor", help="who asked, for the privacy audit (default: your user name)")
        if name == "export":
            cmd.add_argument("--output", type=Path, help="write the JSON to this file (mode 0600) instead of stdout")
        else:
            cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _add_staff_parsers(sub) -> None:
    staff = sub.add_parser("staff", help="staff accounts of the console at /staff")
    staff_sub = staff.add_subparsers(dest="what", required=True)
    add = staff_sub.add_parser("add", help="create a staff account (Argon2id-hashed password)")
    add.add_argument("email")
    add.add_argument("--role", required=True, choices=["agent", "supervisor"])
    add.add_argument("--name", help="display name (default: the part of the email before @)")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (without it, it is asked on the terminal)",
    )
    for name, text in (
        ("disable", "disable an account and end its open sessions"),
        ("enable", "enable an account again (also lifts a lockout)"),
    ):
        staff_sub.add_parser(name, help=text).add_argument("email")
    staff_sub.add_parser("list", help="the enabled accounts (JSON)")


def _eval_command(root: Path, args) -> int:
    if not args.cases.exists():
        print(f"error: no such file: {args.cases}", file=sys.stderr)
        return 2
    if args.what == "nlu":
        from careline.eval_nlu import evaluate

        report = evaluate(root, args.cases, args.model)
    elif args.what == "rag":
        from careline.kb import evaluate_rag

        report = evaluate_rag(root, args.cases)
    else:
        from careline.eval_triage import evaluate_safety, evaluate_triage

        report = evaluate_triage(args.cases) if args.what == "triage" else evaluate_safety(args.cases)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


def _kb_command(root: Path, args) -> int:
    from careline import kb

    if args.what == "ingest":
        folders = [f for f in (args.folders or "").split(",") if f] or None
        result = kb.run_ingest(root, folders, progress=not args.quiet)
        print(json.dumps({k: v for k, v in result.items() if k != "curation"}, indent=2))
        print("curation:", json.dumps(result["curation"].get("changed", {})), file=sys.stderr)
        return 0
    if args.what == "calibrate":
        print(json.dumps(kb.calibrate(root, args.cases), indent=2))
    elif args.what == "stats":
        print(json.dumps(kb.stats(root), indent=2))
    else:
        print(json.dumps(kb.search(root, args.query, args.k), indent=2))
    return 0


# --- privacy: retention sweep, export, erasure ------------------------------------------------
EXIT_DECLINED = 1  # erase not confirmed
EXIT_USAGE = 2  # bad arguments or settings
EXIT_UNAVAILABLE = 3  # Redis or the database cannot be reached


def privacy_settings(root: Path, environ: dict[str, str] | None = None):
    """The gateway's settings as `make run` gives them to it: CONVERSATION_SECRET and
    DATA_ENCRYPTION_KEY from the environment, else from var/ (never created here: another secret
    would give other pseudonyms), else .env. REDIS_URL from the environment or .env, else var/redis_url
    (written by the stack for its private Redis); it must be set somewhere, so an erasure never runs
    against the wrong Redis and reports success."""
    from pydantic import ValidationError

    from careline.settings import Settings

    environ = os.environ if environ is None else environ
    overrides = {}
    for name, file in (("conversation_secret", "conversation_secret"), ("data_encryption_key", "data_key")):
        path = root / "var" / file
        if name.upper() not in environ and path.exists():
            overrides[name] = path.read_text().strip()
    try:
        settings = Settings(_env_file=root / ".env", **overrides)
    except ValidationError as exc:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    if "redis_url" not in settings.model_fields_set:
        path = root / "var" / "redis_url"
        if not path.exists():
            raise ValueError(
                "REDIS_URL is not set: set it to the gateway's Redis (with `make run` and no REDIS_URL, "
                "the private Redis's address is in var/redis_url while the stack runs)"
            )
        settings = settings.model_copy(update={"redis_url": path.read_text().strip()})
    return settings


def _redacted(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _privacy_command(root: Path, args) -> int:
    import asyncio

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import OperationalError

    from channels.privacy import PrivacyError, normalise_address

    settings = privacy_settings(root)
    actor = getattr(args, "actor", None) or _user()
    address = None
    if args.command == "patient":
        try:
            address = normalise_address(args.channel, args.address)
        except PrivacyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.what == "erase" and not args.yes:
            refused = _confirm_erase(settings, args, address)
            if refused is not None:
                return refused
    try:
        result = asyncio.run(_run_privacy(root, settings, args, address, actor))
    except (RedisConnectionError, RedisTimeoutError) as exc:
        print(f"error: cannot reach Redis at {_redacted(settings.redis_url)}: {type(exc).__name__}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except OperationalError as exc:
        print(f"error: cannot use the database: {exc.orig.__class__.__name__}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    text = json.dumps(result, indent=2, ensure_ascii=False, default=str)
    if args.command == "patient" and args.what == "export":
        return _print_export(result, text, args.output)
    print(text)
    return 0


def _confirm_erase(settings, args, address: str) -> int | None:
    """Asks on the terminal; the exit code when the erasure must not go ahead, else None."""
    from channels.pseudonym import conversation_key

    key = conversation_key(settings.conversation_secret, args.channel, address)
    if not sys.stdin.isatty():
        print("error: refusing to erase without --yes (no terminal to ask on)", file=sys.stderr)
        return EXIT_USAGE
    answer = input(
        f"Erase everything held about this {args.channel} patient (conversation {key}) "
        "except the consent and audit records? Type 'erase' to confirm: "
    )
    if answer.strip().lower() != "erase":
        print("not erased", file=sys.stderr)
        return EXIT_DECLINED
    return None


async def _run_privacy(root: Path, settings, args, address: str | None, actor: str) -> dict:
    from redis.asyncio import Redis

    from channels.db import default_database_url, make_engine
    from channels.privacy import Privacy

    redis = Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=5)
    engine = make_engine(settings.database_url or default_database_url(root))
    try:
        await redis.ping()
        privacy = Privacy.from_settings(redis, engine, settings)
        if args.command == "retention":
            return await privacy.sweep(actor=actor)
        if args.what == "export":
            return await privacy.export(args.channel, address, actor=actor)
        return await privacy.erase(args.channel, address, actor=actor)
    finally:
        await redis.aclose()
        engine.dispose()


def _print_export(result: dict, text: str, output: Path | None) -> int:
    if not result.get("found"):
        print(
            "note: nothing is held for this address (check the channel and the address, and that "
            "CONVERSATION_SECRET is the gateway's)",
            file=sys.stderr,
        )
    if output:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise: this is patient data
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        print(f"exported to {output}", file=sys.stderr)
        return 0
    print(text)
    return 0


# --- the scheduling worker --------------------------------------------------------------------
def _worker_command(root: Path) -> int:
    """The gateway's scheduling worker on its own (careline/scheduling/worker.py), until Ctrl-C or
    SIGTERM. Safe alongside the gateway's (each message is claimed once); set SCHEDULING_WORKER=false
    in the gateway to run only this one."""
    import asyncio

    from careline.scheduling.worker import run_standalone

    logging.getLogger("careline.scheduling").setLevel(logging.INFO)
    asyncio.run(run_standalone(privacy_settings(root)))
    return 0


# --- staff accounts ---------------------------------------------------------------------------
def staff_database_url(root: Path) -> str:
    """DATABASE_URL from the environment or .env, else the SQLite file under var/. Not through
    Settings: it demands a CONVERSATION_SECRET, which these commands do not use and which does not
    exist before the first `make run`."""
    from pydantic_settings import BaseSettings, SettingsConfigDict

    from channels.db import default_database_url

    class Database(BaseSettings):
        model_config = SettingsConfigDict(env_file=root / ".env", env_file_encoding="utf-8", extra="ignore")
        database_url: str | None = None

    return Database().database_url or default_database_url(root)


def _staff_command(root: Path, args) -> int:
    from sqlalchemy.exc import OperationalError

    from channels.db import make_engine
    from channels.staff.accounts import StaffAccounts, StaffError

    engine = None
    try:
        engine = make_engine(staff_database_url(root))
        staff = StaffAccounts(engine)
        if args.what == "add":
            member = staff.add(args.email, args.role, _read_password(args), args.name)
            print(f"added {member.role} {member.email} (id {member.id})")
        elif args.what == "disable":
            member = staff.disable(args.email)
            print(f"disabled {member.email} (id {member.id})")
            return _end_staff_sessions(root, member.id)
        elif args.what == "enable":
            member = staff.enable(args.email)
            print(f"enabled {member.role} {member.email} (id {member.id})")
        else:
            print(json.dumps([m.to_dict() for m in staff.list()], indent=2))
        return 0
    except StaffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OperationalError as exc:
        print(f"error: cannot use the database: {exc.orig.__class__.__name__}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        if engine is not None:
            engine.dispose()


def _read_password(args) -> str:
    from channels.staff.accounts import StaffError

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise StaffError("no terminal to ask the password on: pipe it in with --password-stdin")
    password = getpass.getpass("Password (12 characters or more): ")
    if getpass.getpass("The same again: ") != password:
        raise StaffError("the two passwords differ")
    return password


def _end_staff_sessions(root: Path, staff_id: int) -> int:
    """End a disabled member's open sessions in the gateway's Redis (found as `patient erase`
    finds it). Unreachable, the sessions stay usable until they idle out: exit 3, and say so."""
    import asyncio

    from redis.exceptions import RedisError

    try:
        settings = privacy_settings(root)
    except ValueError as exc:
        print(f"note: open sessions not looked for, the gateway's Redis is not known here: {exc}", file=sys.stderr)
        return 0
    try:
        ended = asyncio.run(_end_all_sessions(settings, staff_id))
    except (RedisError, OSError) as exc:
        print(
            f"error: cannot reach Redis at {_redacted(settings.redis_url)} ({type(exc).__name__}): the account is "
            "disabled, but its open sessions last until they are idle for STAFF_IDLE_TIMEOUT_SECONDS; "
            "run this again when Redis is reachable",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    print(f"ended {ended} open session(s)")
    return 0


async def _end_all_sessions(settings, staff_id: int) -> int:
    from redis.asyncio import Redis

    from channels.staff.sessions import StaffSessions

    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        return await StaffSessions(redis, prefix=settings.redis_key_prefix).end_all(staff_id)
    finally:
        await redis.aclose()


# --- the schedule: load it, list appointments, migrate the database ----------------------------
def _add_schedule_parsers(sub) -> None:
    sched = sub.add_parser("schedule", help="the clinic's schedule (SCHEDULE_FILE) and its slots")
    load = sched.add_subparsers(dest="what", required=True).add_parser(
        "load", help="load the schedule file and make the slots ahead (re-runnable; prints counts)"
    )
    load.add_argument("--file", type=Path, help="the schedule file (default: SCHEDULE_FILE)")
    load.add_argument("--days", type=int, help="days of slots from today (default: SCHEDULE_DAYS_AHEAD)")
    appts = sub.add_parser("appointments", help="appointments, for operators (ids only: no names or numbers)")
    listing = appts.add_subparsers(dest="what", required=True).add_parser("list", help="appointments by start")
    listing.add_argument("--json", action="store_true", help="a JSON array (the default is one line each)")
    listing.add_argument("--from", dest="start", type=_iso_date, help="first day, YYYY-MM-DD (default: today)")
    listing.add_argument("--to", dest="end", type=_iso_date, help="last day, YYYY-MM-DD (default: 7 days on)")
    listing.add_argument("--provider", help="a provider id")
    db = sub.add_parser("db", help="the database's schema (Alembic migrations)")
    db_sub = db.add_subparsers(dest="what", required=True)
    db_sub.add_parser("upgrade", help="migrate the database to the newest revision")
    db_sub.add_parser("current", help="print the database's revision")


def _iso_date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _schedule_command(root: Path, args) -> int:
    from sqlalchemy.exc import OperationalError

    from careline.migrations import current_revision, migrate
    from channels.db import make_engine

    engine = None
    try:
        engine = make_engine(staff_database_url(root))
        if args.command == "db":
            if args.what == "upgrade":
                print("migrated" if migrate(engine) else "already at the newest revision")
            print(current_revision(engine))
            return 0
        if args.command == "schedule":
            return _load_schedule(root, engine, args)
        return _list_appointments(root, engine, args)
    except OperationalError as exc:
        print(f"error: cannot use the database: {exc.orig.__class__.__name__}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        if engine is not None:
            engine.dispose()


def _clinic_timezone(root: Path) -> str:
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Clinic(BaseSettings):
        model_config = SettingsConfigDict(env_file=root / ".env", env_file_encoding="utf-8", extra="ignore")
        clinic_timezone: str = "America/New_York"

    return Clinic().clinic_timezone


def _load_schedule(root: Path, engine, args) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from careline.scheduling.calendar import load_schedule, schedule_path, sync_slots
    from careline.settings import SchedulingSettings

    settings = SchedulingSettings(_env_file=root / ".env")
    timezone = _clinic_timezone(root)
    today = datetime.now(ZoneInfo(timezone)).date()
    path = args.file or schedule_path(settings.schedule_file)
    loaded = load_schedule(engine, path, today)
    slots = sync_slots(engine, timezone, today, args.days or settings.schedule_days_ahead)
    print(json.dumps({"file": str(path), "changed": loaded, "slots": slots}, indent=2))
    return 0


def _list_appointments(root: Path, engine, args) -> int:
    from datetime import datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from careline.scheduling.sql import SqlScheduler

    tz = ZoneInfo(_clinic_timezone(root))
    first = args.start or datetime.now(tz).date()
    last = args.end or first + timedelta(days=7)
    if last < first:
        print("error: --to is before --from", file=sys.stderr)
        return EXIT_USAGE
    start, end = (datetime.combine(d, time(), tz) for d in (first, last + timedelta(days=1)))
    found = SqlScheduler(engine, timezone=str(tz)).appointments_between(start, end, args.provider)
    rows = [
        {
            "id": a.id,
            "start": a.start.astimezone(tz).isoformat(),
            "end": a.end.astimezone(tz).isoformat(),
            "provider": a.provider_id,
            "location": a.location_id,
            "visit_type": a.visit_type,
            "status": str(a.status),
            "patient_id": a.patient_id,
        }
        for a in found
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    for r in [] if args.json else rows:
        print(
            f"{r['start'][:16]}  {r['provider']:<10} {r['location']:<8} {r['visit_type']:<14} {r['status']:<16} "
            f"appointment {r['id']}  patient {r['patient_id']}"
        )
    return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
