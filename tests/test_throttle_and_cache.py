"""Unit tests of the per-endpoint Throttle (with a fake clock) and the response cache."""

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.backends.cache import ResponseCache, request_key
from generator.backends.throttle import Throttle
from generator.errors import RunFolderError


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until it blocks."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def take(throttle: Throttle, n: int) -> None:
    for _ in range(n):
        await asyncio.wait_for(throttle.acquire(), 1)


# -- Throttle: the bound on requests in flight -------------------------------------------


def test_at_most_limit_acquire_and_a_further_one_waits_for_a_release():
    async def main():
        throttle = Throttle(3, clock=FakeClock())
        await take(throttle, 3)
        assert throttle.in_flight == 3
        waiter = asyncio.create_task(throttle.acquire())
        await settle()
        assert not waiter.done()  # a fourth request may not fly
        assert throttle.in_flight == 3
        await throttle.release("error")
        await asyncio.wait_for(waiter, 1)
        assert throttle.in_flight == 3

    asyncio.run(main())


@pytest.mark.parametrize("limit, workers", [(1, 5), (3, 20), (8, 40)])
def test_many_concurrent_workers_never_exceed_the_limit(limit, workers):
    async def main():
        throttle = Throttle(limit, clock=FakeClock())
        peak = 0

        async def worker(i: int) -> None:
            nonlocal peak
            await throttle.acquire()
            peak = max(peak, throttle.in_flight)
            for _ in range(i % 4):
                await asyncio.sleep(0)
            await throttle.release("ok")

        await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(workers))), 5)
        return peak, throttle.in_flight

    peak, in_flight = asyncio.run(main())
    assert peak == limit
    assert in_flight == 0


def test_an_error_release_gives_no_signal():
    async def main():
        throttle = Throttle(4, clock=FakeClock())
        await take(throttle, 1)
        await throttle.release("error")
        return throttle

    throttle = asyncio.run(main())
    assert (throttle.limit, throttle.strikes, throttle.in_flight) == (4, 0, 0)
    assert throttle.paused_until == 0.0


def test_ok_raises_the_limit_by_one_up_to_the_max():
    async def main():
        clock = FakeClock()
        throttle = Throttle(8, clock=clock)
        await take(throttle, 1)
        await throttle.release("rate_limited")
        assert throttle.limit == 4
        seen = []
        for _ in range(6):
            await take(throttle, 1)
            await throttle.release("ok")
            seen.append(throttle.limit)
        return seen, throttle

    seen, throttle = asyncio.run(main())
    assert seen == [5, 6, 7, 8, 8, 8]
    assert throttle.strikes == 0


def test_a_rate_limit_halves_the_limit_once_per_second_of_clock_time():
    async def main():
        clock = FakeClock(100.0)
        throttle = Throttle(16, clock=clock)
        await take(throttle, 16)
        for _ in range(5):  # one burst of 429s at the same time: one strike
            await throttle.release("rate_limited")
        assert (throttle.limit, throttle.strikes) == (8, 1)
        clock.now = 100.999  # still within the second
        await throttle.release("rate_limited")
        assert (throttle.limit, throttle.strikes) == (8, 1)
        clock.now = 101.0
        await throttle.release("rate_limited")
        assert (throttle.limit, throttle.strikes) == (4, 2)

    asyncio.run(main())


def test_halving_never_goes_below_one():
    async def main():
        clock = FakeClock()
        throttle = Throttle(2, threshold=100, clock=clock)
        for t in range(5):
            clock.now = float(t)
            await take(throttle, 1)
            await throttle.release("rate_limited")
            assert throttle.limit >= 1
        return throttle

    throttle = asyncio.run(main())
    assert throttle.limit == 1 and throttle.strikes == 5 and throttle.openings == 0


def test_threshold_strikes_a_second_apart_open_the_circuit():
    async def main():
        clock = FakeClock()
        throttle = Throttle(16, threshold=3, base_pause=1.0, clock=clock)
        await take(throttle, 16)
        for t in (0.0, 1.0):
            clock.now = t
            await throttle.release("rate_limited")
            assert throttle.openings == 0
            assert throttle.paused_until <= clock.now  # not open yet: nobody waits
        clock.now = 2.0
        await throttle.release("rate_limited", retry_after=5.0)
        return throttle

    throttle = asyncio.run(main())
    assert throttle.openings == 1
    assert throttle.limit == 1
    assert throttle.paused_until >= 2.0 + 5.0  # at least the Retry-After given


