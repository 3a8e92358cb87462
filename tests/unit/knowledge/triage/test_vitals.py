"""Vital signs and lab values in a message (knowledge/triage/vitals.py, thresholds in vitals.yml):
what is read in a clinician's and a patient's words, what is not read (ages, doses, dates, times,
pain scores), units, the danger zones by age (ESI), NEWS2 for adults, fever in babies, blood
pressure (and in pregnancy), blood sugar, lab values, the sources, and time per message."""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from knowledge.triage import vitals
from knowledge.triage.redflags import Source
from knowledge.triage.safe_regex import ambiguity, worst_case
from knowledge.triage.vitals import (
    VITALS_FILE,
    Vitals,
    VitalsFileError,
    assess_vitals,
    load_thresholds,
    news2,
    read_vitals,
)

ROOT = Path(__file__).resolve().parents[4]
ADULT = 40 * 12
LABS = {"potassium", "sodium", "haemoglobin", "troponin_positive"}


def _check(v: Vitals, expected: dict) -> None:
    for key, want in expected.items():
        got = v.labs.get(key) if key in LABS else getattr(v, key)
        assert got == want, f"{key}: read {got!r}, expected {want!r}"


def _levels(findings) -> dict[str, str]:
    return {f.name: f.level for f in findings}


def _top(findings) -> str | None:
    return findings[0].level if findings else None


# --- reading: a clinician's notes ----------------------------------------------------------------

CLINICIAN = [
    (
        "HR 126, RR 28, BP 80/64, SpO2 96% on a non-rebreather",
        dict(heart_rate=126, resp_rate=28, systolic=80, diastolic=64, spo2=96, on_oxygen=True),
    ),
    (
        "VS: BP 136/84, HR 108, RR 20, SpO2 97%, temperature (T) 97° F",
        dict(
            systolic=136,
            diastolic=84,
            heart_rate=108,
            resp_rate=20,
            spo2=97,
            temperature_c=pytest.approx(36.11, abs=0.01),
            on_oxygen=False,
        ),
    ),
    ("T 38.9C", dict(temperature_c=38.9)),
    ("P 52", dict(heart_rate=52)),
    ("pulse ox 89% RA", dict(spo2=89, heart_rate=None, on_oxygen=False)),
    ("sats 91% on 2L", dict(spo2=91, on_oxygen=True)),
    ("GCS 13", dict(gcs=13)),
    ("GCS 13/15", dict(gcs=13)),
    ("BP 210/130", dict(systolic=210, diastolic=130)),
    ("FSBG 42", dict(glucose_mg_dl=42)),
    ("glucose 512", dict(glucose_mg_dl=512)),
    ("K 6.8", dict(potassium=6.8)),
    ("K+ 2.4 mmol/L", dict(potassium=2.4)),
    ("Na 118", dict(sodium=118)),
    ("Hgb 6.9", dict(haemoglobin=6.9)),
    ("Hb 69 g/L", dict(haemoglobin=6.9)),
    ("temp 101.4", dict(temperature_c=pytest.approx(38.56, abs=0.01))),
    ("Tmax 102.3", dict(temperature_c=pytest.approx(39.06, abs=0.01))),
    (
        "heart rate (HR) 126, respiratory rate (RR), 28, blood pressure (BP) 80/64",
        dict(heart_rate=126, resp_rate=28, systolic=80, diastolic=64),
    ),
    ("VS: T. 98° F, HR 66, RR 14, BP 106/68.", dict(temperature_c=pytest.approx(36.67, abs=0.01), heart_rate=66)),
    ("her SpO2 on room air is 86 percent", dict(spo2=86, on_oxygen=False)),
    ("sats on 2L 94%", dict(spo2=94, on_oxygen=True)),
    ("blood pressure (BP) 70/palp, heart rate (HR) 128", dict(systolic=70, diastolic=None, heart_rate=128)),
    ("BP at 10:30 was 150/90", dict(systolic=150, diastolic=90)),
    ("RR 32/min, T 36.2", dict(resp_rate=32, temperature_c=36.2)),
    ("BM 2.1", dict(glucose_mg_dl=pytest.approx(37.8))),
    ("the displaying a saturation of 84 percent", dict(spo2=84)),
    ("Glasgow Coma Scale (GCS) of 14", dict(gcs=14)),
    ("troponin elevated", dict(troponin_positive=1.0)),
    ("positive troponin at the clinic", dict(troponin_positive=1.0)),
    ("troponin negative x2", dict(troponin_positive=0.0)),
    ("BP 150/95 mmHg, pulse 88 bpm", dict(systolic=150, diastolic=95, heart_rate=88)),
]


