"""Throughput of --backend openai against a local endpoint with a fixed latency.

For each concurrency N, 500 seeds (one hedge request each) go through the whole pipeline
against tests/fakeserver.py (its own process) answering after `--delay` seconds. The
ideal rate is N / delay requests per second; the figure is achieved / ideal, all measured
side by side in one run. Then the client's own cost: CPU seconds per request of this
process, against the same server with no delay.

    python benchmarks/openai_concurrency.py [--seeds 500] [--delay 0.2] [--levels 1,8,32,64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
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


def run(data: Path, url: str, concurrency: int, out: Path) -> tuple[float, int, float]:
    config = RunConfig(
        seeds=(str(data),),
        out=str(out),
        behaviors=("hedge",),
        backend="openai",
        model="bench",
        base_urls=(url,),
        concurrency=concurrency,
    )
    cpu, wall = time.process_time(), time.perf_counter()
    result = generate(config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent = result.requests["sent"]
    assert result.requests["failed"] == 0 and sent == result.seeds, result.requests
    return wall, sent, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=500)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--levels", default="1,8,32,64")
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
            print(f"{'concurrency':>11} {'req/s':>8} {'ideal':>8} {'ratio':>6} {'seconds':>8}")
            for n in levels:
                wall, sent, _ = run(data, url, n, tmp / f"c{n}")
                ideal = n / args.delay
                rate = sent / wall
                print(f"{n:>11} {rate:>8.1f} {ideal:>8.1f} {rate / ideal:>6.2f} {wall:>8.2f}")
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