def test_circuit_pause_without_retry_after_is_the_base_pause_then_doubles_up_to_max():
    async def main():
        clock = FakeClock()
        throttle = Throttle(4, threshold=2, base_pause=1.0, max_pause=3.0, clock=clock)
        pauses = []
        for t in (0.0, 1.0, 10.0, 20.0, 30.0):
            clock.now = t
            await take(throttle, 1)
            await throttle.release("rate_limited")
            pauses.append(throttle.paused_until - t)
        return pauses

    pauses = asyncio.run(main())
    assert pauses[0] <= 0  # one strike: no pause
    assert pauses[1:] == [1.0, 2.0, 3.0, 3.0]  # base, doubled, capped at max_pause


def test_strikes_less_than_a_second_apart_do_not_open_the_circuit():
    async def main():
        clock = FakeClock()
        throttle = Throttle(8, threshold=3, clock=clock)
        await take(throttle, 8)
        for t in (0.0, 0.3, 0.6, 0.9):
            clock.now = t
            await throttle.release("rate_limited")
        return throttle

    throttle = asyncio.run(main())
    assert throttle.strikes == 1 and throttle.openings == 0 and throttle.limit == 4


def test_a_success_between_strikes_resets_the_count():
    async def main():
        clock = FakeClock()
        throttle = Throttle(8, threshold=3, clock=clock)
        await take(throttle, 8)
        for t, outcome in ((0.0, "rate_limited"), (1.0, "rate_limited"), (1.5, "ok")):
            clock.now = t
            await throttle.release(outcome)
        clock.now = 2.0
        await throttle.release("rate_limited")
        return throttle

    throttle = asyncio.run(main())
    assert throttle.strikes == 1
    assert throttle.openings == 0
    assert throttle.paused_until <= 2.0


def test_a_burst_of_rate_limits_at_the_opening_is_one_opening():
    async def main():
        clock = FakeClock()
        throttle = Throttle(8, threshold=3, clock=clock)
        await take(throttle, 8)
        for t in (0.0, 1.0):
            clock.now = t
            await throttle.release("rate_limited")
        clock.now = 2.0
        for _ in range(4):  # the in-flight requests all come back 429 at once
            await throttle.release("rate_limited")
        return throttle

    throttle = asyncio.run(main())
    assert throttle.strikes == 3
    assert throttle.openings == 1


def test_retry_after_pauses_everyone_until_the_clock_passes_it():
    async def main():
        clock = FakeClock(50.0)
        throttle = Throttle(4, threshold=10, clock=clock)
        await take(throttle, 1)
        # acquire re-checks the (fake) clock after the pause in real seconds: keep it short
        await throttle.release("rate_limited", retry_after=0.05)
        assert throttle.paused_until >= 50.0 + 0.05
        assert throttle.openings == 0
        waiter = asyncio.create_task(throttle.acquire())
        await asyncio.sleep(0.12)  # two real pauses: still paused on the fake clock
        assert not waiter.done()
        assert throttle.in_flight == 0  # blocked by the pause, not by the bound
        clock.now = 50.1
        await asyncio.wait_for(waiter, 2)
        assert throttle.in_flight == 1

    asyncio.run(main())


def test_retry_after_never_shortens_an_existing_pause():
    async def main():
        clock = FakeClock(10.0)
        throttle = Throttle(4, threshold=10, clock=clock)
        await take(throttle, 2)
        await throttle.release("rate_limited", retry_after=30.0)
        await throttle.release("rate_limited", retry_after=1.0)
        return throttle

    throttle = asyncio.run(main())
    assert throttle.paused_until >= 40.0


# -- request_key -------------------------------------------------------------------------

MESSAGES = [
    {"role": "system", "content": "You write training data."},
    {"role": "user", "content": "What is the capital of Portugal?"},
]
PARAMS = {"temperature": 0.7, "seed": 12, "schema": {"type": "object"}}


def test_request_key_is_stable_and_ignores_dict_key_order():
    key = request_key("gpt-4o-mini", MESSAGES, PARAMS, 0)
    assert key == request_key("gpt-4o-mini", [dict(m) for m in MESSAGES], dict(PARAMS), 0)
    reordered_messages = [{"content": m["content"], "role": m["role"]} for m in MESSAGES]
    reordered_params = dict(reversed(list(PARAMS.items())))
    assert key == request_key("gpt-4o-mini", reordered_messages, reordered_params, 0)
    assert len(key) == 64 and int(key, 16) >= 0


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6))
def test_request_key_ignores_param_insertion_order(params):
    backwards = dict(reversed(list(params.items())))
    assert request_key("m", MESSAGES, params, 0) == request_key("m", MESSAGES, backwards, 0)