@pytest.mark.parametrize("text,expected", CLINICIAN, ids=[c[0][:40] for c in CLINICIAN])
def test_reads_a_clinicians_vital_signs(text, expected):
    _check(read_vitals(text), expected)


# --- reading: a patient's words ------------------------------------------------------------------

PATIENT = [
    ("my heart rate is 140", dict(heart_rate=140)),
    ("pulse is like 130 bpm", dict(heart_rate=130)),
    ("oxygen is 88%", dict(spo2=88)),
    ("o2 sat 89", dict(spo2=89)),
    ("my bp was 190 over 115", dict(systolic=190, diastolic=115)),
    ("blood pressure 85/50", dict(systolic=85, diastolic=50)),
    ("sugar is 45", dict(glucose_mg_dl=45)),
    ("blood sugar reading of 30", dict(glucose_mg_dl=30)),
    ("temp 39.5", dict(temperature_c=39.5)),
    ("fever of 103", dict(temperature_c=pytest.approx(39.44, abs=0.01))),
    ("breathing 30 times a minute", dict(resp_rate=30)),
    ("my watch says my heart rate is 45", dict(heart_rate=45)),
    ("My blood pressure is really high, 190/110 this morning", dict(systolic=190, diastolic=110)),
    ("my oxygen dropped to 85 on the pulse oximeter", dict(spo2=85)),
    ("oxygen level is 90 percent", dict(spo2=90)),
    ("his heart is pounding at 150", dict(heart_rate=150)),
    ("she is taking 40 breaths a minute", dict(resp_rate=40)),
    ("it's going 150 bpm", dict(heart_rate=150)),
    ("my sugars have been in the 400s", dict(glucose_mg_dl=400)),
    ("glucometer says 38", dict(glucose_mg_dl=38)),
    ("my potassium came back at 6.9", dict(potassium=6.9)),
    ("she has a 103 fever", dict(temperature_c=pytest.approx(39.44, abs=0.01))),
    ("baby is burning up, 38.5°C", dict(temperature_c=38.5)),
    ("it's 39 c in my mouth", dict(temperature_c=39.0)),
    ("she is 88% on room air", dict(spo2=88, on_oxygen=False)),
    ("satting 91% on 2L", dict(spo2=91, on_oxygen=True)),
    ("they put him on 100% oxygen", dict(spo2=None, on_oxygen=True)),
    ("150 beats per minute at rest", dict(heart_rate=150)),
    ("bp 150/90, then went up to 190/110", dict(systolic=190, diastolic=110)),
    ("temp was 101, now 104.5", dict(temperature_c=pytest.approx(40.28, abs=0.01))),
    ("temperature was 35.2", dict(temperature_c=35.2)),
    ("I'm 45 and my heart rate is 140", dict(heart_rate=140)),
    ("my dad (72) has blood pressure of 200/120", dict(systolic=200, diastolic=120)),
    ("not on oxygen, sats 95%", dict(spo2=95, on_oxygen=False)),
    ("mum is on 4 liters nasal cannula at home and her o2 is 89", dict(spo2=89, on_oxygen=True)),
    ("fever 102 for 2 days", dict(temperature_c=pytest.approx(38.89, abs=0.01))),
    ("oxygen was 95 and now it's 87", dict(spo2=87)),
    ("my sugar 12 to 15 all week", dict(glucose_mg_dl=270)),  # both mmol/L
]


@pytest.mark.parametrize("text,expected", PATIENT, ids=[c[0][:40] for c in PATIENT])
def test_reads_a_patients_vital_signs(text, expected):
    _check(read_vitals(text), expected)


# --- not vital signs ------------------------------------------------------------------------------

