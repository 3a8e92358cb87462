"""The message catalogue: every id used is defined in en.yml and every id defined is used; a
translation is a file, falling back to English; a broken catalogue is refused at load."""

from __future__ import annotations

import ast
import shutil
from functools import cache
from pathlib import Path

import pytest
import yaml

import knowledge.messages as messages
from knowledge.messages import ID, Catalogue, MessageError, MessageText, msg

ROOT = Path(__file__).resolve().parents[3]
CODE_DIRS = ("actions", "channels", "knowledge", "careline")
# Calls whose first argument is a message id (msg("..."), catalogue.text("..."), MessageText("...")).
ID_CALLS = {"msg", "text", "MessageText"}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the rule files are large


def english_ids() -> set[str]:
    return set(Catalogue.load("en").texts)


def python_uses(root: Path, prefixes: set[str]) -> tuple[set[str], set[str]]:
    """(ids passed literally to an id call, other string literals shaped like an id with a
    catalogue prefix: the entries of tables such as LEVEL_ADVICE)."""
    called, listed = set(), set()
    for directory in CODE_DIRS:
        for path in sorted((root / directory).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Call) and node.args:
                    name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                    first = node.args[0]
                    if name in ID_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                        if ID.match(first.value):
                            called.add(first.value)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and ID.match(node.value):
                    if node.value.split(".")[0] in prefixes:
                        listed.add(node.value)
    return called, listed


def yaml_uses(root: Path) -> set[str]:
    """Ids that rule files name in fields called `message`: an id, or channel -> id."""
    found: set[str] = set()

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "message" and isinstance(item, str):
                    found.add(item)
                elif key == "message" and isinstance(item, dict):
                    found.update(v for v in item.values() if isinstance(v, str))
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in sorted((root / "knowledge").rglob("*.yml")):
        if "messages" not in path.relative_to(root).parts:
            walk(yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER))
    return found


@cache
def all_uses(root: Path = ROOT) -> set[str]:
    """Every id the code or the rule files use."""
    called, listed = python_uses(root, {i.split(".")[0] for i in english_ids()})
    return called | listed | yaml_uses(root)


def test_every_id_used_is_defined_in_english():
    missing = sorted(all_uses() - english_ids())
    assert not missing, f"used but not in knowledge/messages/en.yml: {missing}"


def test_every_english_id_is_used():
    unused = sorted(english_ids() - all_uses())
    assert not unused, f"in knowledge/messages/en.yml but used nowhere: {unused}"


def test_the_scan_finds_a_missing_and_an_unused_id(tmp_path):
    """The two checks above can fail: a planted use of an undefined id and a rule file's reference
    are found, and so are ids listed in a table."""
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "x.py").write_text(
        'from knowledge.messages import msg\nTABLE = {"a": "sms.not_there"}\nmsg("nowhere.at_all", n=1)\n'
    )
    (tmp_path / "knowledge" / "triage").mkdir(parents=True)
    (tmp_path / "knowledge" / "triage" / "r.yml").write_text("message: {web: safety.x.web, sms: safety.x.sms}\n")
    used = all_uses(tmp_path)
    assert {"sms.not_there", "nowhere.at_all", "safety.x.web", "safety.x.sms"} <= used
    assert not used & english_ids()


def test_rule_files_refer_to_their_messages():
    refs = yaml_uses(ROOT)
    assert "safety.cardiac.web" in refs and "safety.cardiac.sms" in refs
    assert "triage.question.who" in refs and "triage.reason.unmatched" in refs


# --- the catalogue -----------------------------------------------------------------------------


@pytest.fixture
def catalogue_dir(tmp_path):
    shutil.copy(messages.DIRECTORY / "en.yml", tmp_path / "en.yml")
    return tmp_path


def test_a_translation_overrides_one_text_and_reads_the_rest_in_english(catalogue_dir):
    (catalogue_dir / "es.yml").write_text('sms.more_prompt: "Responda MORE para leer más."\n', encoding="utf-8")
    spanish = Catalogue.load("es", catalogue_dir)
    assert spanish.text("sms.more_prompt") == "Responda MORE para leer más."
    assert spanish.text("kb.offer_person") == Catalogue.load("en", catalogue_dir).text("kb.offer_person")
    assert spanish.language == "es" and set(spanish.texts) == english_ids()


