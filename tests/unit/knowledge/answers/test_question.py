"""Finding the question in a long message (knowledge/answers/question.py): the subject line, the
sentences that ask and the condition they are about are kept; greetings, thanks, signatures and
backstory that asks nothing are dropped; short questions pass through unchanged. The condition is
found by the real retriever's name matcher over a small in-memory knowledge base.

The long messages below were written for these tests in the way patients write to a clinic; they
are not taken from any evaluation set."""

from __future__ import annotations

import uuid

import pytest

from knowledge.answers.question import Question, asks, find_question, is_short, split_subject
from tests.unit.actions.conftest import PASSAGES

# --- short questions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "what causes gout",
        "is fatal familial insomnia inherited? my uncle died of it and im scared",
        "how is cholesteatoma treated, my son has one behind his eardrum",
        "every time i shower i get insanely itchy with no rash. read about aquagenic pruritus - how do you treat it??",
        "are you open saturday",
    ],
)
def test_short_questions_pass_through_unchanged(text):
    q = find_question(text)
    assert is_short(text) and q.text == text and not q.shortened


@pytest.mark.parametrize(
    "text",
    [
        "Subject: gout",  # a subject line
        "Hi, what causes gout",  # a greeting to drop
        "what causes gout? thanks so much",  # thanks to drop
        "what causes gout\nhow is it treated",  # more than one line
        " ".join(["word"] * 31),  # long
    ],
)
def test_what_is_not_short(text):
    assert not is_short(text)


# --- subject lines -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, subject, rest_starts",
    [
        ("Subject: Charcot-Marie-Tooth\nMy husband has it.", "Charcot-Marie-Tooth", "My husband"),
        ("Re: my mother's macular degeneration\nShe is 78.", "my mother's macular degeneration", "She is"),
        ("SUBJECT: spina bifida MESSAGE: Hi my grandson was born with it.", "spina bifida", "Hi my grandson"),
        ("Question about Raynaud's phenomenon\nEvery winter my fingers turn white.", "Question about Raynaud's", ""),
        # A first line with a verb is a sentence, not a title.
        ("My son has a heart murmur\nHe is 6.", "", "My son has"),
        # A greeting is not a title.
        ("Hello there\nMy son has a heart murmur.", "", "Hello there"),
        # One line only: nothing follows a title.
        ("gout treatment", "", "gout treatment"),
    ],
)
def test_split_subject(message, subject, rest_starts):
    got_subject, rest = split_subject(message)
    assert got_subject.startswith(subject) and (subject or not got_subject)
    assert rest.startswith(rest_starts)


# --- which sentences ask ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sentence, asking",
    [
        ("Is it genetic?", True),
        ("is there a cure for this", True),
        ("I would like to know if she could inherit it.", True),
        ("I want to know whether my husband should get tested.", True),
        ("Can you tell me what the symptoms are.", True),
        ("Please send me information on treatments for migraine.", True),
        ("Could you please send info on Tourette syndrome", True),
        ("I am wondering if it runs in families.", True),
        ("Any advice would be welcome.", True),
        ("What causes this", True),
        ("how long will it last", True),
        # Backstory.
        ("My husband was diagnosed with it two years ago.", False),
        ("When I was 12 I broke my arm.", False),
        ("Can't sleep at night because of the itching.", False),
        ("Was diagnosed last spring.", False),
        ("The doctor said it could be von Willebrand disease.", False),
        ("Thank you so much.", False),
    ],
)
def test_asks(sentence, asking):
    assert asks(sentence) is asking


# --- long messages, no name matcher -------------------------------------------------------------

LONG = [
    (
        "Subject: Charcot-Marie-Tooth\nHello, my husband was diagnosed with Charcot-Marie-Tooth disease two years "
        "ago. He is 45 and his feet are getting weaker and he trips a lot. Our daughter is 12 and very athletic. I "
        "would like to know if she could inherit it from him. Thank you so much.\nMary",
        "Charcot-Marie-Tooth I would like to know if she could inherit it from him.",
        {"inheritance"},
    ),
    (
        "SUBJECT: spina bifida MESSAGE: Hi my grandson was born with spina bifida last month and has had surgery on "
        "his back. The doctors say he may need a shunt. Is there anything new in treatment for this. thanks",
        "spina bifida Is there anything new in treatment for this.",
        {"treatment"},
    ),
    (
        "Hi, I am 56 and have had migraines for 30 years. Lately they are worse and last two days. I have tried lots "
        "of things. Please send me information on treatments for migraine.\nRegards,\nTom",
        "Please send me information on treatments for migraine.",
        {"treatment"},
    ),
    (
        "Good morning. My son is 7 and was diagnosed with Tourette syndrome after a year of blinking and throat "
        "clearing. His school is not very understanding. What causes Tourette syndrome? Is it something we did "
        "during pregnancy? Thanks in advance, a worried mom",
        "What causes Tourette syndrome? Is it something we did during pregnancy?",
        {"causes"},
    ),
    (
        "Hello,\nI have had psoriasis on my elbows and knees since I was a teenager. Now I am 40 and my fingers are "
        "stiff and swollen in the mornings. My dermatologist mentioned psoriatic arthritis. Can you tell me what "
        "the symptoms of psoriatic arthritis are?\nThank you",
        "Can you tell me what the symptoms of psoriatic arthritis are?",
        {"symptoms"},
    ),
    (
        "My father-in-law passed away from ALS in 2015 and now my husband's aunt has it too. We have three kids. Is "
        "ALS inherited? I want to know whether my husband should get tested.\nSincerely,\nKaren",
        "Is ALS inherited? I want to know whether my husband should get tested.",
        {"inheritance", "exams and tests"},
    ),
    (
        "hi there. my daughter is 15 and has been getting really bad nosebleeds, sometimes 3 a week, and her gums "
        "bleed when she brushes. the doctor did bloodwork and said it could be von willebrand disease. how is von "
        "willebrand disease diagnosed? thank you",
        "how is von willebrand disease diagnosed?",
        {"exams and tests"},
    ),
    (
        "Dear sir or madam, I am writing about my brother who is 32 and has Down syndrome. He has lived with our "
        "parents all his life but they are getting old. We want to know about life expectancy for people with Down "
        "syndrome. Thank you for your time. Best regards, Ana",
        "We want to know about life expectancy for people with Down syndrome.",
        {"outlook"},
    ),
    (
        "Raynaud's\nEvery winter my fingers turn white then blue when I go outside or even hold a cold drink. It "
        "hurts when they warm up. My sister has the same thing. What treatments are there?",
        "Raynaud's What treatments are there?",
        {"treatment"},
    ),
    (
        # Nothing asks: all but the pleasantries, in order.
        "Hello. My mother is 80 and her doctor says she has shingles on her back. She is in a lot of pain and "
        "cannot sleep. We are looking into home care.\nThanks,\nBen",
        "My mother is 80 and her doctor says she has shingles on her back. She is in a lot of pain and cannot "
        "sleep. We are looking into home care.",
        set(),
    ),
]


