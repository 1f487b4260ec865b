from hypothesis import given
from hypothesis import strategies as st

from generator.select import select
from generator.values import Example, Fit


def make(i, behavior, slot, pair=None, nll=None, response=None):
    return Example(
        id=f"{behavior}{i}",
        seed_id="s",
        behavior=behavior,
        prompt="p",
        response=response or f"r{i}",
        slot=slot,
        pair_id=pair,
        fit=Fit(nll, 5) if nll is not None else None,
    )


candidate = st.tuples(
    st.booleans(), st.booleans(), st.one_of(st.none(), st.floats(0.1, 9)), st.integers(0, 3)
)


@given(st.lists(candidate, max_size=12))
def test_pairs_are_kept_or_dropped_whole_and_stay_one_to_one(specs):
    cands = []
    for i, (refusal_ok, contrast_ok, nll, text) in enumerate(specs):
        pair = f"p{i}"
        cands.append(
            (
                make(i, "refusal", "refusal", pair, nll, f"decline{text}"),
                [] if refusal_ok else ["refusal_does_not_decline"],
            )
        )
        cands.append(
            (
                make(i, "contrast", "refusal", pair, nll, "answer"),
                [] if contrast_ok else ["contrast_declines"],
            )
        )
    decisions = select(cands)
    kept = {d.example.id for d in decisions if d.selected}
    assert sum(i.startswith("refusal") for i in kept) == sum(i.startswith("contrast") for i in kept)
    assert sum(i.startswith("refusal") for i in kept) <= 1  # one slot, best of k
    for i, (refusal_ok, contrast_ok, *_) in enumerate(specs):
        assert (f"refusal{i}" in kept) == (f"contrast{i}" in kept)
        if not (refusal_ok and contrast_ok):
            assert f"refusal{i}" not in kept
    if any(r and c for r, c, *_ in specs):
        assert kept
    for d in decisions:
        assert d.selected == (d.reason is None)


def test_best_fit_wins_and_reasons_are_named():
    cands = [
        (make(0, "hedge", "a", nll=2.0), []),
        (make(1, "hedge", "a", nll=1.0), []),
        (make(2, "hedge", "a", nll=0.5), ["hedge_without_cue"]),
        (make(3, "hedge", "a", nll=3.0, response="r1"), []),
    ]
    reasons = {d.example.id: (d.selected, d.reason) for d in select(cands)}
    assert reasons == {
        "hedge0": (False, "not_best"),
        "hedge1": (True, None),
        "hedge2": (False, "failed:hedge_without_cue"),
        "hedge3": (False, "duplicate"),
    }


def test_without_scores_first_valid_wins_per_slot():
    cands = [
        (make(0, "hedge", "a"), ["x"]),
        (make(1, "hedge", "a"), []),
        (make(2, "hedge", "a"), []),
        (make(3, "hedge", "b"), []),
    ]
    assert [d.example.id for d in select(cands) if d.selected] == ["hedge1", "hedge3"]


def test_partner_failure_is_named():
    cands = [(make(0, "refusal", "r", "p"), []), (make(0, "contrast", "r", "p"), ["c"])]
    assert [d.reason for d in select(cands)] == ["pair_partner_failed", "failed:c"]


def test_candidates_beyond_the_fit_cutoff_are_dropped_and_take_their_partner_along():
    cands = [
        (make(0, "hedge", "a", nll=3.5), []),  # the best-scoring survivor must still pass
        (make(1, "hedge", "a", nll=2.0), []),
        (make(2, "hedge", "a", nll=2.5), []),
        (make(3, "refusal", "r", "p3", nll=3.1, response="no3"), []),
        (make(3, "contrast", "r", "p3", nll=1.0, response="yes"), []),
        (make(4, "refusal", "r", "p4", nll=2.9, response="no4"), []),
        (make(4, "contrast", "r", "p4", nll=1.0, response="yes"), []),
    ]
    got = {d.example.id: (d.selected, d.reason) for d in select(cands, cutoff=3.0)}
    assert got == {
        "hedge0": (False, "unnatural"),
        "hedge1": (True, None),
        "hedge2": (False, "not_best"),
        "refusal3": (False, "unnatural"),
        "contrast3": (False, "pair_partner_unnatural"),
        "refusal4": (True, None),
        "contrast4": (True, None),
    }
    # Without a cutoff nothing is dropped for fit; every slot still keeps one unit.
    assert sum(d.selected for d in select(cands)) == 3


def test_a_slot_where_every_candidate_is_unnatural_keeps_nothing():
    cands = [(make(i, "hedge", "a", nll=5.0 + i), []) for i in range(3)]
    assert not any(d.selected for d in select(cands, cutoff=4.0))


