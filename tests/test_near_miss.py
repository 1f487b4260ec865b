import random
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator import annotations
from generator.checks import Checker, final_answer
from generator.generators import Context
from generator.generators.near_miss import (
    NearMiss,
    Step,
    annotated_steps,
    evaluate,
    plain_steps,
    slip_value,
)
from generator.templates import Prompts
from generator.values import Seed, Skip

GSM = (
    "The farm has 12 * 4 = <<12*4=48>>48 hens.\n"
    "Half of them lay, so 48 / 2 = <<48/2=24>>24 hens lay.\n#### 24"
)


def test_annotated_steps_are_verified_and_located_in_the_answer():
    steps = annotated_steps(GSM)
    assert [(s.expression, s.result) for s in steps] == [("12 * 4", "48"), ("48 / 2", "24")]
    assert all(GSM[s.start : s.end] == s.result for s in steps)
    assert all(GSM[slice(*s.claimed)] == s.result for s in steps)  # inside <<...=48>>


def test_wrong_or_empty_annotation_is_not_a_step():
    assert annotated_steps("So 3 * 3 = <<3*3=10>>10.") == []
    assert annotated_steps("She is <<15=15>>15 years old.") == []


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
    assert {k: slip_value(step, k) for k in ("off_by_ten", "digit_swap", "extra_group")} == {
        "off_by_ten": "82",
        "digit_swap": "29",
        "extra_group": "115",
    }
    assert slip_value(Step("23 + 14", "37", 0, 2), "off_by_one") == "36"
    assert slip_value(Step("18 * .5", "9.00", 0, 4), "decimal_point") == "0.90"
    assert slip_value(Step("3 * 3.35", "10.05", 0, 5), "dropped_zero") == "10.5"
    assert slip_value(Step("3 * 3.15", "9.45", 0, 4), "rounding") == "9"


@pytest.mark.parametrize(
    "expression, right, kind, wrong",
    [
        # money and decimals: a misplaced point or a dropped zero, never a cent off
        ("18 * .5", "9.00", "off_by_one", None),
        ("0.25 * 40", "10", "off_by_one", None),
        ("0.25 * 40", "10", "decimal_point", "100"),
        ("3 * 3.35", "10.05", "decimal_point", "100.50"),  # not 1.005: cents stay cents
        ("7 * 1.25", "8.75", "dropped_zero", None),  # no zero to drop
        ("7 * 1.25", "8.75", "rounding", "9"),
        # whole-number slips don't apply to decimals, nor decimal ones to whole numbers
        ("3 * 3.35", "10.05", "digit_swap", None),
        ("12 * 4", "48", "decimal_point", None),
        # a product is not off by one; round results of round numbers keep their zeros
        ("2 * 3", "6", "off_by_one", None),
        ("2500 / 5", "500", "off_by_one", None),
        ("22500 * 20", "450,000", "digit_swap", None),
        # a carry or borrow forgotten, only where there is one
        ("28 + 7", "35", "off_by_ten", "25"),
        ("12 + 24", "36", "off_by_ten", None),
        ("2 * 16", "32", "off_by_ten", "22"),
        ("52 - 17", "35", "off_by_ten", "45"),
        ("10 - 3", "7", "off_by_ten", None),  # 17 is more than it is taken from
        # one group too many counts the larger factor: 3 groups of 500, not 501 of 2
        ("2 * 500", "1000", "extra_group", "1500"),
        ("8 * 18", "144.00", "extra_group", "162.00"),  # whole arithmetic written as money
    ],
)
def test_slips_are_ones_a_person_makes(expression, right, kind, wrong):
    assert slip_value(Step(expression, right, 0, len(right)), kind) == wrong


RESTATED = (
    "The crate holds 45 jars, since 3 x 15 = <<3*15=45>>45.\n"
    "With 5 more, 45 + 5 = <<45+5=50>>50 jars in all.\n#### 50"
)