@pytest.mark.parametrize(
    "change",
    [
        lambda m, msgs, p, s: ("gpt-4o", msgs, p, s),
        lambda m, msgs, p, s: (m, [msgs[0], {**msgs[1], "content": "Capital of Spain?"}], p, s),
        lambda m, msgs, p, s: (m, [{**msgs[0], "content": "Other system."}, msgs[1]], p, s),
        lambda m, msgs, p, s: (m, [msgs[0], {**msgs[1], "role": "assistant"}], p, s),
        lambda m, msgs, p, s: (m, list(reversed(msgs)), p, s),
        lambda m, msgs, p, s: (m, msgs[:1], p, s),
        lambda m, msgs, p, s: (m, msgs, {**p, "temperature": 0.8}, s),
        lambda m, msgs, p, s: (m, msgs, {**p, "schema": {"type": "array"}}, s),
        lambda m, msgs, p, s: (m, msgs, {**p, "top_p": 1.0}, s),
        lambda m, msgs, p, s: (m, msgs, p, s + 1),
    ],
    ids=[
        "model",
        "user-message",
        "system-message",
        "role",
        "message-order",
        "message-dropped",
        "param-value",
        "schema",
        "param-added",
        "sample",
    ],
)
def test_request_key_changes_with_anything_that_decides_the_answer(change):
    before = ("gpt-4o-mini", MESSAGES, PARAMS, 0)
    assert request_key(*before) != request_key(*change(*before))


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_request_key_differs_per_sample_index(a, b):
    same = request_key("m", MESSAGES, PARAMS, a) == request_key("m", MESSAGES, PARAMS, b)
    assert same == (a == b)


def test_request_key_accepts_unpaired_surrogates_and_non_ascii():
    messages = [{"role": "user", "content": "caf\u00e9 \ud800"}]
    key = request_key("m", messages, {}, 0)
    assert key != request_key("m", [{"role": "user", "content": "cafe \ud800"}], {}, 0)


# -- ResponseCache -----------------------------------------------------------------------

VALUE = {"content": '{"variants": []}\nnaïve ✓', "finish_reason": "stop", "prompt_tokens": 3}


def test_put_get_contains_len_round_trip(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    assert len(cache) == 0
    assert cache.get("k1") is None
    assert "k1" not in cache
    cache.put("k1", VALUE)
    cache.put("k2", {"content": "other"})
    assert cache.get("k1") == VALUE
    assert cache.get("k2") == {"content": "other"}
    assert "k1" in cache and "k2" in cache and "k3" not in cache
    assert len(cache) == 2
    cache.put("k1", {"content": "replaced"})  # the same key again: replaced, not added
    assert cache.get("k1") == {"content": "replaced"}
    assert len(cache) == 2
    cache.close()


def test_a_value_written_by_one_instance_is_read_by_another(tmp_path):
    path = tmp_path / "cache.sqlite"
    writer = ResponseCache(path)
    writer.put("k", VALUE)
    # Committed at once: a second connection sees it while the writer is still open...
    reader = ResponseCache(path)
    assert reader.get("k") == VALUE and len(reader) == 1
    reader.close()
    writer.close()
    # ...and after it is gone, also read-only.
    again = ResponseCache(path, readonly=True)
    assert again.get("k") == VALUE and "k" in again and len(again) == 1
    again.close()


def test_readonly_cache_refuses_writes_with_a_run_folder_error(tmp_path):
    path = tmp_path / "cache.sqlite"
    ResponseCache(path).close()
    cache = ResponseCache(path, readonly=True)
    with pytest.raises(RunFolderError, match="cannot write the response cache"):
        cache.put("k", VALUE)
    cache.close()


def test_readonly_open_of_a_missing_file_is_a_run_folder_error_and_creates_nothing(tmp_path):
    path = tmp_path / "cache.sqlite"
    with pytest.raises(RunFolderError, match="cannot open the response cache"):
        ResponseCache(path, readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_opening_a_file_that_is_not_sqlite_for_writing_is_a_run_folder_error(tmp_path):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database, just text\n" * 100)
    with pytest.raises(RunFolderError, match=str(path)):
        ResponseCache(path)


def test_readonly_open_of_a_non_sqlite_file_fails_at_open(tmp_path):
    # --dry-run opens the cache read-only: a broken file is a one-line error there too.
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database, just text\n" * 100)
    with pytest.raises(RunFolderError, match="delete the file"):
        ResponseCache(path, readonly=True)


@pytest.mark.parametrize("folder", ["run#1", "what?"])
def test_readonly_open_works_in_a_folder_whose_name_has_uri_characters(tmp_path, folder):
    run = tmp_path / folder
    run.mkdir()
    ResponseCache(run / "cache.sqlite").put("k", VALUE)
    before = sorted(p.name for p in tmp_path.iterdir())
    cache = ResponseCache(run / "cache.sqlite", readonly=True)
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stray file made
        assert cache.get("k") == VALUE
    finally:
        cache.close()
