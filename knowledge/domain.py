"""The health-domain guard: a message about the body, symptoms, medicines, tests or care is never
out of scope. When the intent model says `out_of_scope` or `nlu_fallback`, this decides from the
words alone whether the patient reported a problem or asked a health question:

    health_intent(text) -> "report_symptom" | "ask_health_question" | None

- "report_symptom": someone has a problem now: "my son has a fever", "I think I have the flu",
  "sore throat for 3 days", "I took too much Tylenol".
- "ask_health_question": it asks about a condition, medicine, test or treatment: "is shingles
  contagious", "can I take ibuprofen with lisinopril", "what is an A1C test", "lupus".
- None: not about health, including look-alikes the intent model rightly calls out of scope:
  nutrition facts ("calories in a banana"), recipes, pets ("my dog has diarrhea": a vet's
  question), machines and accounts ("my car is sick", "operation on my account"), shows and
  music ("Doctor Who", "sick playlist").

The words come from knowledge/vocabulary.py; for a statement about someone whose words the
vocabulary does not settle ("my eye is red", "I took too much Tylenol"), the triage engine's
complaint and red-flag reading decides (knowledge/triage/engine.py, read-only). Plain, linear
token tests otherwise; the engine is used only when those leave it open, and its failure only
means "no complaint found".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from knowledge.vocabulary import Term, find_terms, word_spans
from knowledge.vocabulary import words as vocabulary_words

log = logging.getLogger(__name__)

REPORT = "report_symptom"
QUESTION = "ask_health_question"

# Who a clause is about: the writer, or someone the writer speaks for.
FIRST_PERSON = {"i", "im", "ive", "id", "me", "my", "myself", "mine", "we", "our", "us"}
OTHERS = {
    "aunt", "baby", "boy", "boyfriend", "brother", "child", "dad", "daughter", "father", "fiance", "fiancee",
    "friend", "girl", "girlfriend", "gran", "grandad", "grandchild", "granddad", "granddaughter", "grandfather",
    "grandma", "grandmother", "grandpa", "grandson", "granny", "he", "her", "hes", "him", "his", "hubby", "husband",
    "infant", "kid", "kiddo", "mom", "mother", "mum", "nana", "nephew", "newborn", "niece", "partner", "patient",
    "she", "shes", "sister", "son", "spouse", "stepdad", "stepdaughter", "stepmom", "stepson", "teen", "teenager",
    "toddler", "uncle", "wife",
}  # fmt: skip
# "I'm sick", "my son is exhausted": everyday words that say a person is unwell.
UNWELL = {
    "anxious", "confused", "depressed", "exhausted", "faint", "hurt", "hurting", "hurts", "ill", "injured",
    "sick", "stressed", "tired", "unwell", "weak", "weakness",
}  # fmt: skip
# Animals (outside a health term: "fish oil" is a supplement, "cat scan" a test).
PETS = {
    "bird", "bunny", "cat", "cow", "dog", "ferret", "fish", "gerbil", "goat", "goldfish", "hamster", "horse",
    "kitten", "kitty", "lizard", "parrot", "pet", "pony", "puppy", "rabbit", "sheep", "tortoise", "turtle", "vet",
    "veterinarian",
}  # fmt: skip
# A pet in a message about a person's health: "bitten by a dog", "allergic to cats".
FROM_PET = {"allergic", "allergy", "bit", "bite", "bitten", "dander", "scratched"}
# Machines, accounts and plants: "my laptop fan is wheezing" is the laptop's.
THINGS = {
    "account", "android", "app", "bank", "brake", "car", "computer", "console", "device", "engine", "fan",
    "fitbit", "gadget", "iphone", "laptop", "lawn", "password", "pc", "phone", "plant", "printer", "robot",
    "router", "sensor", "server", "smartwatch", "software", "tire", "truck", "tv", "vehicle", "website", "wifi",
    "xbox",
}  # fmt: skip
# A person in the message ("I dropped my phone on my foot"), not only a possessive ("my car").
PERSON_SUBJECT = {"i", "im", "ive", "id", "me", "myself"}
SHOWS = {
    "album", "astrology", "band", "episode", "film", "horoscope", "lyric", "movie", "netflix", "playlist",
    "podcast", "rapper", "singer", "song", "spotify", "youtube", "zodiac",
}  # fmt: skip
FOOD = {"bake", "baking", "calorie", "calory", "carb", "carbohydrate", "cook", "cooking", "nutrition",
        "nutritional", "recipe"}  # fmt: skip
QUESTION_WORDS = {
    "any", "are", "can", "could", "define", "describe", "do", "doe", "does", "explain", "how", "hows", "is",
    "should", "tell", "what", "whats", "when", "where", "which", "who", "why", "will", "would",
}  # fmt: skip
# Words that make a clause ask for information rather than tell what is happening.
INFO_WORDS = {
    "cause", "contagious", "curable", "cure", "definition", "difference", "genetic", "hereditary", "info",
    "information", "inherited", "learn", "mean", "meaning", "prevent", "prevention", "relief", "relieve",
    "remedy", "risk", "sign", "spread", "symptom", "treat", "treated", "treatment",
}  # fmt: skip
# Verbs after "I" or "my son" that tell someone's state ("I have", "she keeps", "he took").
STATES = {
    "am", "are", "been", "cant", "feel", "feeling", "feels", "felt", "get", "gets", "getting", "got", "had",
    "has", "have", "hurt", "hurts", "is", "keep", "keeps", "started", "think", "took", "was", "woke", "wont",
}  # fmt: skip
# Words of a booking: the scheduling skill's, not a health question.
SCHEDULING = {"appointment", "appt", "book", "booking", "cancel", "reschedule", "schedule"}
# Asked about, everyday health words are a health question ("can you get mono from sharing drinks").
BODY_QUESTION = INFO_WORDS | {
    "catch", "dangerous", "doctor", "get", "help", "last", "normal", "rid", "safe", "serious", "why", "worry",
}  # fmt: skip
# The words themselves, not the body: "how do you spell diarrhea", "what rhymes with cough".
LANGUAGE = {
    "anagram", "crossword", "define", "emoji", "plural", "pronounce", "pronunciation", "rhyme", "scrabble",
    "spell", "spelled", "spelling", "synonym", "translate", "translation",
}  # fmt: skip
# Requests for an assistant's tools: "set a timer for my pills".
COMMANDS = {"alarm", "calendar", "remind", "reminder", "timer"}
# Questions of history, news and markets: about a disease, not about anyone's health.
TRIVIA = {"celebrity", "company", "discovered", "famous", "headline", "history", "invented", "news", "stock"}
POINTERS = {"it", "its", "this", "that"}
POSSESSIVES = {"my", "his", "her", "our", "their", "your"}
AGE_UNITS = {"day", "week", "wk", "month", "mo", "year", "yr"}
# A clause about someone that ends so speaks of now, even when it asks.
NOW = ("right now", "at the moment", "currently")
# Asked about these, a clause is a question even when it speaks of the writer ("do I need a flu
# shot"): the triage engine would read the medicine's name as a complaint.
ASKED_ABOUT = ("medicine", "medicine_word", "test", "care")
INVERTED = {"am", "did", "do", "doe", "does", "has", "have", "is", "was"}


@dataclass
class Clause:
    words: list[str]
    terms: list[Term]
    text: str
    about_someone: bool = False  # the message speaks of someone: "it" here is theirs ("it's swollen")
    message_asks: bool = False  # some clause of the message asks something


def health_intent(text: str) -> str | None:
    """ "report_symptom", "ask_health_question" or None (see the module's docstring)."""
    terms = find_terms(text)
    clauses = _clauses(text, terms)
    words = vocabulary_words(text)
    about_someone = _personal(words)
    if not terms and not about_someone:
        return None
    message_asks = any(_is_question(c) for c in clauses if c.words)
    for clause in clauses:
        clause.about_someone, clause.message_asks = about_someone, message_asks
    if _looks_alike(words, terms, clauses):
        return None
    if any(_reports(c) for c in clauses):
        return REPORT
    if not SCHEDULING.isdisjoint(words):
        return None  # "reschedule my mammogram": a booking, not a question for the knowledge base
    if any(t.strong for t in terms) or _asks_about_body(words, terms):
        return QUESTION
    return None


def _clauses(text: str, terms: list[Term]) -> list[Clause]:
    """The message cut at sentence ends, commas, semicolons and "but", each clause with its words
    and the terms that start in it."""
    spans = word_spans(text)
    lower = text.lower()
    clauses: list[Clause] = []
    start = 0
    for i in range(1, len(spans) + 1):
        last = i == len(spans)
        but = not last and spans[i][0] == "but"
        if not (last or but or any(ch in ".,;!?\n" for ch in lower[spans[i - 1][2] : spans[i][1]])):
            continue
        if i > start:
            inside = [t for t in terms if start <= t.start < i]
            text_i = lower[spans[start][1] : spans[i - 1][2] + 1]
            clauses.append(Clause([w for w, _, _ in spans[start:i]], inside, text_i))
        start = i + 1 if but else i
    return clauses


def _personal(words: list[str]) -> bool:
    """The words speak of the writer or of someone: "my", "she", "my son", "a 4 month old"."""
    if not FIRST_PERSON.isdisjoint(words) or not OTHERS.isdisjoint(words):
        return True
    return any(a in AGE_UNITS and b == "old" for a, b in zip(words, words[1:], strict=False))


def _clause_personal(clause: Clause) -> bool:
    """The clause speaks of someone, or of "it" in a message about someone ("my knee... it's
    been hurting")."""
    return _personal(clause.words) or (clause.about_someone and not POINTERS.isdisjoint(clause.words))


def _is_question(clause: Clause) -> bool:
    return clause.words[0] in QUESTION_WORDS or clause.text.rstrip().endswith("?")


def _states_now(words: list[str]) -> bool:
    """ "I have", "my son is", "she keeps", or asked the other way round ("why am I", "does my
    son"): someone's own state is told, or asked about as theirs."""
    for i, w in enumerate(words):
        if (w in FIRST_PERSON or w in OTHERS) and not STATES.isdisjoint(words[i + 1 : i + 4]):
            return True  # "I have", "my chest hurts", "my son's ear is"
        if w in INVERTED and i + 1 < len(words) and (words[i + 1] in FIRST_PERSON or words[i + 1] in OTHERS):
            return True
    return False


def _asks_for_information(clause: Clause) -> bool:
    """ "what causes gout", "how do I know if my son has strep", "if I get a rash...": asked or
    imagined, not told."""
    if _personal(clause.words) and " ".join(clause.words).endswith(NOW):
        return False  # "what's the cure for my asthma attack right now"
    first = clause.words[0]
    if first in ("if", "incase") or (_is_question(clause) and "if" in clause.words):
        return True
    return not INFO_WORDS.isdisjoint(clause.words) and not _states_now(clause.words)


def _reports(clause: Clause) -> bool:
    """A problem happening to someone, told in this clause (not asked about or imagined)."""
    if not clause.words or _asks_for_information(clause):
        return False
    personal = _clause_personal(clause)
    question = _is_question(clause)
    symptoms = [t for t in clause.terms if t.kind == "symptom"]
    if _fever_reading(clause.words) and (personal or not question):
        return True  # "temp was 100.8", "his temperature is 39.2"
    body = any(t.kind == "body" for t in clause.terms)
    if any(t.strong for t in symptoms) and (personal or not question):
        return True  # "my son has a fever", "sore throat for 3 days"
    told = not question or _states_now(clause.words)
    if symptoms and told and (body or (personal and any(t.key in UNWELL for t in symptoms))):
        return True  # "back hurts", "I'm sick", "why am I always tired"
    if not told or not (personal or (body and not question)):
        return False  # the engine reads what is told of someone ("throat closing up after shrimp")
    # "my eye is red", "I took too much Tylenol"; of a medicine or test alone ("book me for a flu
    # shot"), only a red flag counts: the engine reads "flu" in "flu shot" as a complaint
    about_care_only = bool(clause.terms) and all(t.kind in ASKED_ABOUT for t in clause.terms)
    about_care_only = about_care_only or "diagnosed" in clause.words
    if (about_care_only or not clause.terms) and question:
        return False  # "do I need a flu shot"
    # In a message that asks, a complaint the engine reads in a condition's name ("I take turmeric
    # for my arthritis. Should I stop it before surgery?") is the question's background: only a
    # red flag makes it a report.
    return _triage_reads_complaint(clause.text, red_flags_only=about_care_only or clause.message_asks)


def _fever_reading(words: list[str]) -> bool:
    """A temperature of a fever (100.4 F or 38 C and above) said with "temp", "temperature" or
    "fever" a few words before it."""
    for i, w in enumerate(words):
        if w in ("temp", "temperature", "fever"):
            for n in words[i + 1 : i + 5]:
                if n.isdigit() and (38 <= int(n) <= 43 or 100 <= int(n) <= 107):
                    return True
    return False


def _triage_reads_complaint(text: str, red_flags_only: bool = False) -> bool:
    """The triage engine reads a complaint or a red flag in the text. Being pregnant alone is not
    one here (the engine opens the pregnancy protocols for any complaint of a pregnant woman)."""
    try:
        from knowledge.triage.engine import default_engine

        engine = default_engine()
        facts = engine.read(text)
        complaints = [c for c in facts.complaints if not (facts.pregnant and engine.protocol(c).when_pregnant)]
    except Exception:  # the guard never fails a message: no reading, no complaint
        log.exception("domain guard: triage reading failed")
        return False
    return bool(facts.red_flags or (complaints and not red_flags_only))


def _looks_alike(words: list[str], terms: list[Term], clauses: list[Clause]) -> bool:
    """Health words about something else: a pet, a machine, a show, the words themselves, food."""
    ws = set(words)
    covered = {i for t in terms for i in range(t.start, t.end)}
    free = {w for i, w in enumerate(words) if i not in covered}  # words outside any health term
    clinical = any(t.strong and t.kind in ("condition", "symptom") for t in terms)
    if not free.isdisjoint(PETS) and ws.isdisjoint(FROM_PET) and not _from_a_pet(words):
        return True  # "my dog has diarrhea": a vet's question
    if not ws.isdisjoint(SHOWS | LANGUAGE | COMMANDS):
        return not any(_reports(c) for c in clauses if _personal(c.words))
    if not free.isdisjoint(THINGS):
        # a person is in it: "I", a body part, someone ("my son"), or a health term of theirs
        # ("my fitbit says my heart rate is 40"), not only the thing's ("my smartwatch heart rate sensor")
        person = not ws.isdisjoint(PERSON_SUBJECT) or any(t.kind == "body" for t in terms)
        person = person or not free.isdisjoint(OTHERS - {"her", "his", "him", "he", "she"})
        person = person or any(t.start and words[t.start - 1] in POSSESSIVES for t in terms)
        if not person:
            return True  # "my car is sick", "my laptop fan is making a wheezing noise"
    if not ws.isdisjoint(TRIVIA) and not _personal(words):
        return True  # "who invented the polio vaccine"
    if not ws.isdisjoint(FOOD) or _amount_in(words):
        return not clinical  # "calories in a banana", "how much vitamin c is in an orange"
    return False


def _from_a_pet(words: list[str]) -> bool:
    """ "caught ringworm from my cat": the pet is where a person's problem came from."""
    for i, w in enumerate(words[:-1]):
        if w == "from" and (words[i + 1] in PETS or (i + 2 < len(words) and words[i + 2] in PETS)):
            return True
    return False


def _amount_in(words: list[str]) -> bool:
    """ "how much X is in Y", "how many X in Y": a food or product fact."""
    for i, w in enumerate(words[:-1]):
        if w == "how" and words[i + 1] in ("much", "many") and "in" in words[i + 2 :]:
            return not _personal(words)
    return False


def _asks_about_body(words: list[str], terms: list[Term]) -> bool:
    """Only everyday health words ("tired", "my back"): health when asked about as a health
    matter ("why is my back so stiff", "is it normal to be tired all the time")."""
    symptom = any(t.kind in ("symptom", "condition") for t in terms)
    body = any(t.kind == "body" for t in terms)
    if symptom:
        return body or not BODY_QUESTION.isdisjoint(words)
    asked = bool(words) and (words[0] in QUESTION_WORDS or words[0] in ("whats", "hows"))
    return body and asked and not {"normal", "why", "mean", "meaning", "cause"}.isdisjoint(words)