def slipped_part(example) -> str:
    """From the start of the slipped sentence's line to its recovery."""
    text, slip = example.response, example.attributes["slip"]
    return text[text.rfind("\n", 0, slip["start"]) + 1 : example.attributes["recovery"]["start"]]


def test_slip_changes_the_result_everywhere_its_sentence_states_it():
    _, out, checker = trace(answer=RESTATED, k=12)
    first = [ex for ex in out if ex.attributes["slip"]["expression"] == "3 * 15"]
    assert first
    for ex in first:
        wrong = ex.attributes["slip"]["wrong"]
        slipped = slipped_part(ex)
        assert "45" not in slipped.replace("3 x 15", "")
        assert slipped.startswith(f"The crate holds {wrong} jars") and f">>{wrong}." in slipped
        assert f"<<3*15={wrong}>>" in slipped  # the annotation states the slip too
        assert checker.check(ex, RESTATED) == []


def test_result_that_feeds_another_calculation_in_its_sentence_is_not_slipped():
    answer = "So 3 * 4 = <<3*4=12>>12 and 12 + 9 = <<12+9=21>>21 in all.\n#### 21"
    _, out, _ = trace(answer=answer, k=8)
    assert {ex.attributes["slip"]["expression"] for ex in out} == {"12 + 9"}


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


_STANDALONE = r"(?<![\w.,]){}(?![\w]|[.,]\d)"


def _count(value: str, text: str) -> int:
    return len(re.findall(_STANDALONE.format(re.escape(value)), text))


@settings(deadline=None, max_examples=60)
@given(
    a=st.integers(2, 60),
    b=st.integers(2, 60),
    c=st.integers(1, 500),
    keep=st.booleans(),
    rng_seed=st.integers(0, 50),
)
def test_slip_invariants(a, b, c, keep, rng_seed):
    """Whatever the numbers: the slip replaces the result everywhere its sentence states
    it, nothing else in that sentence changes, and the trace ends at the reference."""
    r, total = a * b, a * b + c
    answer = (
        f"They pack {r} boxes, because {a} x {b} = <<{a}*{b}={r}>>{r}.\n"
        f"Adding {c} gives {r} + {c} = <<{r}+{c}={total}>>{total} boxes, so {total} in all.\n"
        f"#### {total}"
    )
    prompts = Prompts()
    seed = Seed.make("How many boxes?", answer)
    out = NearMiss(prompts).offline(seed, Context(prompts, random.Random(rng_seed)), 4)
    reference = annotations.reference(answer, keep)
    checker = Checker(prompts)
    assert not isinstance(out, Skip)
    for ex in out:
        ex = annotations.apply(ex, keep, NearMiss.spans)
        slip = ex.attributes["slip"]
        assert checker.check(ex, reference) == []
        assert final_answer(ex.response) == str(total)
        slipped = slipped_part(ex)
        original = next(line for line in reference.splitlines() if slipped.startswith(line[:4]))
        assert _count(slip["right"], slipped) == 0
        assert _count(slip["wrong"], slipped) == _count(slip["right"], original)
        # the rest of the sentence is untouched
        assert re.sub(r"\d+", "#", slipped.strip()) == re.sub(r"\d+", "#", original.strip())


@settings(deadline=None)
@given(n=st.integers(2, 40), cents=st.integers(1, 99_99))
def test_money_slips_are_never_a_cent_off(n, cents):
    price = Decimal(cents) / 100
    right = f"{n * price:.2f}"
    for kind in (
        "off_by_one",
        "off_by_ten",
        "digit_swap",
        "extra_group",
        "decimal_point",
        "dropped_zero",
        "rounding",
    ):
        wrong = slip_value(Step(f"{n} * {price:.2f}", right, 0, len(right)), kind)
        if wrong is None:
            continue
        assert kind in ("decimal_point", "dropped_zero", "rounding")
        delta = abs(Decimal(wrong) - Decimal(right))
        assert delta >= Decimal("0.1") and Decimal(wrong) > 0
        if kind == "decimal_point":
            assert Decimal(wrong) / Decimal(right) in (10, Decimal("0.1"))