NOT_VITALS = [
    "My 58-year-old husband has had a cough for 3 days",
    "I took 500 mg of paracetamol and 2 tablets of ibuprofen at 10:30",
    "she weighs 180 lbs and is 5 foot 6",
    "the appointment is on 3/4/2024 at 10:30 am",
    "pain is 1 out of 10 now, it was 8/10 yesterday",
    "call me back on 555-123-4567",
    "I need a refill of my BP meds",
    "my blood pressure has been fine since I started the new pills",
    "I take 2 BP meds a day",
    "my heart rate monitor cost 100 dollars",
    "I sat in the waiting room for 45 minutes",
    "I put 1 spoon of sugar in my tea, sugar 2 spoons later",
    "I had a temp job for 3 months",
    "she takes vitamin K 5 mg",
    "it was 100 F outside and 40 C in the car",
    "a normal heart rate is 60-100",
    "my target sats are 88-92%",
    "blood pressure 2 weeks ago was fine",
    "my HbA1c 7.2 last month",
    "I'm on 2 inhalers",
    "p 52 is the page in my notes",
    "he had a heart attack 2 years ago",
    "keep sodium under 2300 mg a day",
    "fever for 3 days and a fever of 3 days",
    "oxygen 2 days ago",
    "I have 3 kids and sat with them 2 hours",
    "sugar 2 to 3 times a day",
    "what's 30 degrees celsius in fahrenheit",
    "convert 38 c to f",
    "it's 35 C today and 104 F outside",
    "BM25 ranking for the search",
]


@pytest.mark.parametrize("text", NOT_VITALS)
def test_numbers_that_are_not_vital_signs_are_not_read(text):
    v = read_vitals(text)
    assert v.stated() == ()
    assert not v.on_oxygen


def test_a_label_without_a_number_or_with_a_number_far_away_reads_nothing():
    assert read_vitals("my blood pressure is something I worry about, I am 64").stated() == ()
    assert read_vitals("heart rate and 140 other things").stated() == ()


# --- units ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,celsius",
    [
        ("temp 38.5", 38.5),  # 35-43 bare: Celsius
        ("temp 101", 38.33),  # 95-110 bare: Fahrenheit
        ("temp 39.5 C", 39.5),
        ("temperature 102 F", 38.89),
        ("temp 102 degrees", 38.89),
        ("101.2 °F", 38.44),
        ("38.5°C", 38.5),
        ("temp went from 99 to 103", 39.44),  # the worst of several
        ("temp 120", None),  # neither
        ("temp 20", None),
    ],
)
def test_temperature_units(text, celsius):
    got = read_vitals(text).temperature_c
    assert got == (None if celsius is None else pytest.approx(celsius, abs=0.01))


@pytest.mark.parametrize(
    "text,mg_dl",
    [
        ("sugar 5.5 mmol/L", 99),
        ("blood sugar 3 mmol", 54),
        ("glucose 2.8", 50.4),  # a decimal under 35 is mmol/L
        ("sugar 15", 270),  # too small to be mg/dL
        ("glucose 45 mg/dL", 45),
        ("blood sugar reading of 30", 30),  # mg/dL as written in the US
        ("glucose 500 mg", None),  # a dose
    ],
)
def test_glucose_units(text, mg_dl):
    got = read_vitals(text).glucose_mg_dl
    assert got == (None if mg_dl is None else pytest.approx(mg_dl, abs=0.1))


def test_blood_pressure_in_mmhg_without_a_label():
    v = read_vitals("it was 190/115 mmHg at the pharmacy")
    assert (v.systolic, v.diastolic) == (190, 115)
    assert read_vitals("it was 190/115 at the pharmacy").systolic is None  # could be anything


def test_several_readings_keep_the_worst():
    assert read_vitals("HR 90, repeat HR 135").heart_rate == 135
    assert read_vitals("sats 96%, then dropped to 88%").spo2 == 88
    assert read_vitals("heart rate 120-130").heart_rate == 130
    assert read_vitals("sugar was 45 this morning, now 110").glucose_mg_dl == 45
    assert read_vitals("bg 250 and now 35").glucose_mg_dl == 35  # further from normal than 250


def test_a_one_letter_label_counts_only_in_capitals():
    assert read_vitals("T 38.9").temperature_c == 38.9
    assert read_vitals("t 38.9").temperature_c is None
    assert read_vitals("K 6.8").labs == {"potassium": 6.8}
    assert read_vitals("k 6.8").labs == {}


# --- "vital signs normal" ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,about",
    [
        ("Vital signs within normal limits for age.", {"vitals"}),
        ("His vital signs are normal for his age.", {"vitals"}),
        ("VS WNL", {"vitals"}),
        ("vitals stable overnight", {"vitals"}),
        ("VSS, eating well", {"vitals"}),
        ("She is afebrile.", {"temperature"}),
        ("afebrile, vital signs normal", {"vitals", "temperature"}),
        ("vital signs are not normal", set()),
        ("abnormal vital signs", set()),
        ("VS: BP 136/84", set()),
        ("blood pressure has been fine", set()),
    ],
)
def test_normal_vital_signs_stated(text, about):
    v = read_vitals(text)
    assert v.normal_stated_about == about
    assert v.normal_stated is bool(about)


