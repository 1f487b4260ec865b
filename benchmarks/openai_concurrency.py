"""Throughput of --backend openai against a local endpoint with a fixed latency.

For each concurrency N, 1,000 seeds (one hedge request each) go through the whole
pipeline against tests/fakeserver.py (its own process) answering after `--delay` seconds.
The ideal rate is N / delay requests per second. Three figures per level, all measured
side by side in one run:

- the request phase, read off the server's own clock (first request in to last reply
  out): requests per second in it over the ideal;
- the time outside it: `generate()`'s wall time minus that phase (start-up before the
  first request, the manifest and closing after the last reply);
- the ceilings: the same number of requests sent by hedgerow's HTTP client alone (no
  pipeline, one `post` each under a semaphore), its request phase over the ideal; and the
  same through the openai SDK, which carried the backend's requests before.

Then the client's own cost: CPU seconds per request of this process, against the same
server with no delay.

    python benchmarks/openai_concurrency.py [--seeds 1000] [--delay 0.2] [--levels 8,32,64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.run import RunConfig, generate  # noqa: E402


def server(delay: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakeserver", "--delay", str(delay)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def seeds(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            a, b = i % 97 + 2, i % 89 + 3
            row = {"id": f"b{i}", "question": f"What is {a} times {b}?", "answer": f"#### {a * b}"}
            fh.write(json.dumps(row) + "\n")
    return path


def clock(url: str) -> tuple[list[float], list[float]]:
    """The server's clock: when each chat request arrived and each reply went out."""
    with urllib.request.urlopen(url.rstrip("/") + "/stats") as response:
        stats = json.load(response)
    return stats["arrivals"], stats["replies"]


def seen(url: str) -> int:
    """How many chat requests the server has had: the mark `phase` counts from."""
    return len(clock(url)[0])


def phase(url: str, since: int) -> tuple[float, int]:
    """The server's request phase after its first `since` requests: seconds from the
    first arrival to the last reply, and how many requests arrived in it."""
    arrivals, replies = (times[since:] for times in clock(url))
    return max(replies) - min(arrivals), len(arrivals)


def bare(url: str, concurrency: int, n: int, sdk: bool = False) -> float:
    """Requests per second in the server's request phase when hedgerow's HTTP client
    alone (`generator.backends.wire`; the openai SDK with `sdk`) sends `n` requests,
    `concurrency` at a time: what the transport allows, with no pipeline."""
    import asyncio

    from generator.backends.wire import Client

    async def go() -> None:
        if sdk:
            import openai

            client = openai.AsyncOpenAI(api_key="none", base_url=url, max_retries=0)

            async def post(body):
                await client.post("/chat/completions", cast_to=object, body=body)
        else:
            client = Client(None, 60.0)

            async def post(body):
                await client.post(url + "/chat/completions", body)

        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            ask = f"<reference>#### {i}</reference> q{i}"  # the fake server answers it
            body = {"model": "bench", "messages": [{"role": "user", "content": ask}]}
            async with slots:
                await post(body)

        await asyncio.gather(*(one(i) for i in range(n)))
        await client.close()

    before = seen(url)
    asyncio.run(go())
    inside, asked = phase(url, before)
    return asked / inside


def run(data: Path, url: str, concurrency: int, out: Path) -> tuple[float, int, float]:
    config = RunConfig(
        seeds=(str(data),),
        out=str(out),
        behaviors=("hedge",),
        backend="openai",
        model="bench",
        base_urls=(url,),
        concurrency=concurrency,
        scorer="none",  # the client alone: no probe, no fit scoring
        probe="none",
    )
    cpu, wall = time.process_time(), time.perf_counter()
    result = generate(config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent = result.requests["sent"]
    assert result.requests["failed"] == 0 and sent == result.seeds, result.requests
    return wall, sent, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--levels", default="8,32,64")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = seeds(tmp / "seeds.jsonl", args.seeds)
        proc, url = server(args.delay)
        try:
            # Warm up once (imports, first files), so no level pays one-time costs.
            run(seeds(tmp / "warm.jsonl", 20), url, 8, tmp / "warm")
            print(
                f"{args.seeds} seeds, one request each, endpoint latency {args.delay * 1000:.0f} ms"
            )
            print(
                f"{'concurrency':>11} {'ideal':>7} {'overall':>8} {'ratio':>6} "
                f"{'in phase':>9} {'ratio':>6} {'seconds':>8} {'outside':>8} "
                f"{'client alone':>12} {'SDK alone':>9}"
            )
            for n in levels:
                before = seen(url)
                wall, sent, _ = run(data, url, n, tmp / f"c{n}")
                inside, asked = phase(url, before)
                assert asked == sent, (asked, sent)
                ideal = n / args.delay
                ceiling = bare(url, n, args.seeds) / ideal
                sdk = bare(url, n, args.seeds, sdk=True) / ideal
                rate, sustained = sent / wall, sent / inside
                print(
                    f"{n:>11} {ideal:>7.1f} {rate:>8.1f} {rate / ideal:>6.2f} "
                    f"{sustained:>9.1f} {sustained / ideal:>6.2f} "
                    f"{wall:>8.2f} {wall - inside:>8.2f} {ceiling:>12.2f} {sdk:>9.2f}"
                )
        finally:
            proc.terminate()
        proc, url = server(0.0)
        try:
            wall, sent, cpu = run(data, url, 1, tmp / "overhead")
            print(
                f"client overhead: {cpu / sent * 1000:.2f} ms CPU per request "
                f"(whole pipeline: render, send, parse, check, cache, write); "
                f"{wall / sent * 1000:.2f} ms wall per request at zero latency"
            )
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
