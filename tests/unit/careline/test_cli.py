import subprocess
import sys

from tests.helpers import ROOT


def run(*args):
    return subprocess.run([sys.executable, "-m", "careline.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_missing_cases_file_is_a_clear_error():
    result = run("eval", "nlu", "--cases", "/nonexistent.jsonl")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_malformed_cases_are_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    result = run("eval", "nlu", "--cases", str(bad))
    assert result.returncode == 2 and "bad.jsonl:1" in result.stderr
