from dataclasses import replace

import pytest

from generator.checks import Checker, final_answer, normalize
from generator.templates import Prompts
from generator.values import Example

REF = "Lisbon is the capital of Portugal."


@pytest.fixture
def checker():
    return Checker(Prompts())


def ex(behavior, response, **attributes):
    return Example(
        id="x",
        seed_id="s",
        behavior=behavior,
        prompt="What is the capital?",
        response=response,
        attributes=attributes,
    )


def test_hedge_needs_cue_reference_and_confidence(checker):
    good = ex(
        "hedge",
        f"I believe this is right:\n\n{REF}\n\nAbout 90% sure.",
        confidence=0.9,
        p_correct=0.9,
    )
    assert checker.check(good, REF) == []
    assert "hedge_without_cue" in checker.check(replace(good, response=REF), REF)
    changed = replace(good, response=good.response.replace("Lisbon", "Porto"))
    assert "hedge_changed_reference" in checker.check(changed, REF)
    wrong = {"confidence": 0, "p_correct": 0.9}
    assert "hedge_without_confidence" in checker.check(replace(good, attributes=wrong), REF)


def test_a_hedge_states_only_the_measured_confidence(checker):
    text = f"I believe this is right:\n\n{REF}\n\nAbout 90% sure."
    unmeasured = ex("hedge", text, confidence=0.9)  # no p_correct: nothing measured it
    assert "hedge_confidence_not_measured" in checker.check(unmeasured, REF)
    other = ex("hedge", text.replace("90%", "60%"), confidence=0.9, p_correct=0.9)
    assert "hedge_states_another_confidence" in checker.check(other, REF)
    none = ex("hedge", text, confidence=None, level="unmeasured")
    assert "unmeasured_hedge_states_a_confidence" in checker.check(none, REF)
    plain = ex("hedge", text.replace("\n\nAbout 90% sure.", ""), confidence=None)
    assert checker.check(plain, REF) == []
    # a percentage the reference itself states is content, not a stated confidence
    ref = "The tax is 8% of the price."
    quoted = ex(
        "hedge",
        f"I believe this is right:\n\n{ref}\n\nAbout 70% sure.",
        confidence=0.7,
        p_correct=0.7,
    )
    assert checker.check(quoted, ref) == []


def test_reference_match_survives_reflowing():
    assert normalize("a  b\n c") == "a b c"


def test_refusal_must_decline_specifically_and_contrast_must_not(checker):
    decline = ex(
        "refusal", "I couldn't find reliable information about Quelwick.", entity="Quelwick"
    )
    assert checker.check(decline, REF) == []
    assert "refusal_does_not_decline" in checker.check(
        replace(decline, response="Quelwick is a town."), REF
    )
    assert "refusal_not_specific" in checker.check(
        replace(decline, response="I couldn't find reliable information about that."), REF
    )
    leaked = replace(decline, prompt="Where is Lisbon?", attributes={"replaced": "Lisbon"})
    assert "refusal_prompt_keeps_entity" in checker.check(leaked, REF)
    assert checker.check(ex("contrast", REF), REF) == []
    assert checker.check(ex("contrast", "I don't know."), REF) == ["contrast_declines"]


@pytest.mark.parametrize(
    "text",
    [
        "Here is the rewritten answer: Lisbon.",
        "As an AI language model, I think Lisbon.",
        "Sure! Here's Lisbon.",
    ],
)
def test_meta_talk_is_rejected(checker, text):
    assert "meta_talk" in checker.check(ex("contrast", text), REF)


def test_empty_and_unknown(checker):
    assert "empty_response" in checker.check(ex("contrast", "  "), REF)
    assert "unknown_behavior:poetry" in checker.check(ex("poetry", "x"), REF)


def test_near_miss_without_marks_fails(checker):
    assert checker.check(ex("near_miss", "2 + 2 = 4\n#### 4"), "#### 4") == ["near_miss_unmarked"]


def test_final_answer():
    assert final_answer("so 3 + 4 = 7\n#### 1,007") == "1007"
    assert final_answer("It is 12, then 15.") == "15"
    assert final_answer("no numbers") is None