# --- the ESI danger zone by age ------------------------------------------------------------------


@pytest.mark.parametrize(
    "age,limit_hr,limit_rr",
    [(1, 180, 50), (2.9, 180, 50), (3, 160, 40), (35, 160, 40), (36, 140, 30), (95, 140, 30), (96, 100, 20)],
)
def test_danger_zone_heart_and_breathing_rate_by_age(age, limit_hr, limit_rr):
    assert assess_vitals(Vitals(heart_rate=limit_hr), age) == []
    assert _levels(assess_vitals(Vitals(heart_rate=limit_hr + 1), age)) == {"heart_rate_high": "urgent"}
    assert assess_vitals(Vitals(resp_rate=limit_rr), age) == []
    assert _levels(assess_vitals(Vitals(resp_rate=limit_rr + 1), age)) == {"resp_rate_high": "urgent"}


def test_an_unknown_age_counts_as_an_adult():
    assert _levels(assess_vitals(Vitals(heart_rate=101), None)) == {"heart_rate_high": "urgent"}
    assert _levels(assess_vitals(Vitals(heart_rate=131), None)) == {"heart_rate_high": "emergency"}


@pytest.mark.parametrize("age", [1, 24, 60, 120, ADULT])
def test_oxygen_below_92_is_an_emergency_at_any_age(age):
    assert _levels(assess_vitals(Vitals(spo2=91), age))["spo2_low"] == "emergency"
    assert assess_vitals(Vitals(spo2=92), age) == []


def test_several_danger_zone_vital_signs_together_are_an_emergency():
    findings = assess_vitals(Vitals(heart_rate=150, resp_rate=35), 5 * 12)  # a 5-year-old
    levels = _levels(findings)
    assert levels == {"heart_rate_high": "urgent", "resp_rate_high": "urgent", "danger_zone_vitals": "emergency"}
    assert findings[0].name == "danger_zone_vitals"
    assert "heart rate 150" in findings[0].reason and "breathing rate 35" in findings[0].reason


def test_a_child_is_not_scored_with_news2():
    v = Vitals(heart_rate=135, resp_rate=26, systolic=85, spo2=95, temperature_c=39.5)
    child = _levels(assess_vitals(v, 15 * 12))
    assert not {"news2_high", "news2_medium", "systolic_low"} & set(child)
    assert child["heart_rate_high"] == "urgent"  # the ESI band still applies
    adult = _levels(assess_vitals(v, 16 * 12))
    assert adult["news2_high"] == "emergency" and adult["systolic_low"] == "emergency"


# --- NEWS2 ---------------------------------------------------------------------------------------

BASE = dict(resp_rate=16, spo2=98, systolic=120, heart_rate=70, temperature_c=37.0)


@pytest.mark.parametrize(
    "parameter,value,score",
    [
        ("resp_rate", 8, 3),
        ("resp_rate", 9, 1),
        ("resp_rate", 11, 1),
        ("resp_rate", 12, 0),
        ("resp_rate", 20, 0),
        ("resp_rate", 21, 2),
        ("resp_rate", 24, 2),
        ("resp_rate", 25, 3),
        ("spo2", 91, 3),
        ("spo2", 92, 2),
        ("spo2", 93, 2),
        ("spo2", 94, 1),
        ("spo2", 95, 1),
        ("spo2", 96, 0),
        ("systolic", 90, 3),
        ("systolic", 91, 2),
        ("systolic", 100, 2),
        ("systolic", 101, 1),
        ("systolic", 110, 1),
        ("systolic", 111, 0),
        ("systolic", 219, 0),
        ("systolic", 220, 3),
        ("heart_rate", 40, 3),
        ("heart_rate", 41, 1),
        ("heart_rate", 50, 1),
        ("heart_rate", 51, 0),
        ("heart_rate", 90, 0),
        ("heart_rate", 91, 1),
        ("heart_rate", 110, 1),
        ("heart_rate", 111, 2),
        ("heart_rate", 130, 2),
        ("heart_rate", 131, 3),
        ("temperature_c", 35.0, 3),
        ("temperature_c", 35.1, 1),
        ("temperature_c", 36.0, 1),
        ("temperature_c", 36.1, 0),
        ("temperature_c", 38.0, 0),
        ("temperature_c", 38.1, 1),
        ("temperature_c", 39.0, 1),
        ("temperature_c", 39.1, 2),
        ("gcs", 15, 0),
        ("gcs", 14, 3),
    ],
)
def test_news2_scores_each_parameter(parameter, value, score):
    assert news2(Vitals(**{**BASE, parameter: value})) == score


