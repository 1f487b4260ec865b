"""Benchmark the knowledge probe (`--probe embedded`): speed, and what it finds on real data.

Figures, each measured side by side in one run:

1. probe seeds/s in-process, the K samples and the greedy answer decoded side by side in
   one batch sharing the frame's KV cells, against the same answers decoded one call at a
   time (the frame evaluated again for each), on --seeds example questions; the speed-up;
2. in-process against llama.cpp's own server (`python -m llama_cpp.server`, the same
   model, K requests per seed since it does not take `n`), on the same seeds;
3. on the shared GSM8K and Alpaca seeds (../shared/data) and on the bundled examples:
   how many seeds are checkable (and why the rest are not), the SliCK category shares
   among the checkable ones (probing --limit of them), and, from a `hedgerow generate`
   run on the examples, the mean |stated confidence - p_correct| over hedge rows.

Other processes change absolute rates (the load average is printed); the ratios are
measured side by side to stay comparable.

    python benchmarks/probe.py [--seeds 6] [--limit 20] [--samples 10] [--skip-server]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples" / "seeds.jsonl"
sys.path.insert(0, str(REPO))

from generator import probe as probing  # noqa: E402
from generator.io import iter_seeds  # noqa: E402
from generator.probe.local import LocalSampler  # noqa: E402
from generator.probe.server import ServerSampler  # noqa: E402
from generator.scoring import CONTEXT, embedded_model  # noqa: E402
from generator.scoring.model import LocalModel  # noqa: E402
from generator.templates import Prompts  # noqa: E402
from generator.values import CATEGORIES  # noqa: E402

SHARED = {
    "gsm8k": ("gsm8k_train_300.jsonl", None),
    "alpaca": ("alpaca_300.jsonl", None),
}


def seeds_of(path: Path, limit: int | None = None):
    return list(iter_seeds([str(path)], None, None, limit))


async def probe_all(probe, seeds) -> tuple[float, list]:
    started = time.perf_counter()
    out = [await probe.probe(s) for s in seeds]
    return time.perf_counter() - started, out


def make_probe(sampler, samples: int, pool) -> probing.Probe:
    probe = probing.Probe(Prompts(), sampler, samples=samples)
    for seed in pool:
        probe.offer(seed)
    return probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6, help="seeds timed in figures 1-2")
    parser.add_argument("--limit", type=int, default=20, help="seeds probed per file in 3")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")

    pool = seeds_of(EXAMPLES)
    checkable = [s for s in pool if not isinstance(make_probe(None, 1, []).expected(s), str)]
    timed = checkable[: args.seeds]
    model = LocalModel(embedded_model(), CONTEXT, "--probe embedded")

    async def figures_1_2():
        together = LocalSampler("embedded", model, owned=False)
        apart = LocalSampler("embedded", model, owned=False)
        apart.together = False
        batch, alone = (
            make_probe(together, args.samples, pool),
            make_probe(apart, args.samples, pool),
        )
        await probe_all(batch, timed[:1])  # load, warm up
        t_batch = t_apart = 0.0
        a, b = [], []
        for seed in timed:  # alternated seed by seed: other load on the machine hits both
            t, out = await probe_all(batch, [seed])
            t_batch, a = t_batch + t, a + out
            t, out = await probe_all(alone, [seed])
            t_apart, b = t_apart + t, b + out
        print(f"\n1. {len(timed)} seeds, K={args.samples} samples + 1 greedy each, alternated")
        n = len(timed)
        print(f"   in one batch: {n / t_batch:.2f} seeds/s ({t_batch / n:.2f} s/seed)")
        print(f"   one at a time: {n / t_apart:.2f} seeds/s ({t_apart / n:.2f} s/seed)")
        print(f"   speed-up {t_apart / t_batch:.2f}x")
        same = sum(x.knowledge == y.knowledge for x, y in zip(a, b, strict=True))
        print(f"   same knowledge both ways: {same} of {len(timed)} (sampling order differs)")
        if args.skip_server:
            return
        from tests.conftest import llama_cpp_server

        with (
            tempfile.TemporaryDirectory() as tmp,
            llama_cpp_server(model.path, Path(tmp) / "server.log") as url,
        ):
            sampler = ServerSampler("openai:" + url, url)
            await probe_all(make_probe(sampler, args.samples, pool), timed[:1])
            t_server, _ = await probe_all(make_probe(sampler, args.samples, pool), timed)
            await sampler.aclose()
        print(
            f"\n2. llama.cpp's server, same seeds: {len(timed) / t_server:.2f} seeds/s "
            f"({t_server / len(timed):.2f} s/seed, n per request: {sampler._n}); "
            f"in-process is {t_server / t_batch:.2f}x faster"
        )

    asyncio.run(figures_1_2())

    print("\n3. checkable seeds and categories")
    files = {"examples": EXAMPLES, **{k: DATA / v[0] for k, v in SHARED.items()}}
    for name, path in files.items():
        if not path.is_file():
            print(f"   {name}: {path} not found, skipped")
            continue
        seeds = seeds_of(path)
        probe = make_probe(LocalSampler("embedded", model, owned=False), args.samples, seeds)
        reasons = Counter(
            e if isinstance(e, str) else "checkable:" + e.kind
            for e in (probe.expected(s) for s in seeds)
        )
        ok = [s for s in seeds if not isinstance(probe.expected(s), str)][: args.limit]
        seconds, probed = asyncio.run(probe_all(probe, ok))
        cats = Counter(p.knowledge.category for p in probed)
        n = max(1, len(probed))
        shares = ", ".join(f"{c} {cats[c] / n:.0%}" for c in CATEGORIES)
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        print(f"   {name}: {len(seeds)} seeds; {why}")
        print(f"      {len(probed)} probed in {seconds:.1f} s: {shares}")
    asyncio.run(model.aclose())

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "generator", "generate", str(EXAMPLES), "-o", str(out)],
            check=True,
            capture_output=True,
            env={**os.environ, "HEDGEROW_SCORER": "embedded"},
        )
        seconds = time.perf_counter() - started
        rows = [json.loads(line) for line in (out / "dataset.jsonl").open(encoding="utf-8")]
        gaps = [
            abs(r["attributes"]["confidence"] - r["knowledge"]["p_correct"])
            for r in rows
            if r["behavior"] == "hedge"
            and r.get("knowledge")
            and r["attributes"].get("confidence") is not None
        ]
        mean = sum(gaps) / len(gaps) if gaps else float("nan")
        print(
            f"\n   hedgerow generate examples (probe + embedded scorer): {seconds:.1f} s; "
            f"{len(gaps)} hedge rows, mean |stated - p_correct| = {mean:.3f}"
        )


if __name__ == "__main__":
    main()
