"""House rules that a reader checks by eye, checked here so they hold: no function in the source
packages is over 60 lines unless the README's Files section lists it, with the reason, under
`### Functions over 60 lines`; and a listed function that is gone or no longer long is a stale
exemption, which fails too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actions", "channels", "knowledge", "careline")
MAX_LINES = 60
SECTION = "### Functions over 60 lines"
# - `channels/app.py:create_app`: why it stays long
EXEMPTION = re.compile(r"^- `(?P<name>[^`\s]+\.py:[\w.]+)`: (?P<reason>\S.*)$")


def function_lengths(source: str) -> dict[str, int]:
    """Every function and method in a module by its dotted name (Class.method, outer.inner), with
    its length in lines from `def` to its last line (decorators not counted)."""
    lengths: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                lengths[name] = child.end_lineno - child.lineno + 1
                walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return lengths


def long_functions(root: Path = ROOT, packages=PACKAGES, limit: int = MAX_LINES) -> dict[str, int]:
    """`path:name` → lines, for every function longer than `limit` in the packages."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for name, lines in function_lengths(path.read_text(encoding="utf-8")).items():
                if lines > limit:
                    found[f"{relative}:{name}"] = lines
    return found


def listed_exemptions(readme: str) -> dict[str, str]:
    """`path:name` → reason, from the README's list; any other list item there is an error."""
    lines = readme.splitlines()
    try:
        start = lines.index(SECTION) + 1
    except ValueError:
        raise AssertionError(f"README.md has no {SECTION!r} sub-heading in its Files section") from None
    listed = {}
    for line in lines[start:]:
        if line.startswith("#"):
            break
        if not line.startswith("- "):
            continue
        match = EXEMPTION.match(line.strip())
        assert match, f"not an exemption (- `path.py:function`: reason): {line!r}"
        assert match["name"] not in listed, f"listed twice: {match['name']}"
        listed[match["name"]] = match["reason"]
    return listed


# --- the rule, on the tree -------------------------------------------------------------------


@pytest.fixture(scope="module")
def exemptions() -> dict[str, str]:
    return listed_exemptions((ROOT / "README.md").read_text(encoding="utf-8"))


def test_no_function_is_over_60_lines_unless_the_readme_says_why(exemptions):
    unlisted = {name: lines for name, lines in long_functions().items() if name not in exemptions}
    assert not unlisted, (
        f"functions over {MAX_LINES} lines: split them, or list each under {SECTION!r} in README.md "
        f"with the reason: {unlisted}"
    )


def test_no_exemption_is_stale(exemptions):
    long = long_functions()
    stale = sorted(name for name in exemptions if name not in long)
    assert not stale, f"listed under {SECTION!r} but gone or no longer over {MAX_LINES} lines: {stale}"


# --- the checks themselves --------------------------------------------------------------------


def _function(name: str, body_lines: int, indent: str = "") -> str:
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines))
    return f"{indent}def {name}():\n{body}"


def test_lengths_count_from_def_to_the_last_line_and_name_methods_and_nested_functions():
    source = (
        "import functools\n\n"
        "@functools.cache\n"
        + _function("exactly_60", 59)
        + _function("over_60", 60)
        + "class Service:\n"
        + _function("method", 3, "    ")
        + "    async def outer(self):\n"
        + _function("inner", 1, "        ")
        + "        return inner\n"
    )
    lengths = function_lengths(source)
    assert lengths == {
        "exactly_60": 60,
        "over_60": 61,
        "Service.method": 4,
        "Service.outer": 4,
        "Service.outer.inner": 2,
    }


def test_long_functions_names_each_by_its_path(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "mod.py").write_text(_function("long", 61) + _function("short", 10))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "skipped.py").write_text(_function("long", 100))
    assert long_functions(tmp_path, ("pkg",)) == {"pkg/sub/mod.py:long": 62}


README = """\
## Files

### Functions over 60 lines

Text about the list.

- `channels/app.py:create_app`: the app's wiring, read top to bottom
- `careline/x.py:Stack.build`: one command line per service
{extra}
## Extending

- `not/in/the.py:section`: ignored
"""


def test_the_readme_list_is_parsed_up_to_the_next_heading():
    assert listed_exemptions(README.format(extra="")) == {
        "channels/app.py:create_app": "the app's wiring, read top to bottom",
        "careline/x.py:Stack.build": "one command line per service",
    }
    assert listed_exemptions(f"## Files\n\n{SECTION}\n\nNone.\n\n## Extending\n\n- `a.py:f`: x\n") == {}


@pytest.mark.parametrize(
    "extra",
    [
        "- `channels/app.py:main`\n",  # no reason
        "- `channels/app.py:main`: \n",  # an empty reason
        "- channels/app.py:main: a reason\n",  # not in backticks
        "- `channels/app.py:create_app`: again\n",  # twice
    ],
)
def test_a_malformed_or_repeated_exemption_fails(extra):
    with pytest.raises(AssertionError):
        listed_exemptions(README.format(extra=extra))


def test_a_readme_without_the_sub_heading_fails():
    with pytest.raises(AssertionError, match="sub-heading"):
        listed_exemptions("## Files\n\n## Extending\n")
