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
