"""`careline schedule load`, `careline appointments list` and `careline db`, on a SQLite file."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from careline.cli import main
from careline.migrations import HEAD
from careline.scheduling.calendar import generate_slots, load_schedule
from careline.scheduling.model import SlotQuery
from careline.scheduling.sql import SqlScheduler
from channels.db import make_engine
from tests.helpers import ROOT

TZ = ZoneInfo("America/New_York")
MONDAY = date(2026, 12, 14)


@pytest.fixture
def database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'careline.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CLINIC_TIMEZONE", "America/New_York")
    monkeypatch.chdir(ROOT)
    return url


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_schedule_load_makes_slots_once(database, capsys):
    code, out, _ = run(capsys, "schedule", "load", "--days", "7")
    first = json.loads(out)
    assert code == 0 and first["changed"]["providers"] == 4 and first["slots"]["created"] > 100
    code, out, _ = run(capsys, "schedule", "load", "--days", "7")
    again = json.loads(out)
    assert set(again["changed"].values()) == {0} and again["slots"]["created"] == 0


def test_a_bad_schedule_file_is_a_clear_error(database, capsys, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        (ROOT / "knowledge/clinic/schedule.yml").read_text().replace("provider: patel,", "provider: nobody,", 1)
    )
    code, _, err = run(capsys, "schedule", "load", "--file", str(bad))
    assert code == 2 and "bad.yml line" in err and "exceptions[0].provider: unknown provider 'nobody'" in err


def test_appointments_list_gives_ids_and_times_but_no_names(database, capsys):
    engine = make_engine(database)
    load_schedule(engine, ROOT / "knowledge/clinic/schedule.yml", MONDAY)
    generate_slots(engine, "America/New_York", MONDAY, 7, now=datetime(2026, 12, 1, tzinfo=TZ))
    scheduler = SqlScheduler(engine, timezone="America/New_York")
    patient = scheduler.create_patient("Zelda Fitzgerald", date(1990, 7, 24), "+15555550185")
    start = datetime.combine(MONDAY, datetime.min.time(), TZ)
    slots = scheduler.find_slots(SlotQuery(start, start + timedelta(days=7), limit=200), now=start)
    booked = [scheduler.book(s.id, patient.id, "follow_up", now=start) for s in (slots[0], slots[-1])]
    engine.dispose()
    code, out, _ = run(capsys, "appointments", "list", "--json", "--from", "2026-12-14", "--to", "2026-12-20")
    rows = json.loads(out)
    assert code == 0 and [r["id"] for r in rows] == [a.id for a in booked]
    assert set(rows[0]) == {"id", "start", "end", "provider", "location", "visit_type", "status", "patient_id"}
    assert rows[0]["start"].endswith("-05:00") and rows[0]["start"].startswith("2026-12-14T08:")
    assert "zelda" not in out.lower() and "0185" not in out and "1990" not in out
    code, out, _ = run(capsys, "appointments", "list", "--json", "--from", "2026-12-14", "--to", "2026-12-14")
    assert [r["id"] for r in json.loads(out)] == [booked[0].id]
    code, out, _ = run(capsys, "appointments", "list", "--from", "2026-12-14", "--provider", "nobody", "--json")
    assert json.loads(out) == []
    code, out, _ = run(capsys, "appointments", "list", "--from", "2026-12-14")
    assert code == 0 and f"appointment {booked[0].id}" in out


@pytest.mark.parametrize("args", [["--from", "2026-13-01"], ["--to", "tomorrow"], ["--from", "14/12/2026"]])
def test_a_bad_date_is_exit_code_2_with_a_clear_message(database, capsys, args):
    with pytest.raises(SystemExit) as exited:
        main(["appointments", "list", "--json", *args])
    assert exited.value.code == 2 and "expected a date as YYYY-MM-DD" in capsys.readouterr().err


def test_to_before_from_is_refused(database, capsys):
    code, _, err = run(capsys, "appointments", "list", "--from", "2026-12-14", "--to", "2026-12-13")
    assert code == 2 and "--to is before --from" in err


def test_db_upgrade_and_current(database, capsys):
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and out.split()[-1] == HEAD
    code, out, _ = run(capsys, "db", "current")
    assert code == 0 and out.strip() == HEAD