def test_news2_needs_three_parameters_and_adds_two_for_oxygen():
    assert news2(Vitals(heart_rate=120, resp_rate=22)) is None
    assert news2(Vitals(heart_rate=120, resp_rate=22, spo2=97)) == 4
    assert news2(Vitals(heart_rate=120, resp_rate=22, spo2=97, on_oxygen=True)) == 6
    assert news2(read_vitals("T 100.4F, HR 95, RR 18")) == 1  # 38.0 °C scores 0


def test_news2_aggregate_levels():
    # 1 + 1 + 2 + 1 + 1 = 6, no single parameter of 3, none in the ESI danger zone: NEWS2 alone.
    medium = Vitals(resp_rate=9, spo2=94, systolic=100, heart_rate=45, temperature_c=35.5)
    assert news2(medium) == 6
    assert _levels(assess_vitals(medium, ADULT)) == {"news2_medium": "urgent"}
    high = Vitals(resp_rate=22, spo2=95, systolic=105, heart_rate=98, temperature_c=39.5)  # 2+1+1+1+2 = 7
    assert news2(high) == 7
    assert _levels(assess_vitals(high, ADULT))["news2_high"] == "emergency"
    low = Vitals(resp_rate=18, spo2=96, systolic=118, heart_rate=88, temperature_c=37.2)
    assert news2(low) == 0 and assess_vitals(low, ADULT) == []


@pytest.mark.parametrize(
    "v,name,level",
    [
        (Vitals(resp_rate=25), "resp_rate_high", "emergency"),
        (Vitals(resp_rate=8), "resp_rate_low", "emergency"),
        (Vitals(spo2=91), "spo2_low", "emergency"),
        (Vitals(heart_rate=131), "heart_rate_high", "emergency"),
        (Vitals(heart_rate=40), "heart_rate_low", "urgent"),
        (Vitals(systolic=90), "systolic_low", "emergency"),
        (Vitals(temperature_c=35.0), "temperature_low", "emergency"),
    ],
)
def test_single_red_news2_parameters_in_adults(v, name, level):
    assert _levels(assess_vitals(v, ADULT))[name] == level


def test_low_pressure_with_a_fast_heart_says_so():
    findings = {f.name: f for f in assess_vitals(Vitals(systolic=86, diastolic=40, heart_rate=132), ADULT)}
    assert findings["systolic_low"].level == "emergency"
    assert "86/40" in findings["systolic_low"].reason and "132" in findings["systolic_low"].reason
    alone = {f.name: f for f in assess_vitals(Vitals(systolic=86, diastolic=50, heart_rate=52), ADULT)}
    assert alone["systolic_low"].level == "emergency" and "52" not in alone["systolic_low"].reason


# --- temperature ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "age,celsius,expected",
    [
        (1, 38.0, {"fever_young_infant": "emergency"}),
        (2.9, 38.3, {"fever_young_infant": "emergency"}),
        (1, 37.9, {}),
        (4, 39.0, {"fever_infant": "urgent"}),
        (4, 38.9, {}),
        (24, 39.5, {}),
        (24, 40.0, {"temperature_high": "urgent"}),
        (ADULT, 40.0, {"temperature_high": "urgent"}),
        (ADULT, 41.5, {"temperature_high": "emergency"}),
        (24, 35.0, {"temperature_low": "emergency"}),
        (ADULT, 35.1, {}),
    ],
)
def test_temperature(age, celsius, expected):
    assert _levels(assess_vitals(Vitals(temperature_c=celsius), age)) == expected


def test_a_fever_in_a_baby_read_from_the_message():
    findings = assess_vitals(read_vitals("My baby has a temperature of 101 rectally"), 0.7)
    assert _levels(findings) == {"fever_young_infant": "emergency"}
    assert "38.3°C (101.0°F)" in findings[0].reason


