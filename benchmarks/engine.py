"""`--engine ray` against one process, side by side in one run on this machine.

1. A scoring-bound run: `generate --candidates 4 --scorer embedded` on --scored GSM8K
   seeds from ../shared/data: one process whose llama.cpp uses 2 threads, against
   `--engine ray` with 2 single-thread workers. The figure is one process's wall time
   over Ray's (>= 0.9: the engine costs at most a tenth). Both runs' dataset.jsonl must
   be the same bytes; the script checks it.
2. The driver's ceiling: an offline `--scorer none` run of --offline synthetic seeds, one
   process against 2 Ray workers. Offline, a seed costs its worker little, so the
   driver (reading seeds, sending blocks, writing rows in order) decides the pace: its
   seconds per seed are the single writer's cost, and 1 / that cost is the most seeds per
   second any cluster can be driven at.
3. On paper, from those measured costs: the wall time of 1M scored seeds on N machines of
   this kind (2 cores each), min(compute / N, driver ceiling).

    python benchmarks/engine.py [--scored 40] [--offline 100000] [--block 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def run(args: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds for one `hedgerow generate` in a child process (as a user runs it)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "generator.cli", "generate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})},
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"generate {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds


def synthetic(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            a, b = 3 + i % 17, 4 + i % 23
            fh.write(
                json.dumps(
                    {
                        "id": f"s{i}",
                        "question": f"Crate {i} holds {a} rows of {b} jars. How many jars?",
                        "answer": f"It holds {a} * {b} = {a * b} jars.\n#### {a * b}",
                    }
                )
                + "\n"
            )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scored", type=int, default=40, help="GSM8K seeds, scored")
    parser.add_argument("--offline", type=int, default=100_000, help="synthetic seeds")
    parser.add_argument("--block", type=int, default=16)
    args = parser.parse_args()
    ray = ["--engine", "ray", "--ray-workers", "2", "--ray-threads", "1"]
    ray += ["--ray-block", str(args.block)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gsm8k = DATA / "gsm8k_train_300.jsonl"
        scored = ["--limit", str(args.scored), "--candidates", "4", "--scorer", "embedded"]
        scored += ["--probe", "none", "--behaviors", "hedge,near_miss"]
        one = run([str(gsm8k), "-o", str(tmp / "one"), *scored], {"HEDGEROW_THREADS": "2"})
        on_ray = run([str(gsm8k), "-o", str(tmp / "ray"), *scored, *ray])
        same = (tmp / "one" / "dataset.jsonl").read_bytes() == (
            tmp / "ray" / "dataset.jsonl"
        ).read_bytes()
        print(f"1. scoring-bound, {args.scored} GSM8K seeds, --candidates 4:")
        print(f"   one process, 2 threads: {one:7.1f} s")
        print(f"   ray, 2 workers x 1 thread: {on_ray:7.1f} s")
        print(f"   one process / ray: {one / on_ray:.2f} (same bytes: {same})")
        per_scored = on_ray / args.scored  # on 2 cores, both busy

        seeds = synthetic(tmp / "offline.jsonl", args.offline)
        offline = ["--scorer", "none", "--probe", "none"]
        t_one = run([str(seeds), "-o", str(tmp / "o1"), *offline])
        t_ray = run([str(seeds), "-o", str(tmp / "o2"), *offline, *ray])
        n = args.offline
        same = all(
            (tmp / "o1" / f).read_bytes() == (tmp / "o2" / f).read_bytes()
            for f in ("dataset.jsonl", "candidates.jsonl")
        )
        print(f"2. offline, {n} seeds, --scorer none:")
        print(f"   one process: {t_one:7.1f} s ({n / t_one:,.0f} seeds/s)")
        print(f"   ray, 2 workers: {t_ray:7.1f} s ({n / t_ray:,.0f} seeds/s; same bytes: {same})")
        ceiling = n / t_ray  # the driver is the bottleneck offline
        print(f"   driver ceiling: {1e6 / ceiling:.0f} us per seed, {ceiling:,.0f} seeds/s")

        print("3. on paper: 1M scored seeds (--candidates 4) on N machines like this one")
        for machines in (1, 4, 16, 64):
            compute = 1e6 * per_scored / machines
            wall = max(compute, 1e6 / ceiling)
            print(f"   N={machines:>3}: {wall / 3600:8.1f} h")


if __name__ == "__main__":
    main()