@pytest.mark.parametrize("message, text, kinds", LONG)
def test_long_messages_keep_subject_and_asking_sentences(message, text, kinds):
    q = find_question(message)
    assert q.shortened and q.text == text
    assert q.kinds == kinds  # the kind asked for, not the kinds the story names ("diagnosed", "genetic")


# --- the condition, found by the retriever's name matcher ---------------------------------------


@pytest.fixture(scope="module")
def retriever():
    from knowledge.answers.documents import split
    from knowledge.answers.retrieval import Retriever
    from knowledge.answers.vectorstore import make_chroma_client, make_embeddings, make_vector_store

    store = make_vector_store(make_chroma_client(ephemeral=True), make_embeddings(), f"q-{uuid.uuid4().hex[:12]}")
    chunks = dict(split(iter(PASSAGES)))
    store.add_documents(list(chunks.values()), ids=list(chunks))
    return Retriever(store)


STORY = (
    "Subject: my dad\nHello. My dad is 70 and had shingles two years ago, that cleared up fine. Last week his big "
    "toe swelled up overnight, red and hot, and he could not put a sock on. The doctor at urgent care said it is "
    "gout. How is it treated? We want him walking again for our daughter's wedding.\nThanks,\nAnn"
)


def test_the_story_sentences_that_name_a_condition_are_added_to_a_question_that_names_none(retriever):
    q = find_question(STORY, retriever.best_names)
    # Two conditions named: the one told nearest before the question is the focus ("it").
    assert q.focus == "Gout" and q.focus_score >= 0.8
    assert q.text == (
        "my dad My dad is 70 and had shingles two years ago, that cleared up fine. The doctor at urgent care said "
        "it is gout. How is it treated?"
    )
    assert q.kinds == {"treatment"}


def test_a_question_that_names_its_condition_keeps_what_the_story_says_of_it(retriever):
    message = (
        "Subject: gout\nHello. My sister had shingles last spring. My dad is 70 and lives with us. The doctor says "
        "his gout is back and his toe is red. Is there any treatment that helps quickly?\nThanks, Ann"
    )
    q = find_question(message, retriever.best_names)
    assert q.focus == "Gout"
    assert (
        q.text == "gout The doctor says his gout is back and his toe is red. Is there any treatment that helps quickly?"
    )


def test_an_abbreviation_in_the_question_brings_the_sentence_that_spells_it_out():
    message = (
        "Hello. We are Armenian and my son has had fevers every month since he was 3. The pediatrician wants to "
        "check for familial Mediterranean fever. He is 8 now. How is FMF diagnosed? Thank you"
    )
    q = find_question(message)  # no name matcher needed
    assert q.text == "The pediatrician wants to check for familial Mediterranean fever. How is FMF diagnosed?"


def test_a_question_that_names_its_condition_takes_nothing_from_the_story(retriever):
    message = (
        "My sister had shingles last year and it was awful. My own question is different. What is asthma? My son "
        "was told he may have it.\nThanks, Jo"
    )
    q = find_question(message, retriever.best_names)
    assert q.focus == "Asthma" and "shingles" not in q.text.lower()


def test_search_answers_the_question_not_the_story(retriever):
    hits = retriever.search(STORY, k=3)
    assert hits[0].citation_id == "t/gout.xml#2"  # gout's treatment, not shingles
    # The whole message, read as it is, is not what search reads.
    assert find_question(STORY, retriever.best_names).shortened


def test_a_follow_up_still_reads_the_previous_topic(retriever):
    hits = retriever.search("how is it treated", k=1, context="Gout")
    assert hits[0].citation_id == "t/gout.xml#2"


def test_a_question_is_a_plain_value():
    q = Question("what is gout", "what is gout")
    assert not q.shortened and q.focus is None and q.kinds == frozenset()
