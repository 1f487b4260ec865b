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
4. A probe-bound `score`: --probed GSM8K rows fit-scored and probed (`--probe embedded`,
   5 samples each), one process with 2 threads against 2 single-thread Ray workers;
   the two outputs must be the same bytes.

    python benchmarks/engine.py [--scored 40] [--offline 100000] [--probed 40] [--block 16]
                                [--sections 1,2,4]
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


def run(args: list[str], env: dict[str, str] | None = None, command: str = "generate") -> float:
    """Seconds for one `hedgerow generate` (or `command`) in a child process, as a user
    runs it."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "generator.cli", command, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})},
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
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


GSM8K = DATA / "gsm8k_train_300.jsonl"
THREADS2 = {"HEDGEROW_THREADS": "2"}  # one process's llama.cpp on both cores


def scoring_bound(tmp: Path, seeds: int, ray: list[str]) -> float:
    """1: seconds per scored seed on Ray (both cores busy)."""
    scored = ["--limit", str(seeds), "--candidates", "4", "--scorer", "embedded"]
    scored += ["--probe", "none", "--behaviors", "hedge,near_miss"]
    one = run([str(GSM8K), "-o", str(tmp / "one"), *scored], THREADS2)
    on_ray = run([str(GSM8K), "-o", str(tmp / "ray"), *scored, *ray])
    same = (tmp / "one" / "dataset.jsonl").read_bytes() == (
        tmp / "ray" / "dataset.jsonl"
    ).read_bytes()
    print(f"1. scoring-bound, {seeds} GSM8K seeds, --candidates 4:")
    print(f"   one process, 2 threads: {one:7.1f} s")
    print(f"   ray, 2 workers x 1 thread: {on_ray:7.1f} s")
    print(f"   one process / ray: {one / on_ray:.2f} (same bytes: {same})")
    return on_ray / seeds


def offline(tmp: Path, n: int, ray: list[str]) -> float:
    """2: the driver's ceiling, seeds per second."""
    seeds = synthetic(tmp / "offline.jsonl", n)
    flags = ["--scorer", "none", "--probe", "none"]
    t_one = run([str(seeds), "-o", str(tmp / "o1"), *flags])
    t_ray = run([str(seeds), "-o", str(tmp / "o2"), *flags, *ray])
    same = all(
        (tmp / "o1" / f).read_bytes() == (tmp / "o2" / f).read_bytes()
        for f in ("dataset.jsonl", "candidates.jsonl")
    )
    print(f"2. offline, {n} seeds, --scorer none:")
    print(f"   one process: {t_one:7.1f} s ({n / t_one:,.0f} seeds/s)")
    print(f"   ray, 2 workers: {t_ray:7.1f} s ({n / t_ray:,.0f} seeds/s; same bytes: {same})")
    ceiling = n / t_ray  # the driver is the bottleneck offline
    print(f"   driver ceiling: {1e6 / ceiling:.0f} us per seed, {ceiling:,.0f} seeds/s")
    return ceiling


def on_paper(per_scored: float, ceiling: float) -> None:
    print("3. on paper: 1M scored seeds (--candidates 4) on N machines like this one")
    for machines in (1, 4, 16, 64):
        compute = 1e6 * per_scored / machines
        wall = max(compute, 1e6 / ceiling)
        print(f"   N={machines:>3}: {wall / 3600:8.1f} h")


def probe_bound(tmp: Path, n: int, ray: list[str]) -> None:
    """4: `score` fit-scoring and probing real rows."""
    rows = tmp / "probed.jsonl"
    with GSM8K.open() as src, rows.open("w") as dst:
        dst.writelines(line for _, line in zip(range(n), src, strict=False))
    probed = ["--scorer", "embedded", "--probe", "embedded", "--probe-samples", "5"]
    ray_rows = [*ray[:-1], "2"]  # blocks of 2 rows: both workers busy to the end
    s_one = run([str(rows), "-o", str(tmp / "p1.jsonl"), *probed], THREADS2, "score")
    s_ray = run([str(rows), "-o", str(tmp / "p2.jsonl"), *probed, *ray_rows], None, "score")
    same = (tmp / "p1.jsonl").read_bytes() == (tmp / "p2.jsonl").read_bytes()
    print(f"4. probe-bound score, {n} GSM8K rows, 5 samples each:")
    print(f"   one process, 2 threads: {s_one:7.1f} s")
    print(f"   ray, 2 workers x 1 thread: {s_ray:7.1f} s")
    print(f"   one process / ray: {s_one / s_ray:.2f} (same bytes: {same})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scored", type=int, default=40, help="GSM8K seeds, scored")
    parser.add_argument("--offline", type=int, default=100_000, help="synthetic seeds")
    parser.add_argument("--probed", type=int, default=40, help="GSM8K rows, probed")
    parser.add_argument("--block", type=int, default=16)
    parser.add_argument("--sections", default="1,2,4", help="of 1, 2, 4 (3 needs 1 and 2)")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    ray = ["--engine", "ray", "--ray-workers", "2", "--ray-threads", "1"]
    ray += ["--ray-block", str(args.block)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        per_scored = scoring_bound(tmp, args.scored, ray) if "1" in sections else None
        ceiling = offline(tmp, args.offline, ray) if "2" in sections else None
        if per_scored is not None and ceiling is not None:
            on_paper(per_scored, ceiling)
        if "4" in sections:
            probe_bound(tmp, args.probed, ray)


if __name__ == "__main__":
    main()