def row(id, seed, behavior, prompt, response, pair=None):
    return {
        "id": id,
        "seed_id": seed,
        "behavior": behavior,
        "pair_id": pair,
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": response},
        ],
    }


LONG = (
    "The Amazon River flows east across South America and empties into the Atlantic Ocean "
    "near the city of Belem, carrying more water than any other river on Earth."
)
QUESTION = "Which ocean does the Amazon River flow into, and where does it meet the sea?"


def test_a_later_near_copy_from_another_seed_is_dropped_with_its_reason():
    from generator.select import NearDuplicates

    dedup = NearDuplicates(0.85)
    # one seed's rows never count against each other (two hedge levels share the answer)
    first = [row("a", "s1", "hedge", QUESTION, LONG), row("a2", "s1", "hedge", QUESTION, LONG)]
    assert dedup.filter(first, [dict(first[0], status="selected")]) == first
    # the same question and answer again, recased and with an extra space
    copy = row("b", "s2", "hedge", QUESTION.upper(), LONG.replace(" ", "  ", 3))
    candidates = [dict(copy, status="selected", drop_reason=None)]
    assert dedup.filter([copy], candidates) == []
    assert candidates[0]["status"] == "dropped"
    assert candidates[0]["drop_reason"] == "near_duplicate"
    # another behavior is not compared with it
    other = [row("c", "s3", "near_miss", QUESTION, LONG)]
    assert dedup.filter(other, []) == other
    # a repeated input row has the same content-hash seed id, and is still a duplicate
    again = [row("e", "s1", "hedge", QUESTION, LONG)]
    assert dedup.filter(again, []) == []


def test_the_same_template_around_different_questions_is_not_a_duplicate():
    from generator.select import NearDuplicates

    dedup = NearDuplicates(0.85)
    frame = "I am fairly confident, though not certain, about this answer: {} That is my view."
    kept = [
        row(f"r{i}", f"s{i}", "hedge", f"What is {i} plus {i + 2}?", frame.format(2 * i + 2))
        for i in range(6)
    ]
    assert dedup.filter(kept, []) == kept


def test_a_pair_goes_whole_and_a_resumed_index_remembers_kept_rows():
    from generator.select import NearDuplicates

    earlier = [row("c0", "s1", "contrast", QUESTION, LONG, pair="p0")]
    dedup = NearDuplicates(0.85)
    dedup.keep(earlier)  # what a resumed run reads back from its dataset.jsonl
    pair = [
        row("r1", "s2", "refusal", QUESTION.replace("Amazon", "Velmora"), "I can't find it.", "p1"),
        row("c1", "s2", "contrast", QUESTION, LONG, pair="p1"),
    ]
    candidates = [dict(r, status="selected") for r in pair]
    assert dedup.filter(pair, candidates) == []
    assert [c["drop_reason"] for c in candidates] == [
        "pair_partner_near_duplicate",
        "near_duplicate",
    ]
    # a lower threshold than the texts' similarity is needed to drop a paraphrase
    loose, strict = NearDuplicates(0.3), NearDuplicates(0.95)
    base = row("x", "s1", "hedge", QUESTION, LONG)
    para = row("y", "s2", "hedge", QUESTION, LONG.replace("carrying more water", "with more flow"))
    for dedup in (loose, strict):
        dedup.filter([base], [])
    assert loose.filter([para], []) == [] and strict.filter([para], []) == [para]


def test_generate_drops_a_repeated_seed_and_counts_it(tmp_path):
    import json

    from click.testing import CliRunner

    from generator.cli import main

    from .conftest import EXAMPLES, read_jsonl, write_jsonl

    rows = read_jsonl(EXAMPLES)
    again = dict(rows[0], id="again", answer=rows[0]["answer"] + " ")  # a copy, re-spaced
    write_jsonl(tmp_path / "s.jsonl", [*rows, again])
    for threshold, expect in (("0.85", True), ("0", False)):
        out = tmp_path / threshold
        result = CliRunner().invoke(
            main,
            ["generate", str(tmp_path / "s.jsonl"), "-o", str(out), "--near-duplicates", threshold],
        )
        assert result.exit_code == 0, result.output
        dropped = [
            c
            for c in read_jsonl(out / "candidates.jsonl")
            if (c.get("drop_reason") or "").endswith("near_duplicate")
        ]
        assert bool(dropped) == expect
        assert all(c["seed_id"] == "again" for c in dropped)
        kept = read_jsonl(out / "dataset.jsonl")
        assert not {c["id"] for c in dropped} & {r["id"] for r in kept}
        counts = json.loads((out / "manifest.json").read_text())["counts"]["dropped"]
        assert counts.get("near_duplicate", 0) == sum(
            c["drop_reason"] == "near_duplicate" for c in dropped
        )