def test_the_language_setting_switches_every_reader_without_code(catalogue_dir, monkeypatch):
    """CARELINE_LANGUAGE=es and a new es.yml: the SMS channel's words change, nothing else does."""
    from channels.sms import SmsTexts
    from channels.sms_text import numbered_options, split_for_sms

    (catalogue_dir / "es.yml").write_text(
        'sms.more_prompt: "Responda MORE para más."\nsms.opted_in: "Suscrito de nuevo a {clinic_name}."\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(messages, "DIRECTORY", catalogue_dir)
    monkeypatch.setenv("CARELINE_LANGUAGE", "es")
    messages.default_catalogue.cache_clear()
    try:
        texts = SmsTexts("Clínica Arce", "(555) 555-0100")
        assert texts.opted_in == "Suscrito de nuevo a Clínica Arce."
        assert texts.opted_out.startswith("You're unsubscribed from Clínica Arce texts")  # not translated
        parts, rest = split_for_sms("Una frase corta. " * 40)
        assert rest and parts[-1].endswith("\nResponda MORE para más.")
        assert numbered_options("Hola", [{"title": "Vale", "payload": "/affirm"}])[0] == "Hola\nReply 1 for Vale."
    finally:
        messages.default_catalogue.cache_clear()


@pytest.mark.parametrize(
    "es_yml, error",
    [
        ('sms.not_in_english: "Hola"\n', "does not define: sms.not_in_english"),
        ('sms.too_long: "Demasiado largo: menos de {limite} caracteres."\n', "placeholders"),
        ('sms.too_long: "Demasiado largo."\n', "placeholders"),
        ('sms.failed: "Uno"\nsms.failed: "Dos"\n', "defined twice"),
        ('sms.failed: ""\n', "non-empty"),
        ('sms.failed: "Un { suelto"\n', "sms.failed"),
        ('sms:\n  failed: "anidado"\n', "not a message id"),
        ("- una lista\n", "must map"),
    ],
)
def test_a_broken_translation_is_refused_at_load(catalogue_dir, es_yml, error):
    (catalogue_dir / "es.yml").write_text(es_yml, encoding="utf-8")
    with pytest.raises(MessageError, match=error):
        Catalogue.load("es", catalogue_dir)


def test_a_missing_language_or_a_bad_code_is_refused(catalogue_dir):
    with pytest.raises(MessageError, match="no catalogue for language 'fr'"):
        Catalogue.load("fr", catalogue_dir)
    with pytest.raises(MessageError, match="not a language code"):
        Catalogue.load("../en", catalogue_dir)


def test_english_defines_every_text_once_and_well():
    texts = Catalogue.load("en").texts
    assert all(ID.match(i) and t == t.strip() and t for i, t in texts.items())


def test_an_unknown_id_or_a_missing_parameter_is_a_clear_error():
    with pytest.raises(MessageError, match="no message 'sms.nope' in knowledge/messages/en.yml"):
        msg("sms.nope")
    with pytest.raises(MessageError, match="sms.too_long: needs the parameter 'limit'"):
        msg("sms.too_long")
    assert msg("sms.too_long", limit=1600).endswith("under 1600 characters.")


def test_a_message_text_attribute_reads_the_catalogue_when_used():
    class Error:
        patient_message = MessageText("errors.rate_limited")

    assert Error.patient_message == Error().patient_message == msg("errors.rate_limited")
    assert "911" in Error.patient_message


@pytest.mark.parametrize(
    "message_id, text",
    [  # a few texts pinned word for word: the move to the catalogue changed no wording
        ("sms.more_prompt", "Reply MORE for more."),
        ("kb.offer_person", "Would you like to talk to a member of our staff instead?"),
        ("triage.outcome.not_a_diagnosis", "This is guidance on where to get care, not a diagnosis."),
        ("safety.advise.sms", "If this is happening now, call 911. For a mental health crisis, call or text 988."),
    ],
)
def test_wording_is_unchanged(message_id, text):
    assert msg(message_id) == text
