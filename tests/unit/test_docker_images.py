"""What the images in docker/ are built from (no Docker engine here: the COPY lines are read and
.dockerignore applied as Docker applies it): no stand-in, test, data, model or secret goes in, and
nothing that goes in imports careline.standins."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
NEVER_IN_AN_IMAGE = ("careline/standins/", "careline/bench", "tests/", "var/", "models/", ".env", ".git/", ".venv")
# The one mention allowed: `make run` with SMS_SANDBOX=1 starts the stand-in as a process of its own
# (`python -m careline.standins.twilio_api`); no image runs `careline run`.
SANDBOX_ONLY = {"careline/supervisor.py"}


def _regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus ** for any number of folders)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(out + r"\Z")


def ignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _regex(line.removeprefix("!").strip("/"))))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or a folder above it decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, pattern in rules:
        if any(pattern.match(p) for p in prefixes):
            result = not negated
    return result


def copied_files(dockerfile: Path, root: Path = ROOT) -> list[str]:
    """The context files a Dockerfile's COPY lines take, after .dockerignore."""
    ignore = root / ".dockerignore"
    rules = ignore_rules(ignore.read_text(encoding="utf-8")) if ignore.is_file() else []
    files = []
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        for source in [w for w in words[1:-1] if not w.startswith("--")]:
            path = root / source
            found = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            files += [rel for p in found if not ignored(rel := p.relative_to(root).as_posix(), rules)]
    return sorted(files)


def standins_mentions(path: Path) -> list[int]:
    """Lines that import careline.standins, or name it for a process to run."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        else:
            continue
        if any(n.startswith("careline.standins") for n in names):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_matcher_reads_dockerignore_as_docker_does(tmp_path):
    rules = ignore_rules("# comment\ncareline/standins\ncareline/bench*.py\n**/__pycache__\ntests\n!tests/keep.py\n")
    assert ignored("careline/standins/twilio_api.py", rules) and ignored("careline/standins", rules)
    assert ignored("careline/bench_sms.py", rules) and not ignored("careline/benchmarks/x.txt", rules)
    assert ignored("channels/__pycache__/app.cpython-311.pyc", rules) and ignored("__pycache__/a.pyc", rules)
    assert ignored("tests/unit/test_x.py", rules) and not ignored("tests/keep.py", rules)
    assert not ignored("careline/contracts.py", rules) and not ignored("careline/standins_list.py", rules)

    (tmp_path / "pkg" / "standins").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("")
    (tmp_path / "pkg" / "standins" / "b.py").write_text("")
    (tmp_path / "Dockerfile").write_text("FROM x\nCOPY --chown=1 pkg ./pkg\nCOPY --from=build /a /a\n")
    assert copied_files(tmp_path / "Dockerfile", tmp_path) == ["pkg/a.py", "pkg/standins/b.py"]
    (tmp_path / ".dockerignore").write_text("pkg/standins\n")
    assert copied_files(tmp_path / "Dockerfile", tmp_path) == ["pkg/a.py"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_standin_test_data_model_or_secret_goes_into_an_image(dockerfile):
    files = copied_files(dockerfile)
    assert files, "a Dockerfile that copies nothing: the COPY lines were not read"
    leaked = [f for f in files if f.startswith(NEVER_IN_AN_IMAGE) or "__pycache__" in f]
    assert not leaked, f"{dockerfile.name} would copy {leaked[:5]}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_nothing_in_an_image_imports_the_standins(dockerfile):
    mentions = {
        f: lines
        for f in copied_files(dockerfile)
        if f.endswith(".py") and (lines := standins_mentions(ROOT / f)) and f not in SANDBOX_ONLY
    }
    assert not mentions, f"{dockerfile.name}: careline.standins named in {mentions}"


def test_the_scan_finds_an_import_of_the_standins(tmp_path):
    code = tmp_path / "x.py"
    code.write_text(
        "import os\ndef f():\n    from careline.standins.twilio_api import sign\n"
        "from careline import standins\nimport careline.standins.http\n"
    )
    assert standins_mentions(code) == [3, 4, 5]


def test_the_gateway_and_actions_images_have_what_their_services_import():
    for name in ("gateway.Dockerfile", "actions.Dockerfile"):
        files = set(copied_files(ROOT / "docker" / name))
        assert {"channels/app.py", "careline/contracts.py", "careline/gsm7.py", "pyproject.toml"} <= files
        assert "knowledge/messages/en.yml" in files and "actions/__init__.py" in files
