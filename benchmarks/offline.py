"""Benchmark the offline path of `hedgerow generate`: throughput and peak memory.

Measures, each time by running the real CLI in a fresh subprocess:

1. throughput on the 300-seed GSM8K and Alpaca samples in ../shared/data (skipped if
   absent): best and median wall seconds over a few runs, seeds/s from wall time, and
   seeds/s from the run's manifest.json (which excludes interpreter start-up);
2. peak RSS of the child on 1,000 vs --big (default 100,000) synthetic seeds, and the
   big/small ratio: seeds are streamed, so the ratio should stay close to 1.0;
3. the cost of near-duplicate removal: every case above is run with
   `--near-duplicates T` (default 0.85, the CLI's default) and with `--near-duplicates 0`
   (off), the two alternated, and on/off ratios of throughput and peak RSS are printed,
   with the rows kept (lines of dataset.jsonl), the rows the filter dropped (manifest
   counts), and the RSS growth per 10k kept rows between the small and big synthetic runs.
   --no-compare runs the chosen setting only.

Every run passes `--scorer none`: the figures are about generation and selection, not fit
scoring (benchmarks/scoring.py measures that). Other processes on the machine change
absolute rates, so the 1-minute load average is printed beside each case (before -> after
its runs); the on/off ratios are measured side by side to stay comparable. Figures are
printed, not asserted. Run from anywhere:

    python benchmarks/offline.py [--big N] [--repeats R] [--near-duplicates T] [--no-compare]
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
DUP_REASONS = ("near_duplicate", "pair_partner_near_duplicate")


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


def run_once(seeds: Path, workdir: Path, near_duplicates: float) -> dict:
    """Run `generator generate` in a fresh process; wall time, peak RSS, manifest rate,
    rows kept and rows dropped as near-duplicates."""
    out = workdir / "out"
    # HEDGEROW_* settings in the caller's shell would change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEROW_")}
    cmd = [sys.executable, "-m", "generator", "generate", str(seeds), "-o", str(out), "--overwrite"]
    # No fit scoring: the default scorer would run a 270M model on every candidate.
    cmd += ["--scorer", "none", "--near-duplicates", f"{near_duplicates:g}"]
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
        data = json.loads(manifest.read_text())
        result["manifest_rate"] = data["timings"]["seeds_per_second"]
        result["selected"] = data["counts"]["selected"]
        dropped = data["counts"]["dropped"]
        result["dup_dropped"] = {reason: dropped.get(reason, 0) for reason in DUP_REASONS}
    dataset = out / "dataset.jsonl"
    if dataset.exists():
        with dataset.open("rb") as f:
            result["rows"] = sum(1 for line in f if line.strip())
    return result


def summarize(label: str, count: int, setting: float, runs: list[dict], load: str) -> dict:
    """One table row (as strings under "cells") plus the numbers the ratios need."""
    failed = [r for r in runs if r["rc"]]
    if failed:
        message = f"FAILED rc={failed[0]['rc']}: {failed[0]['error']}"
        return {"label": label, "setting": setting, "cells": [label, f"{count:,}", message]}
    secs = [r["seconds"] for r in runs]
    best, median = min(secs), statistics.median(secs)
    manifest = max(r.get("manifest_rate", float("nan")) for r in runs)
    peak = max(r["rss_mib"] for r in runs)
    last = runs[-1]  # generation is deterministic: every run keeps and drops the same rows
    rows, dups = last.get("rows", 0), last.get("dup_dropped", {})
    return {
        "label": label,
        "setting": setting,
        "count": count,
        "best": best,
        "manifest": manifest,
        "peak": peak,
        "rows": rows,
        "dups": dups,
        "selected": last.get("selected", {}),
        "cells": [
            label,
            f"{count:,}",
            f"{best:.2f}",
            f"{median:.2f}",
            f"{count / best:,.0f}",
            f"{manifest:,.0f}",
            f"{peak:.1f}",
            f"{setting:g}",
            f"{rows:,}",
            " + ".join(f"{dups.get(reason, 0):,}" for reason in DUP_REASONS),
            load,
        ],
    }


def measure(
    label: str, seeds: Path, count: int, repeats: int, workdir: Path, settings: list[float]
) -> list[dict]:
    """Run each --near-duplicates setting `repeats` times, alternating the settings so that
    a change in the machine's load falls on both alike; one summary per setting."""
    runs: dict[float, list[dict]] = {s: [] for s in settings}
    before = os.getloadavg()[0]
    for _ in range(repeats):
        for setting in settings:
            runs[setting].append(run_once(seeds, workdir, setting))
    load = f"{before:.2f}->{os.getloadavg()[0]:.2f}"
    return [summarize(label, count, s, runs[s], load) for s in settings]


