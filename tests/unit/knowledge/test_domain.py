"""The health-domain guard (knowledge/domain.py) over the real vocabulary and triage engine: symptom
reports (first person, caregivers, short phrases without a verb, long messages), health questions
(conditions, medicines, tests, care), and the look-alikes that stay out of scope (food facts,
recipes, pets, machines, accounts, shows, idioms)."""

from __future__ import annotations

import pytest

import knowledge.triage.engine as triage_engine
from knowledge.domain import QUESTION, REPORT, health_intent

REPORTS = [
    # first person
    "I think I have the flu",
    "im sick",
    "i've had a pounding headache since this morning",
    "I get chest pain when I climb stairs, is that normal?",
    "why am I always so tired",
    "I took too much Tylenol",
    "my eye is red and crusty",
    "i cut my finger and it won't stop bleeding",
    "I'm allergic to cats and my eyes are puffy",
    "got a rash after starting amoxicillin",
    # someone the writer speaks for
    "my son has a fever, can I give him Tylenol?",
    "my mother-in-law fell and her hip hurts",
    "grandad's ankles are puffy again",
    "my husband is unconscious",
    "my 3 year old threw up twice and has a temp of 101",
    "my daughter keeps tugging at her ear and won't sleep",
    # short phrases without a verb
    "sore throat for 3 days",
    "knee swollen",
    "fever and chills since yesterday",
    "throat hurts cant swallow",
    # long, several sentences
    "So last week I started a new blood pressure pill. Since then my ankles have swollen up and I feel "
    "lightheaded when I stand. I'm not sure if it's related.",
    "what is the cure for my asthma attack right now, i cant catch my breath",
]
QUESTIONS = [
    "is shingles contagious",
    "what causes a sore throat",
    "can stress cause chest pain",
    "what should I do if my baby has a fever",
    "how do I know if my child has strep",
    "I have diabetes, what can I eat",
    "lupus",
    "tell me about metformin",
    "can I take ibuprofen with my blood pressure medicine",
    "what are the side effects of atorvastatin",
    "is it safe to get the covid vaccine while pregnant",
    "I'm pregnant, is it safe to take Zofran?",
    "how much Tylenol can a 2 year old have",
    "what is an MRI used for",
    "what does a high PSA mean",
    "when should I get a colonoscopy",
    "do I need a flu shot every year",
    "headache remedies",
    "what's a normal heart rate for a toddler",
    "my mom has Alzheimer's, how can I help her sleep",
    "can you get mono from sharing drinks",
    "what is Marfan syndrome",
    "perindopril or ramipril, which is better",
]
LOOK_ALIKES = [
    "how many calories in a banana",
    "how much vitamin c is in an orange",
    "healthy recipes for dinner",
    "give me a recipe for chicken soup",
    "my car is sick",
    "my computer has a virus",
    "i broke my phone",
    "operation on my account",
    "sick playlist",
    "who is the best doctor who",
    "what caused the great depression",
    "my dog has diarrhea",
    "what should I feed my puppy",
    "is my cat overweight",
    "i fell asleep on the couch",
    "i'm sick of my job",
    "this traffic is killing me",
    "what movie has the best heart attack scene",
    "how much is an overdraft fee",
    "who won the world cup",
    "reschedule my mammogram",
    # the words themselves, an assistant's tools, a machine's parts
    "how do you pronounce ibuprofen",
    "what rhymes with fever",
    "remind me to take my pills at 9",
    "my phone's battery is dying",
    "my watch's heart rate sensor is broken",
    "my printer keeps coughing out blank pages",
    "who discovered penicillin",
]


@pytest.mark.parametrize("text", REPORTS)
def test_symptom_reports(text):
    assert health_intent(text) == REPORT


@pytest.mark.parametrize("text", QUESTIONS)
def test_health_questions(text):
    assert health_intent(text) == QUESTION


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_stay_out_of_scope(text):
    assert health_intent(text) is None


def test_a_machine_in_a_message_about_a_person():
    assert health_intent("i dropped my laptop on my foot and it's swollen") == REPORT
    assert health_intent("my fitbit says my heart rate is 40 and i feel dizzy") == REPORT
    assert health_intent("can i use my phone to check my blood pressure") == QUESTION


def test_a_pet_in_a_message_about_a_person():
    assert health_intent("i got bitten by a dog and it's bleeding") == REPORT
    assert health_intent("can I catch ringworm from my cat") == QUESTION


def test_a_failing_triage_engine_only_means_no_complaint_read(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("rules being edited")

    monkeypatch.setattr(triage_engine, "default_engine", broken)
    assert health_intent("my eye is red") is None  # only the engine reads a complaint here
    assert health_intent("my son has a fever") == REPORT  # the vocabulary says so alone
    assert health_intent("is shingles contagious") == QUESTION