# --- blood pressure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "systolic,diastolic,pregnant,expected",
    [
        (180, 100, None, {"blood_pressure_high": "urgent"}),
        (150, 120, False, {"blood_pressure_high": "urgent"}),
        (179, 119, None, {}),
        (160, 110, False, {}),
        (160, 100, True, {"blood_pressure_high_pregnancy": "emergency"}),
        (150, 110, True, {"blood_pressure_high_pregnancy": "emergency"}),
        (140, 85, True, {"blood_pressure_high_pregnancy": "urgent"}),
        (138, 90, True, {"blood_pressure_high_pregnancy": "urgent"}),
        (139, 89, True, {}),
        (190, 115, True, {"blood_pressure_high_pregnancy": "emergency", "blood_pressure_high": "urgent"}),
    ],
)
def test_blood_pressure(systolic, diastolic, pregnant, expected):
    assert _levels(assess_vitals(Vitals(systolic=systolic, diastolic=diastolic), ADULT, pregnant)) == expected


# --- blood sugar and lab values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "mg_dl,expected",
    [
        (53, {"glucose_low": "emergency"}),
        (54, {"glucose_low": "urgent"}),
        (69, {"glucose_low": "urgent"}),
        (70, {}),
        (400, {}),
        (401, {"glucose_high": "urgent"}),
        (599, {"glucose_high": "urgent"}),
        (600, {"glucose_high": "emergency"}),
    ],
)
def test_glucose(mg_dl, expected):
    assert _levels(assess_vitals(Vitals(glucose_mg_dl=mg_dl), ADULT)) == expected


@pytest.mark.parametrize(
    "labs,expected",
    [
        ({"potassium": 6.5}, {"potassium_high": "emergency", "potassium_raised": "urgent"}),
        ({"potassium": 6.4}, {"potassium_raised": "urgent"}),
        ({"potassium": 5.9}, {}),
        ({"potassium": 2.5}, {"potassium_low": "emergency"}),
        ({"potassium": 2.6}, {}),
        ({"sodium": 120}, {"sodium_low": "emergency"}),
        ({"sodium": 124}, {"sodium_low": "urgent"}),
        ({"sodium": 125}, {}),
        ({"haemoglobin": 6.9}, {"haemoglobin_low": "urgent"}),
        ({"haemoglobin": 7.0}, {}),
        ({"troponin_positive": 1.0}, {"troponin_positive": "emergency"}),
        ({"troponin_positive": 0.0}, {}),
    ],
)
def test_lab_values(labs, expected):
    assert _levels(assess_vitals(Vitals(labs=labs), ADULT)) == expected


def test_gcs():
    assert _levels(assess_vitals(Vitals(gcs=13), ADULT)) == {"gcs_low": "emergency"}
    assert assess_vitals(Vitals(gcs=14), ADULT) == []


# --- from message to level -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,age,level",
    [
        ("HR 126, RR 28, BP 80/64, SpO2 96% on a non-rebreather", ADULT, "emergency"),
        ("VS: BP 136/84, HR 108, RR 20, SpO2 97%, temperature (T) 97° F", ADULT, "urgent"),
        ("VS: BP 148/70, P 126, RR 24.", ADULT, "emergency"),
        ("my bp was 190 over 115", ADULT, "urgent"),
        ("sugar is 45", ADULT, "emergency"),
        ("oxygen is 88%", ADULT, "emergency"),
        ("pulse is like 130 bpm", ADULT, "urgent"),
        ("my heart rate is 140", ADULT, "emergency"),
        ("K 6.8", ADULT, "emergency"),
        ("fever of 103", 2, "emergency"),
        ("my watch says my heart rate is 45", ADULT, None),
        ("temp 101.4", ADULT, None),
        ("T 98.8° F, RR 14, HR 62, BP 108/70", ADULT, None),
        ("Vital signs are within normal limits for age.", 19, None),
    ],
)
def test_message_to_level(text, age, level):
    assert _top(assess_vitals(read_vitals(text), age)) == level


def test_values_inside_the_normal_range_give_no_finding():
    normal = Vitals(
        heart_rate=72,
        resp_rate=16,
        systolic=122,
        diastolic=78,
        spo2=98,
        temperature_c=36.9,
        glucose_mg_dl=105,
        gcs=15,
        labs={"potassium": 4.1, "sodium": 139, "haemoglobin": 13.5, "troponin_positive": 0.0},
    )
    for age in (None, 1, 24, 60, 120, ADULT):
        assert assess_vitals(normal, age, pregnant=True) == []