def print_table(rows: list[list[str]], header: list[str]) -> None:
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


HEADER = [
    "case",
    "seeds",
    "best s",
    "median s",
    "seeds/s wall",
    "seeds/s manifest",
    "RSS MiB",
    "near-dup",
    "rows kept",
    "dropped dup + partner",
    "load 1m",
]
RATIO_HEADER = [
    "case",
    "seeds",
    "seeds/s wall on/off",
    "seeds/s manifest on/off",
    "RSS on/off",
    "rows off -> on",
    "dropped by behavior",
]


def ratio_row(on: dict, off: dict) -> list[str]:
    lost = {
        behavior: n - on["selected"].get(behavior, 0)
        for behavior, n in sorted(off["selected"].items())
        if n != on["selected"].get(behavior, 0)
    }
    return [
        on["label"],
        f"{on['count']:,}",
        f"{off['best'] / on['best']:.2f}",  # rate on/off = seconds off/on
        f"{on['manifest'] / off['manifest']:.2f}",
        f"{on['peak'] / off['peak']:.2f}",
        f"{off['rows']:,} -> {on['rows']:,}",
        ", ".join(f"{b} {n:,}" for b, n in lost.items()) or "none",
    ]


def growth_note(small: dict, big: dict) -> str:
    """Peak RSS growth per 10k kept rows between the small and big synthetic runs."""
    extra_rows = big["rows"] - small["rows"]
    extra_mib = big["peak"] - small["peak"]
    per_10k = extra_mib / extra_rows * 10_000 if extra_rows else float("nan")
    return (
        f"near-dup {big['setting']:g}: peak RSS {small['peak']:.1f} -> {big['peak']:.1f} MiB "
        f"for {small['rows']:,} -> {big['rows']:,} kept rows: {per_10k:.2f} MiB per 10k rows "
        f"({extra_mib * 1024 * 1024 / extra_rows if extra_rows else float('nan'):,.0f} B/row)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=100_000, help="big synthetic seed count")
    parser.add_argument("--repeats", type=int, default=3, help="runs per 300-seed sample")
    parser.add_argument(
        "--near-duplicates",
        type=float,
        default=0.85,
        metavar="T",
        help="threshold for the dedup-on runs, compared with 0 (off); default 0.85",
    )
    parser.add_argument(
        "--no-compare", action="store_true", help="run --near-duplicates T only, not also 0"
    )
    args = parser.parse_args()
    small = 1_000
    settings = [args.near_duplicates]
    if not args.no_compare and args.near_duplicates != 0:
        settings.append(0.0)

    print(f"hedgerow offline benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        "generate --scorer none, --near-duplicates "
        + " vs ".join(f"{s:g}" for s in settings)
        + f"; load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    results: list[dict] = []
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
            label = name.removesuffix(".jsonl")
            results += measure(label, path, count, args.repeats, work, settings)

        # One run each: peak RSS is the figure here, and a big run takes minutes.
        for count in (small, args.big):
            path = work / f"synthetic_{count}.jsonl"
            write_seeds(path, count)
            results += measure(f"synthetic_{count}", path, count, 1, work, settings)
            path.unlink()  # keep only one big seed file on disk at a time

    print_table([r["cells"] for r in results], HEADER)
    print(f"(dropped: rows dropped as {' + '.join(DUP_REASONS)}, from manifest counts)")
    ok = {(r["label"], r["setting"]): r for r in results if "peak" in r}
    for setting in settings:
        lo, hi = ok.get((f"synthetic_{small}", setting)), ok.get((f"synthetic_{args.big}", setting))
        if lo and hi:
            ratio = hi["peak"] / lo["peak"]
            notes.append(
                f"near-dup {setting:g}: peak RSS {args.big:,} / {small:,} seeds: "
                f"{ratio:.2f}x (flat = 1.0)"
            )
            notes.append(growth_note(lo, hi))
    if len(settings) == 2:
        on, off = settings
        pairs = [
            (r, ok[(label, off)])
            for (label, setting), r in ok.items()
            if setting == on and (label, off) in ok
        ]
        if pairs:
            print()
            print(f"near-duplicate removal: --near-duplicates {on:g} (on) / 0 (off)")
            print_table([ratio_row(r, s) for r, s in pairs], RATIO_HEADER)
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
