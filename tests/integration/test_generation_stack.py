"""Optional LLM generation in the running assistant: its own stack (Rasa, action server, gateway)
configured with LLM_* variables that point at the OpenAI-protocol stand-in, real retrieval over the
knowledge base, questions through the gateway's API."""

import uuid

import httpx
import pytest

from careline.standins.openai_chat import LLMStandin
from tests.conftest import ROOT
from tests.helpers import say

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def standin():
    with LLMStandin() as s:
        yield s


@pytest.fixture(scope="module")
def llm_api(standin, redis_url, tmp_path_factory):
    from careline.supervisor import Stack, free_port

    env = {
        "LLM_MODEL": "openai:gpt-4o-mini",
        "LLM_BASE_URL": standin.base_url,
        "LLM_API_KEY": standin.api_key,
        "LLM_TIMEOUT_S": "2",
    }
    s = Stack(
        ROOT, gateway_port=free_port(), redis_url=redis_url, var=tmp_path_factory.mktemp("var-llm"), extra_env=env
    )
    try:
        s.start()
        s.wait_ready(60)
        with httpx.Client(base_url=s.gateway_url, timeout=60) as client:
            yield client
    finally:
        s.stop()


def ask(api, text: str) -> str:
    return say(api, f"test-{uuid.uuid4().hex}", text)["messages"][0]["text"]


def test_grounded_generation_reaches_the_patient_with_the_same_citation(llm_api, standin):
    standin.mode = "ungrounded"
    extractive = ask(llm_api, "what causes gout")
    standin.mode = "grounded"
    before = len(standin.requests)
    generated = ask(llm_api, "what causes gout")
    assert len(standin.requests) == before + 1
    body, cite = generated.split("\n\n")
    assert cite == extractive.split("\n\n")[-1] and cite.startswith("Source: ")
    assert body != extractive.split("\n\n")[0] and "uric acid" in generated.lower()
    # The passage the model was given is the one cited.
    user = standin.requests[-1]["body"]["messages"][1]["content"]
    assert body.split(". ")[0] in user


@pytest.mark.parametrize("mode", ["ungrounded", "500", "slow"])
def test_failed_generation_sends_the_extractive_answer(llm_api, standin, mode):
    standin.mode, standin.delay = "ungrounded", 3.0
    extractive = ask(llm_api, "is shingles contagious")
    standin.mode = mode
    assert ask(llm_api, "is shingles contagious") == extractive
    assert "lemon" not in extractive


def test_no_generation_when_the_assistant_abstains(llm_api, standin):
    before = len(standin.requests)
    reply = say(llm_api, f"test-{uuid.uuid4().hex}", "what are the side effects of mounjaro injections")
    assert "Source: " not in " ".join(m["text"] for m in reply["messages"])
    assert len(standin.requests) == before