def test_vitals_are_hashable_and_list_what_was_stated():
    v = read_vitals("HR 126, K 6.8, sats 91% on 2L")
    assert v.stated() == ("heart_rate", "spo2", "potassium")
    assert hash(v) == hash(read_vitals("HR 126, K 6.8, sats 91% on 2L"))


def test_findings_come_most_urgent_first():
    findings = assess_vitals(Vitals(heart_rate=112, glucose_mg_dl=40), ADULT)
    assert [f.level for f in findings] == ["emergency", "urgent"]


# --- reasons and sources -------------------------------------------------------------------------

JARGON = ("NEWS", "ESI", "SpO2", "GCS", " HR ", " RR ", " BP ", "tachy", "brady", "hypo", "hyper", "mmHg")
EVERYTHING = [
    Vitals(heart_rate=135, resp_rate=30, systolic=80, diastolic=50, spo2=85, temperature_c=41.6, gcs=12),
    Vitals(heart_rate=35, resp_rate=7, systolic=200, diastolic=125, temperature_c=34.0, glucose_mg_dl=40),
    Vitals(glucose_mg_dl=650, labs={"potassium": 7.0, "sodium": 118, "haemoglobin": 6.0, "troponin_positive": 1.0}),
    Vitals(labs={"potassium": 2.0}, systolic=165, diastolic=112, temperature_c=38.4),
]


def test_every_finding_has_a_plain_reason_with_the_value_and_a_cited_source():
    sources = vitals.VITAL_SOURCES
    names = set()
    for v in EVERYTHING:
        for age in (1, 4, ADULT):
            for f in assess_vitals(v, age, pregnant=True):
                names.add(f.name)
                assert isinstance(f.source, Source) and f.source in sources
                assert f.source.url.startswith("https://")
                assert f.level in ("emergency", "urgent", "routine")
                assert not any(word in f" {f.reason} " for word in JARGON), f.reason
                assert "not stated" not in f.reason and "{" not in f.reason
    assert len(names) >= 20  # every kind of finding was reached


def test_vital_sources_are_every_source_in_the_file_and_all_are_used():
    data = yaml.safe_load(VITALS_FILE.read_text())
    sources = vitals.VITAL_SOURCES
    assert [s.url for s in sources] == [s["url"] for s in data["sources"].values()]
    used = {r["source"] for r in data["rules"]} | {data["danger_zone"]["source"], data["news2"]["source"]}
    assert used == set(data["sources"])
    assert all(s.organisation and s.title for s in sources)


def test_the_thresholds_are_data(tmp_path):
    data = yaml.safe_load(VITALS_FILE.read_text())
    data["danger_zone"]["bands"][-1]["heart_rate_above"] = 110
    path = tmp_path / "vitals.yml"
    path.write_text(yaml.safe_dump(data))
    changed = load_thresholds(path)
    assert assess_vitals(Vitals(heart_rate=105), ADULT, thresholds=changed) == []
    assert _levels(assess_vitals(Vitals(heart_rate=105), ADULT)) == {"heart_rate_high": "urgent"}


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d["rules"][0].update(source="nowhere"), "unknown source"),
        (lambda d: d["rules"][0].update(parameter="pulse"), "unknown parameter"),
        (lambda d: d["rules"][0].update(level="soon"), "unknown level"),
        (lambda d: d["rules"][0].update(at_most=3), "exactly one of"),
        (lambda d: d["rules"][0].update(reason="Your {heartrate} is high"), "heartrate"),
        (lambda d: d["news2"]["scores"].pop("gcs"), "news2 scores"),
    ],
)
def test_a_broken_thresholds_file_is_refused(tmp_path, change, message):
    data = yaml.safe_load(VITALS_FILE.read_text())
    change(data)
    path = tmp_path / "vitals.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(VitalsFileError, match=message):
        load_thresholds(path)


# --- time ----------------------------------------------------------------------------------------


def test_the_tokenizer_cannot_backtrack():
    assert ambiguity(vitals._TOKEN.pattern) is None
    assert worst_case(vitals._TOKEN, limit=10_000, bound_ms=20.0).ms < 20.0


