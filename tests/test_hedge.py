import random
from collections import Counter

from generator.checks import Checker
from generator.generators import Context
from generator.generators.hedge import Hedge
from generator.templates import Prompts
from generator.values import Seed, Skip

ANSWER = "The Danube flows through ten countries.\nIt ends in the Black Sea."


def make(k=1, rng_seed=0, prompt="How many countries does the Danube cross?", answer=ANSWER):
    prompts = Prompts()
    seed = Seed.make(prompt, answer)
    return Hedge(prompts), seed, Context(prompts, random.Random(rng_seed)), Checker(prompts)


def test_variants_keep_reference_verbatim_at_distinct_levels():
    gen, seed, ctx, checker = make(k=1)
    out = gen.offline(seed, ctx, 1)
    levels = [ex.attributes["level"] for ex in out]
    assert len(levels) == 2 and len(set(levels)) == 2
    for ex in out:
        assert ANSWER in ex.response
        assert 0 < ex.attributes["confidence"] < 1
        assert f"{round(ex.attributes['confidence'] * 100)}%" in ex.response
        assert checker.check(ex, seed.response) == []


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
        seed = Seed.make(f"What is fact number {i}?", f"It is {i}.")
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
