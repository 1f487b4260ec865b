import random
import re
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.checks import Checker
from generator.errors import TemplateError
from generator.generators import Context, starts_with_any
from generator.generators.hedge import Hedge
from generator.templates import Prompts
from generator.values import Knowledge, Seed, Skip

ANSWER = "The Danube flows through ten countries.\nIt ends in the Black Sea."


def measured(correct, samples=10, greedy=True):
    return Knowledge.measure(greedy, [True] * correct + [False] * (samples - correct))


SEVEN = measured(7)


def make(
    k=1,
    rng_seed=0,
    prompt="How many countries does the Danube cross?",
    answer=ANSWER,
    knowledge=SEVEN,
):
    prompts = Prompts()
    seed = replace(Seed.make(prompt, answer), knowledge=knowledge)
    return Hedge(prompts), seed, Context(prompts, random.Random(rng_seed)), Checker(prompts)


@pytest.mark.parametrize("correct", range(11))
def test_one_hedge_at_the_level_the_measured_accuracy_falls_in(correct):
    gen, seed, ctx, checker = make(knowledge=measured(correct))
    out = gen.offline(seed, ctx, 3)  # --candidates varies the wording, never the level
    assert len({ex.attributes["level"] for ex in out}) == 1 and len(out) == 3
    p = correct / 10
    levels = gen.levels()
    want = next(lv for lv in levels if p >= lv["min_p"])
    for ex in out:
        assert ANSWER in ex.response
        assert ex.attributes["level"] == want["name"]
        assert ex.attributes["confidence"] == want["confidence"]
        assert ex.attributes["p_correct"] == p
        assert abs(ex.attributes["confidence"] - p) <= 0.15  # the shipped buckets
        assert f"{round(want['confidence'] * 100)}%" in ex.response
        assert checker.check(ex, seed.response) == []


def test_a_question_the_model_never_gets_right_gets_no_hedge():
    gen, seed, ctx, _ = make(knowledge=measured(0, greedy=False))
    skip = gen.offline(seed, ctx, 1)
    assert isinstance(skip, Skip) and skip.reason == "unknown_to_model"
    gen, seed, ctx, _ = make(knowledge=measured(0, greedy=True))  # greedy right: lowest level
    assert gen.offline(seed, ctx, 1)[0].attributes["level"] == gen.levels()[-1]["name"]


def test_a_seed_nothing_measured_gets_a_hedge_that_states_no_number():
    gen, seed, ctx, checker = make(knowledge=None)
    seed = replace(seed, unmeasured="long_form")
    for ex in gen.offline(seed, ctx, 4):
        assert ex.attributes["confidence"] is None and ex.attributes["level"] == "unmeasured"
        assert ex.attributes["unmeasured"] == "long_form" and "p_correct" not in ex.attributes
        assert "%" not in ex.response.replace(ANSWER, "")
        assert checker.check(ex, seed.response) == []


def test_unmeasured_phrases_cannot_state_a_percent(tmp_path):
    bank = tmp_path / "hedge" / "phrases.toml"
    bank.parent.mkdir()
    shipped = Prompts().source("hedge/phrases.toml")
    bank.write_text(shipped.replace('"As far as I know:"', '"About {{ percent }}% sure:"'))
    prompts = Prompts(tmp_path)
    seed = Seed.make("How many countries does the Danube cross?", ANSWER)
    with pytest.raises(TemplateError, match="percent"):
        for i in range(20):
            Hedge(prompts).offline(seed, Context(prompts, random.Random(i)), 4)


def test_k_candidates_differ_in_wording():
    gen, seed, ctx, _ = make()
    out = gen.offline(seed, ctx, 3)
    by_slot = Counter(ex.slot for ex in out)
    assert set(by_slot.values()) == {3}
    for slot in by_slot:
        assert len({ex.response for ex in out if ex.slot == slot}) == 3


def test_openers_vary_across_seeds():
    prompts = Prompts()
    gen = Hedge(prompts)
    openers = Counter()
    for i in range(200):
        seed = replace(
            Seed.make(f"What is fact number {i}?", f"It is {i}."), knowledge=measured(i % 11)
        )
        rng = random.Random(f"0\x1f{seed.id}\x1fhedge")
        for ex in gen.offline(seed, Context(prompts, rng), 1):
            openers[ex.attributes["opener"]] += 1
    top_share = openers.most_common(1)[0][1] / sum(openers.values())
    assert len(openers) >= 10 and top_share < 0.15


def test_skips_creative_prompts_and_missing_answers():
    gen, seed, ctx, _ = make(prompt="Write a limerick about rain.")
    assert isinstance(gen.offline(seed, ctx, 1), Skip)
    gen, seed, ctx, _ = make(answer=None)
    skip = gen.offline(seed, ctx, 1)
    assert isinstance(skip, Skip) and skip.reason == "no_reference_answer"


def test_same_rng_same_text():
    a = make(rng_seed=5)
    b = make(rng_seed=5)
    assert [e.response for e in a[0].offline(a[1], a[2], 2)] == [
        e.response for e in b[0].offline(b[1], b[2], 2)
    ]


@given(
    st.text(alphabet="ab .?-", max_size=12),
    st.lists(st.text(alphabet="ab .?-", min_size=1, max_size=4), max_size=4),
)
def test_starts_with_any_is_each_phrase_tried_in_turn(text, phrases):
    # one compiled alternation stands for a re.match per phrase: the same answer always
    each = any(re.match(rf"{re.escape(p.lower())}\b", text.strip().lower()) for p in phrases)
    assert starts_with_any(text, phrases) == each
