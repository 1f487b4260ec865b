import random
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.checks import Checker, final_answer
from generator.generators import Context
from generator.generators.near_miss import (
    NearMiss,
    Step,
    evaluate,
    plain_steps,
    slip_value,
    strip_annotations,
)
from generator.templates import Prompts
from generator.values import Seed, Skip

GSM = (
    "The farm has 12 * 4 = <<12*4=48>>48 hens.\n"
    "Half of them lay, so 48 / 2 = <<48/2=24>>24 hens lay.\n#### 24"
)


def test_strip_annotations_finds_verified_steps():
    text, steps = strip_annotations(GSM)
    assert "<<" not in text
    assert [(s.expression, s.result) for s in steps] == [("12 * 4", "48"), ("48 / 2", "24")]
    assert all(text[s.start : s.end] == s.result for s in steps)


def test_wrong_annotation_is_not_a_step():
    assert strip_annotations("So 3 * 3 = <<3*3=10>>10.")[1] == []


def test_plain_steps_and_evaluate():
    steps = plain_steps("It costs 3 x 7 = $21, then 21 + 1,000 = 1,021 in all.")
    assert [(s.expression, s.result) for s in steps] == [("3 x 7", "21"), ("21 + 1,000", "1,021")]
    assert evaluate("(2+3)*4") == Decimal(20)
    assert evaluate("__import__('os')") is None
    assert evaluate("2**100") is None


@given(
    a=st.integers(1, 999),
    b=st.integers(1, 99),
    kind=st.sampled_from(["off_by_one", "off_by_ten", "digit_swap", "extra_group"]),
)
def test_slip_is_wrong_positive_and_formatted_like_right(a, b, kind):
    right = str(a * b)
    wrong = slip_value(Step(f"{a} * {b}", right, 0, len(right)), kind)
    if wrong is not None:
        assert wrong != right and int(wrong) > 0 and not wrong.startswith("0")


def test_each_slip_kind_applies_somewhere():
    step = Step("23 * 4", "92", 0, 2)
    assert {
        k: slip_value(step, k) for k in ("off_by_one", "off_by_ten", "digit_swap", "extra_group")
    } == {"off_by_one": "93", "off_by_ten": "82", "digit_swap": "29", "extra_group": "115"}


def test_unpunctuated_line_gets_a_full_stop_before_the_recovery():
    _, out, _ = trace(answer="Cost: 12 * 3 = <<12*3=36>>36 dollars\n#### 36", k=3)
    for ex in out:
        at = ex.attributes["recovery"]["start"]
        assert ex.response[:at].rstrip().endswith(".")
        assert ex.attributes["slip"]["wrong"] not in {"12", "3"}


def test_huge_expression_is_not_a_step_and_does_not_crash():
    assert evaluate("+".join(["1"] * 5000)) is None


def trace(answer=GSM, k=1, seed_value=0):
    prompts = Prompts()
    seed = Seed.make("How many hens lay?", answer)
    out = NearMiss(prompts).offline(seed, Context(prompts, random.Random(seed_value)), k)
    return seed, out, Checker(prompts)


@pytest.mark.parametrize("seed_value", range(8))
def test_trace_has_one_slip_a_recovery_and_the_final_answer(seed_value):
    seed, (ex,), checker = trace(seed_value=seed_value)
    slip, recovery = ex.attributes["slip"], ex.attributes["recovery"]
    text = ex.response
    assert text[slip["start"] : slip["end"]] == slip["wrong"] != slip["right"]
    said = text[recovery["start"] : recovery["end"]]
    assert slip["right"] in said and slip["wrong"] in said
    assert slip["end"] <= recovery["start"]
    assert text.rstrip().endswith("#### 24") and final_answer(text) == "24"
    # The slip is carried no further than its own sentence: the recovery follows it.
    between = text[slip["end"] : recovery["start"]]
    assert "\n" not in between and between.count(". ") <= 1
    assert checker.check(ex, seed.response) == []


def test_checks_reject_a_second_unmarked_recovery_and_wrong_final():
    seed, (ex,), checker = trace()
    from dataclasses import replace

    doubled = replace(ex, response=ex.response + "\nWait, let me redo everything.")
    assert "near_miss_extra_slip" in checker.check(doubled, seed.response)
    wrong_end = replace(ex, response=ex.response.replace("#### 24", "#### 25"))
    assert "near_miss_wrong_final_answer" in checker.check(wrong_end, seed.response)


def test_no_calculation_is_skipped_with_reason():
    _, out, _ = trace(answer="Because the sky scatters blue light.")
    assert isinstance(out, Skip) and out.reason == "no_worked_calculation"


def test_k_candidates_are_different():
    _, out, _ = trace(k=4)
    assert len({e.response for e in out}) == 4
