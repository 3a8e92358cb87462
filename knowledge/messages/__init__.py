"""What patients read: one catalogue per language, `knowledge/messages/<language>.yml`.

Each text has a dotted id (`sms.more_prompt`, `triage.advice.emergency`) and may have `str.format`
placeholders (`{clinic_name}`) that the code fills. English (en.yml) is complete and is the
reference; a translation holds only the ids it translates and every other id reads in English.
Loading refuses a translation that defines an id English lacks or changes a text's placeholders
(the code fills English's), so a translator's slip fails at start, not in a patient's reply.

Code reads a text by its literal id, `msg("sms.more_prompt", ...)` (or `MessageText("...")` for a
class attribute), and rule files refer to ids in fields named `message`, so that
tests/unit/knowledge/test_messages.py can find every use. Rasa's own responses (utter_*) stay in
bot/domain/.

The language is the CARELINE_LANGUAGE setting (careline.settings.LanguageSettings), read once per
process when the first text is needed. YAML rather than gettext: the project's other data
(rules, protocols, curation) is YAML a clinic edits by hand, and no compile step is needed.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

DIRECTORY = Path(__file__).resolve().parent
ENGLISH = "en"
ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
# "en", "es", "pt_BR": also keeps the setting from naming a path outside this folder.
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")


class MessageError(ValueError):
    """A catalogue that cannot be loaded, or a text asked for with an unknown id or parameter."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a repeated id (PyYAML would keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise MessageError(f"id {key!r} is defined twice{key_node.start_mark}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def placeholders(template: str) -> frozenset[str]:
    """The names a text's placeholders use ("Reply {choices}." -> {"choices"})."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name is not None)


def _read(path: Path) -> dict[str, str]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise MessageError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise MessageError(f"{path.name}: must map message ids to texts")
    texts = {}
    for key, value in data.items():
        if not isinstance(key, str) or not ID.match(key):
            raise MessageError(f"{path.name}: {key!r} is not a message id (dotted lower-case names, flat)")
        if not isinstance(value, str) or not value.strip():
            raise MessageError(f"{path.name}: {key} must be a non-empty text")
        try:
            placeholders(value)
        except ValueError as exc:  # an unmatched brace: a literal one is written {{ or }}
            raise MessageError(f"{path.name}: {key}: {exc}") from exc
        texts[key] = value.strip()
    return texts


@dataclass(frozen=True)
class Catalogue:
    language: str
    texts: Mapping[str, str]

    @classmethod
    def load(cls, language: str = ENGLISH, directory: Path | None = None) -> Catalogue:
        directory = directory or DIRECTORY
        if not LANGUAGE.match(language or ""):
            raise MessageError(f"CARELINE_LANGUAGE {language!r} is not a language code such as en or es")
        english = _read(directory / f"{ENGLISH}.yml")
        if language == ENGLISH:
            return cls(language, MappingProxyType(english))
        path = directory / f"{language}.yml"
        if not path.is_file():
            raise MessageError(f"no catalogue for language {language!r}: add {path}")
        translated = _read(path)
        unknown = sorted(set(translated) - set(english))
        if unknown:
            raise MessageError(f"{path.name}: ids that {ENGLISH}.yml does not define: {', '.join(unknown)}")
        for key, text in translated.items():
            if placeholders(text) != placeholders(english[key]):
                raise MessageError(
                    f"{path.name}: {key} must use the placeholders of {ENGLISH}.yml: "
                    f"{sorted(placeholders(english[key]))}, not {sorted(placeholders(text))}"
                )
        return cls(language, MappingProxyType({**english, **translated}))

    def text(self, message_id: str, **params: Any) -> str:
        """The text of `message_id` in this language (English if not translated), filled in."""
        try:
            template = self.texts[message_id]
        except KeyError:
            raise MessageError(f"no message {message_id!r} in knowledge/messages/{ENGLISH}.yml") from None
        try:
            return template.format_map(params)
        except (KeyError, IndexError, ValueError) as exc:
            raise MessageError(f"{message_id}: needs the parameter {exc}") from None


@cache
def default_catalogue() -> Catalogue:
    """The configured language's catalogue, loaded on first use (never at import)."""
    from careline.settings import LanguageSettings

    return Catalogue.load(LanguageSettings().careline_language)


def msg(message_id: str, **params: Any) -> str:
    """The text a patient reads for `message_id`, in the configured language."""
    return default_catalogue().text(message_id, **params)


class MessageText:
    """A class attribute whose value is a catalogue text, read when it is used:
    `patient_message = MessageText("errors.rate_limited")`."""

    def __init__(self, message_id: str):
        self.message_id = message_id

    def __get__(self, obj: object, owner: type | None = None) -> str:
        return msg(self.message_id)
