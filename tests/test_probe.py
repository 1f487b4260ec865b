"""The knowledge probe: which references are checkable, how answers are matched, the
categories, and the real embedded model probed in-process and through its server."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.errors import TemplateError
from generator.probe.answers import Answers, Expected, fold
from generator.templates import Prompts
from generator.values import Knowledge


@pytest.fixture(scope="module")
def answers():
    return Answers(Prompts())


@pytest.mark.parametrize(
    "question, reference, kind, text",
    [
        ("What is the capital of Chile?", "Santiago", "span", "Santiago"),
        ("What is the capital of Chile?", "The capital of Chile is Santiago.", "span", "Santiago"),
        (
            "Who composed the opera Carmen?",
            "Georges Bizet composed Carmen in 1875.",
            "span",
            "Georges Bizet",
        ),
        ("How many moons does Mars have?", "Mars has 2 moons, Phobos and Deimos.", "number", "2"),
        ("Tom has 3 bags of 12 pears. How many pears?", "3 * 12 = 36\n#### 36", "number", "36"),
        ("What is 15% of 200?", "15% of 200 is 30, so the answer is 30.", "number", "30"),
        ("Name the largest desert in Africa.", "The Sahara.", "span", "The Sahara"),
    ],
)
def test_checkable_references_give_their_short_answer(answers, question, reference, kind, text):
    expected = answers.expected(question, reference)
    assert isinstance(expected, Expected), expected
    assert (expected.kind, expected.text) == (kind, text)


@pytest.mark.parametrize(
    "question, reference, reason",
    [
        ("Write a haiku about rain.", "Soft rain on the roof", "not_knowledge"),
        ("Explain how tides work.", "Tides come from the Moon's pull.", "not_knowledge"),
        ("Name three primary colors.", "Red, blue and yellow.", "many_answers"),
        ("What is a good habit?", "One\ntwo\nthree", "long_form"),
        ("Is the sky blue?", "Yes.", "not_a_fact"),
        ("What is the capital of Chile?", "", "no_reference"),
        (
            "Why do cats purr?",
            "Cats purr for many reasons. They purr when content. They also purr when hurt, "
            "and scientists still argue about how the sound is made in the larynx.",
            "long_form",
        ),
    ],
)
def test_long_form_and_open_references_are_not_checkable(answers, question, reference, reason):
    assert answers.expected(question, reference) == reason


@pytest.mark.parametrize(
    "expected, answer, right",
    [
        (Expected("span", "Santiago"), "Santiago", True),
        (Expected("span", "Santiago"), "santiago, of course\nQuestion: next", True),
        (Expected("span", "São Paulo"), "Sao Paulo", True),
        (Expected("span", "The Sahara"), "the sahara desert", True),
        (Expected("span", "Santiago"), "Valparaíso", False),
        (Expected("span", "Paris"), "Parisian food", False),  # whole words only
        (Expected("span", "Santiago"), "\nSantiago", False),  # the answer ends at a newline
        (Expected("number", "36", 36.0), "36 pears", True),
        (Expected("number", "36", 36.0), "3 * 12 = 36", True),
        (Expected("number", "1250", 1250.0), "1,250", True),
        (Expected("number", "36", 36.0), "about 35", False),
        (Expected("number", "36", 36.0), "thirty-six", False),
    ],
)
def test_an_answer_is_right_by_containment_or_numeric_equality(answers, expected, answer, right):
    assert answers.correct(expected, answer) is right


@given(st.text(max_size=40))
def test_fold_is_idempotent_and_never_keeps_punctuation_or_case(text):
    once = fold(text)
    assert fold(once) == once
    assert once == once.casefold() and "," not in once and "  " not in once


@given(st.booleans(), st.lists(st.booleans(), min_size=1, max_size=16))
def test_categories_follow_slick_from_greedy_and_samples(greedy, right):
    k = Knowledge.measure(greedy, right)
    assert k.correct == sum(right) and k.samples == len(right)
    assert k.p_correct == round(sum(right) / len(right), 4)
    expected = (
        ("HighlyKnown" if all(right) else "MaybeKnown")
        if greedy
        else ("WeaklyKnown" if any(right) else "Unknown")
    )
    assert k.category == expected


def test_a_wrong_type_in_the_probe_bank_is_one_line_naming_the_field(tmp_path):
    (tmp_path / "probe").mkdir()
    source = Prompts().source("probe/probe.toml").replace("exemplars = 4", 'exemplars = "four"')
    (tmp_path / "probe" / "probe.toml").write_text(source, encoding="utf-8")
    with pytest.raises(TemplateError) as e:
        Answers(Prompts(tmp_path))
    message = str(e.value)
    assert "probe.toml" in message and "exemplars" in message and "\n" not in message