ADVERSARIAL = [
    ("hr " * 3400)[:9998] + " 1",
    ("hr is " * 1700)[:9998] + " 1",
    ("heart rate is like " * 600)[:9998] + " 1",
    ("bp 120/" * 1500)[:10_000],
    ("sats 90% on " * 900)[:10_000],
    ("on a " * 2500)[:10_000],
    ("blood sugar reading of " * 450)[:9998] + "45",
    ("temperature ( t ) " * 600)[:10_000],
    ("vital signs are all " * 600)[:10_000],
    ("troponin was was " * 600)[:10_000],
    "1-" * 5000,
    "1:" * 5000,
    "1." * 5000,
    "9" * 10_000,
    "°" * 5000 + "é" * 5000,
    "sugar " + "45 - " * 2400 + "x",
    ("temp ( T ( T ( " * 700)[:9000] + "45 - " * 200 + "x",
    ("sats 88% then dropped to " * 400)[:10_000],
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=[t[:12] for t in ADVERSARIAL])
def test_an_adversarial_10000_character_message_is_fast(text):
    vitals.default_thresholds()  # loaded once, as in the service
    start = time.perf_counter()
    assess_vitals(read_vitals(text), None)
    assert time.perf_counter() - start < 0.5


def realistic_messages(n: int = 200, seed: int = 7) -> list[str]:
    """Patients' and clinicians' messages of everyday length, with numbers in them."""
    rng = random.Random(seed)
    patient = [
        "Hi, my {rel} is {age} and has been feeling dizzy since yesterday. {vital} Should we go in?",
        "I've had a cough for {days} days and now I'm short of breath. {vital} I took 2 tablets at 10:30.",
        "{vital} I'm diabetic, type 2, on metformin 500 mg twice a day. What should I do?",
        "My {age} year old son fell off his bike. He seems ok but {vital} Pain is 4 out of 10.",
        "Been throwing up all night, {vital} can't keep water down, BP meds didn't stay in either.",
        "{vital} my watch keeps buzzing and I feel a bit off. I'm {age}.",
    ]
    clinician = [
        "{age}-year-old with {days} days of fever and cough. VS: T {temp}° F, HR {hr}, RR {rr}, BP {sbp}/{dbp}, "
        "SpO2 {spo2}% RA. NKDA.",
        "EMS arrives with a {age}-year-old found at home. Vital signs: BP {sbp}/{dbp}, HR {hr}, RR {rr}, "
        "SpO2 {spo2}% on 2L, FSBG {bg}.",
        "Pt {age} yo, c/o chest pain x{days}h. HR {hr}, BP {sbp}/{dbp}, RR {rr}, sats {spo2}%, temp {tempc}. "
        "K {k}, Na {na}, Hgb {hgb}.",
    ]
    vitals_said = [
        "my heart rate is {hr}.",
        "pulse is like {hr} bpm.",
        "oxygen is {spo2}%.",
        "my bp was {sbp} over {dbp}.",
        "blood sugar reading of {bg}.",
        "temp {tempc}.",
        "fever of {temp}.",
        "breathing {rr} times a minute.",
        "no idea about numbers.",
    ]
    messages = []
    for n_message in range(n):
        values = dict(
            rel=rng.choice(["mum", "dad", "husband", "wife"]),
            age=rng.randint(1, 90),
            days=rng.randint(1, 10),
            hr=rng.randint(40, 170),
            rr=rng.randint(8, 40),
            sbp=rng.randint(75, 220),
            dbp=rng.randint(40, 130),
            spo2=rng.randint(82, 100),
            bg=rng.randint(30, 600),
            temp=round(rng.uniform(96, 105), 1),
            tempc=round(rng.uniform(35, 41), 1),
            k=round(rng.uniform(2.5, 7), 1),
            na=rng.randint(115, 150),
            hgb=round(rng.uniform(5, 16), 1),
        )
        values["vital"] = rng.choice(vitals_said).format(**values)
        template = clinician[n_message % 3] if n_message % 4 == 0 else rng.choice(patient)
        messages.append(template.format(**values))
    return messages


def _time_per_message(messages: list[str]) -> list[float]:
    vitals.default_thresholds()
    times = []
    for text in messages:
        start = time.perf_counter()
        v = read_vitals(text)
        assess_vitals(v, None)
        times.append(time.perf_counter() - start)
    return times


def test_time_per_realistic_message_is_a_small_part_of_the_engines_50_ms():
    messages = realistic_messages()
    assert sum(bool(read_vitals(m).stated()) for m in messages) > 150  # the set really has numbers in it
    times = sorted(_time_per_message(messages))
    p95 = times[int(0.95 * len(times)) - 1]
    assert statistics.median(times) < 0.002
    assert p95 < 0.005


def test_importing_the_module_reads_no_file():
    code = "import knowledge.triage.vitals as v; print(v.default_thresholds.cache_info().currsize)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "0"
