"""Benchmark the offline path of `hedgerow generate`: throughput and peak memory.

Measures, each time by running the real CLI in a fresh subprocess:

1. throughput on the 300-seed GSM8K and Alpaca samples in ../shared/data (skipped if
   absent): best and median wall seconds over a few runs, seeds/s from wall time, and
   seeds/s from the run's manifest.json (which excludes interpreter start-up);
2. peak RSS of the child on 1,000 vs --big (default 100,000) synthetic seeds, and the
   big/small ratio: seeds are streamed, so the ratio should stay close to 1.0.

Figures are printed, not asserted. Run from anywhere:

    python benchmarks/offline.py [--big N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SAMPLES = ("gsm8k_train_300.jsonl", "alpaca_300.jsonl")

NAMES = ["Odile", "Bram", "Tamsin", "Ifeoma", "Ruslan", "Perpetua", "Kenji", "Marisol", "Anouk"]
ITEMS = ["marbles", "stickers", "apples", "pencils", "seashells", "cupcakes", "postcards"]
SYLLABLES = ["xor", "vel", "quin", "dra", "mol", "zan", "thur", "ebb", "kry", "lun", "osk"]
SUFFIXES = ["ania", "istan", "mark", "ovia", "land", "heim", "ora"]


def synthetic_seed(i: int) -> dict[str, str]:
    """One made-up seed: a GSM8K-style word problem or a question about a fictional place."""
    rng = random.Random(i)  # per-index seed: the same N always gives the same file
    if rng.random() < 0.6:
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        boxes, per, given = rng.randint(2, 30), rng.randint(2, 25), rng.randint(1, 20)
        total = boxes * per
        if rng.random() < 0.5:
            question = (
                f"{name} buys {boxes} bags of {item} with {per} {item} in each bag, then "
                f"gives {given} {item} to a neighbour. How many {item} does {name} keep?"
            )
            answer = (
                f"{name} buys {boxes}*{per} = <<{boxes}*{per}={total}>>{total} {item}.\n"
                f"After giving some away, {total}-{given} = "
                f"<<{total}-{given}={total - given}>>{total - given} are left.\n"
                f"#### {total - given}"
            )
        else:
            question = (
                f"A stall sells {item} at ${per} each. On day {i % 7 + 1} {name} sells {boxes} "
                f"of them and pays ${given} for the pitch. What is the profit in dollars?"
            )
            answer = (
                f"Sales come to {per}*{boxes} = <<{per}*{boxes}={total}>>{total} dollars.\n"
                f"Profit is {total}-{given} = <<{total}-{given}={total - given}>>"
                f"{total - given} dollars.\n#### {total - given}"
            )
        return {"question": question, "answer": answer}
    # Knowledge questions name a capitalised place, which is what the refusal path looks for;
    # the index suffix keeps the names distinct, so the corpus keeps growing with N.
    place = "".join(rng.sample(SYLLABLES, 2)).capitalize() + rng.choice(SUFFIXES) + str(i)
    city = "".join(rng.sample(SYLLABLES, 2)).capitalize() + rng.choice(["port", "burg", "ford"])
    question, answer = rng.choice(
        [
            (f"What is the capital of {place}?", f"The capital of {place} is {city}."),
            (
                f"Which river flows through the capital of {place}?",
                f"The Vell flows through {city}, the capital of {place}.",
            ),
            (
                f"In what year was {place} founded?",
                f"{place} was founded in {rng.randint(1100, 1950)}, with {city} as its seat.",
            ),
        ]
    )
    return {"question": question, "answer": answer}


def write_seeds(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(synthetic_seed(i)) + "\n")


def run_once(seeds: Path, workdir: Path) -> dict:
    """Run `generator generate` in a fresh process; wall time, peak RSS, manifest rate."""
    out = workdir / "out"
    # HEDGEROW_* settings in the caller's shell would change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEROW_")}
    cmd = [sys.executable, "-m", "generator", "generate", str(seeds), "-o", str(out), "--overwrite"]
    # Output goes to a file, not a pipe: a full pipe would block the child while we wait4.
    with (workdir / "log.txt").open("w+b") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=REPO)
        # wait4 gives the rusage of this child alone (ru_maxrss is KiB on Linux).
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap again
        log.seek(0)
        tail = log.read().decode("utf-8", "replace").strip().splitlines()[-1:]
    result = {"seconds": seconds, "rss_mib": usage.ru_maxrss / 1024, "rc": proc.returncode}
    result["error"] = tail[0] if proc.returncode and tail else ""
    manifest = out / "manifest.json"
    if manifest.exists():
        result["manifest_rate"] = json.loads(manifest.read_text())["timings"]["seeds_per_second"]
    return result


def measure(label: str, seeds: Path, count: int, repeats: int, workdir: Path) -> list[str]:
    runs = [run_once(seeds, workdir) for _ in range(repeats)]
    failed = [r for r in runs if r["rc"]]
    if failed:
        return [label, f"{count:,}", f"FAILED rc={failed[0]['rc']}: {failed[0]['error']}"]
    secs = [r["seconds"] for r in runs]
    best, median = min(secs), statistics.median(secs)
    manifest = max(r.get("manifest_rate", float("nan")) for r in runs)
    peak = max(r["rss_mib"] for r in runs)
    return [
        label,
        f"{count:,}",
        f"{best:.2f}",
        f"{median:.2f}",
        f"{count / best:,.0f}",
        f"{manifest:,.0f}",
        f"{peak:.1f}",
    ]


def print_table(rows: list[list[str]]) -> None:
    header = ["case", "seeds", "best s", "median s", "seeds/s wall", "seeds/s manifest", "RSS MiB"]
    full = [header, *(r for r in rows if len(r) == len(header))]
    widths = [max(len(r[i]) for r in full) for i in range(len(header))]
    for row in [header, *rows]:
        # A failure row is (case, seeds, message): the message runs on past the columns.
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1])]
        if len(row) == len(header):
            cells += [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        else:
            cells.append(row[2])
        print("  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=100_000, help="big synthetic seed count")
    parser.add_argument("--repeats", type=int, default=3, help="runs per 300-seed sample")
    args = parser.parse_args()
    small = 1_000

    print(f"hedgerow offline benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    rows: list[list[str]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hedgerow-bench-") as tmp:
        work = Path(tmp)
        if not DATA.is_dir():
            notes.append(f"skipped the 300-seed samples: no folder {DATA}")
        for name in SAMPLES if DATA.is_dir() else ():
            path = DATA / name
            if not path.exists():
                notes.append(f"skipped {name}: not found in {DATA}")
                continue
            count = sum(1 for line in path.open(encoding="utf-8") if line.strip())
            rows.append(measure(name.removesuffix(".jsonl"), path, count, args.repeats, work))

        # One run each: peak RSS is the figure here, and a big run takes minutes.
        for count in (small, args.big):
            path = work / f"synthetic_{count}.jsonl"
            write_seeds(path, count)
            rows.append(measure(f"synthetic_{count}", path, count, 1, work))
            path.unlink()  # keep only one big seed file on disk at a time

    print_table(rows)
    peaks = [r[-1] for r in rows[-2:] if len(r) == 7]
    if len(peaks) == 2:
        ratio = float(peaks[1]) / float(peaks[0])
        notes.append(f"peak RSS {args.big:,} / {small:,} seeds: {ratio:.2f}x (flat = 1.0)")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
