"""Benchmark the in-process fit scorer (`--scorer embedded`): overhead, prefix reuse, effect.

Three figures, each measured side by side in one run, on the samples in ../shared/data:

1. scorer throughput against raw llama.cpp: `LlamaScorer.score_texts` on --pairs GSM8K
   (question, answer) pairs, end to end (tokenizing included), against bare `llama_decode`
   calls of the same tokens that mirror what the engine asks of llama.cpp (same batches,
   sequence ids, logit rows and KV-cache copies; the script checks the calls are
   identical) but compute no log-probabilities. Scored response tokens/s for both, and
   scorer/raw (1.0 = no overhead). Best of --repeats, the two alternated;
2. prompt-prefix reuse with K=4 candidates per prompt, the prompt about as long as each
   candidate: `engine.score(prompt, [r1..r4])` against four `engine.score(prompt, [r])`
   calls (the prompt evaluated each time), and against an echo/logits_all scorer (as a
   completions server with echo does: one sequence per candidate, logits on every
   token). Speed-ups, plus the largest NLL difference between the three (batch
   composition changes float rounding a little; they must agree within 0.05 nats/token);
3. what selection by fit does: `generate` with --candidates 4 and the embedded scorer on
   --limit GSM8K and Alpaca seeds; per behavior, the mean NLL of all scored candidates
   against that of the selected ones, the share dropped as unnatural, and the cutoff.

Figures are printed, not asserted. Other processes on the machine change absolute rates
(the load average is printed); the ratios are measured side by side to stay comparable.

    python benchmarks/scoring.py [--pairs 40] [--cases 6] [--repeats 3] [--limit 15]
                                 [--skip-generate] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

from generator import scoring  # noqa: E402
from generator.scoring import llama  # noqa: E402
from generator.templates import Prompts  # noqa: E402

K = 4  # candidates per prompt in figure 2
OPENERS = ("", "Let's work it out.\n", "Here is the working.\n", "Step by step:\n")
UNNATURAL = ("unnatural", "pair_partner_unnatural")

Tokens = list[int]
Groups = list[tuple[Tokens, list[Tokens]]]  # (prompt, responses sharing it)


def rows(name: str) -> list[dict]:
    with (DATA / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def split(engine, context: int, prefix: str, whole: str) -> tuple[Tokens, Tokens]:
    """(prompt, response) tokens of one framed text, cut as `LlamaScorer.score_texts` does."""
    tokens, head = engine.tokenize(whole), engine.tokenize(prefix)
    cut = 0
    while cut < min(len(tokens), len(head)) and tokens[cut] == head[cut]:
        cut += 1
    cut = max(cut, 1)
    prompt, response = tokens[:cut], tokens[cut:]
    excess = len(prompt) + len(response) - context
    if excess > 0:
        drop = min(excess, len(prompt) - 1)
        prompt = prompt[:1] + prompt[1 + drop :]
        response = response[: len(response) - (excess - drop)]
    return prompt, response


def grouped(engine, context: int, texts: Sequence[tuple[str, str]]) -> Groups:
    """The (prompt, [responses]) groups the scorer hands to `engine.score`, in its order."""
    groups: dict[tuple[int, ...], list[Tokens]] = {}
    for prefix, whole in dict.fromkeys(texts):
        prompt, response = split(engine, context, prefix, whole)
        if response:
            groups.setdefault(tuple(prompt), []).append(response)
    return [(list(p), rs) for p, rs in groups.items()]


def raw(engine, prompt: Tokens, responses: Sequence[Tokens]) -> None:
    """The llama.cpp work of `engine.score(prompt, responses)`, without log-probabilities:
    the same decode calls, sequences and KV-cache copies, no logits read."""
    L, memory, n_prompt = engine.L, engine.memory, len(prompt)
    L.llama_memory_clear(memory, True)
    for start in range(0, n_prompt, llama.BATCH):
        chunk = prompt[start : start + llama.BATCH]
        engine.decode([(t, start + i, 0, start + i == n_prompt - 1) for i, t in enumerate(chunk)])
    waiting = [i for i, r in enumerate(responses) if len(r) > 1]
    while waiting:
        wave, size = [], 0
        while waiting and len(wave) < llama.SEQUENCES - 1:
            need = len(responses[waiting[0]]) - 1
            if wave and (size + need > llama.OUTPUTS or n_prompt + size + need > engine.context):
                break
            wave.append(waiting.pop(0))
            size += need
        items = []
        for seq, i in enumerate(wave, start=1):
            L.llama_memory_seq_cp(memory, 0, seq, -1, -1)
            response = responses[i]
            items += [(response[j], n_prompt + j, seq, True) for j in range(len(response) - 1)]
        for start in range(0, len(items), llama.OUTPUTS):
            engine.decode(items[start : start + llama.OUTPUTS])
        for seq in range(1, len(wave) + 1):
            L.llama_memory_seq_rm(memory, seq, -1, -1)


def echo(engine, prompt: Tokens, response: Tokens) -> float:
    """Summed NLL of `response` as an echo/logits_all scorer gets it: prompt and response
    in one sequence, logits on every token (only the response's rows are normalised)."""
    full = [*prompt, *response]
    tokens, n_prompt = full[:-1], len(prompt)
    engine.L.llama_memory_clear(engine.memory, True)
    total = 0.0
    for start in range(0, len(tokens), llama.OUTPUTS):
        chunk = tokens[start : start + llama.OUTPUTS]
        engine.decode([(t, start + i, 0, True) for i, t in enumerate(chunk)])
        first = max(n_prompt - 1 - start, 0)  # the first row that predicts a response token
        if first < len(chunk):
            logits = engine.rows(len(chunk))[first:]
            norms = engine.normalisers(logits)
            for k in range(len(logits)):
                total += norms[k] - float(logits[k, full[start + first + k + 1]])
    return total


def recorded(engine, fn: Callable[[], object]) -> list[list]:
    """The items of every `engine.decode` call `fn` makes."""
    calls: list[list] = []
    decode = engine.decode
    engine.decode = lambda items: (calls.append(list(items)), decode(items))[1]
    try:
        fn()
    finally:
        del engine.decode  # the instance attribute shadowed the method
    return calls


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each fn over `repeats` rounds, the order reversed every other round so
    drift in the machine's load hits every fn alike (the caller warms up first)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(fns[name]))
    return times


def print_table(header: list[str], body: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells).rstrip())


def overhead(scorer, engine, prompts: Prompts, n: int, repeats: int) -> None:
    """Figure 1: the scorer's end-to-end rate against raw decoding of the same tokens."""
    data = rows("gsm8k_train_300.jsonl")[:n]
    texts = [scoring.framed(prompts, r["question"], r["answer"]) for r in data]
    groups = grouped(engine, scorer.context, texts)
    scored = sum(len(r) for _, rs in groups for r in rs)
    prompt_tokens = sum(len(p) for p, _ in groups)

    def run_scorer() -> None:
        scorer.score_texts(texts)

    def run_raw() -> None:
        for prompt, responses in groups:
            raw(engine, prompt, responses)

    # Warm-up, and the check that raw asks llama.cpp for exactly what the scorer does.
    few, few_groups = texts[:8], grouped(engine, scorer.context, texts[:8])
    same = recorded(engine, lambda: scorer.score_texts(few)) == recorded(
        engine, lambda: [raw(engine, p, rs) for p, rs in few_groups]
    )
    times = side_by_side({"scorer.score_texts": run_scorer, "raw llama_decode": run_raw}, repeats)
    print(
        f"\n1. scorer vs raw llama.cpp: {len(texts)} GSM8K pairs, {prompt_tokens:,} prompt "
        f"and {scored:,} scored response tokens; best of {repeats}"
    )
    body = []
    for name, secs in times.items():
        body.append(
            [
                name,
                f"{min(secs):.2f}",
                f"{statistics.median(secs):.2f}",
                f"{scored / min(secs):,.0f}",
            ]
        )
    print_table(["path", "best s", "median s", "scored tok/s"], body)
    best = min(times["raw llama_decode"]) / min(times["scorer.score_texts"])
    median = statistics.median(times["raw llama_decode"]) / statistics.median(
        times["scorer.score_texts"]
    )
    print(
        f"scorer/raw throughput: {best:.2f} (best), {median:.2f} (median); target >= 0.90; "
        f"raw makes the scorer's exact llama_decode calls: {'yes' if same else 'NO'}"
    )


def reuse_cases(engine, prompts: Prompts, n: int) -> list[tuple[Tokens, list[Tokens]]]:
    """`n` GSM8K prompts, each with K candidates as long as the prompt in tokens: the
    answer behind K different openers (padded with the next answer, then cut)."""
    data = rows("gsm8k_train_300.jsonl")
    cases = []
    for i in range(n):
        question = data[i]["question"]
        filler = f"{data[i]['answer']}\n{data[(i + 1) % len(data)]['answer']}"
        prompt: Tokens = []
        candidates = []
        for opener in OPENERS[:K]:
            prefix, whole = scoring.framed(prompts, question, opener + filler)
            prompt, response = split(engine, 1 << 30, prefix, whole)
            candidates.append(response[: len(prompt)])
        cases.append((prompt, candidates))
    return cases


def reuse(engine, prompts: Prompts, n: int, repeats: int) -> None:
    """Figure 2: K candidates scored after one prompt evaluation against K evaluations."""
    cases = reuse_cases(engine, prompts, n)
    nll: dict[str, list[float]] = {}

    def together() -> None:
        nll["reuse"] = [
            t / len(r) for p, rs in cases for t, r in zip(engine.score(p, rs), rs, strict=True)
        ]

    def apart() -> None:
        nll["apart"] = [engine.score(p, [r])[0] / len(r) for p, rs in cases for r in rs]

    def logits_all() -> None:
        nll["echo"] = [echo(engine, p, r) / len(r) for p, rs in cases for r in rs]

    fns = {
        f"reuse: score(prompt, {K} candidates)": together,
        f"no reuse: {K} x score(prompt, 1 candidate)": apart,
        f"echo/logits_all: {K} x prompt+candidate": logits_all,
    }
    for prompt, candidates in cases[:1]:  # warm-up
        engine.score(prompt, candidates)
        echo(engine, prompt, candidates[0])
    times = side_by_side(fns, repeats)
    n_prompt = statistics.mean(len(p) for p, _ in cases)
    n_response = statistics.mean(len(r) for _, rs in cases for r in rs)
    scored = sum(len(r) for _, rs in cases for r in rs)
    print(
        f"\n2. prompt-prefix reuse: {len(cases)} GSM8K prompts x {K} candidates; mean "
        f"{n_prompt:.1f} prompt and {n_response:.1f} candidate tokens; best of {repeats}"
    )
    best = {name: min(secs) for name, secs in times.items()}
    together_s = best[next(iter(fns))]
    body = [
        [name, f"{secs:.2f}", f"{scored / secs:,.0f}", f"{secs / together_s:.2f}x"]
        for name, secs in best.items()
    ]
    print_table(["path", "best s", "scored tok/s", "reuse speed-up"], body)
    names = list(best)
    print(
        f"speed-up of reuse vs no reuse: {best[names[1]] / together_s:.2f}x (target >= 1.5x); "
        f"vs echo/logits_all: {best[names[2]] / together_s:.2f}x"
    )
    apart_gap = max(abs(a - b) for a, b in zip(nll["reuse"], nll["apart"], strict=True))
    echo_gap = max(abs(a - b) for a, b in zip(nll["reuse"], nll["echo"], strict=True))
    verdict = "ok" if apart_gap <= 0.05 else "DISAGREE"
    print(
        f"NLL agreement: max |reuse - no reuse| {apart_gap:.4f}, max |reuse - echo| "
        f"{echo_gap:.4f} nats/token (limit 0.05): {verdict}"
    )
    # What a prompt token costs against a scored one, from the raw decode of these cases.
    prompt_s = min(timed(lambda: [raw(engine, p, []) for p, _ in cases]) for _ in range(2))
    whole_s = min(timed(lambda: [raw(engine, p, rs) for p, rs in cases]) for _ in range(2))
    per_prompt = prompt_s / sum(len(p) for p, _ in cases)
    per_scored = (whole_s - prompt_s) / sum(len(r) - 1 for _, rs in cases for r in rs)
    share = per_prompt / per_scored
    ceiling = K * (share + 1) / (share + K)
    print(
        f"a prompt token costs {share:.2f} of a scored token in raw decoding, so with the "
        f"prompt as long as a candidate reuse can save at most {ceiling:.2f}x"
    )


@contextlib.contextmanager
def engine_threads(threads: int | None):
    """Have the scorer `generate` makes load its engine with `threads` threads."""
    if not threads:
        yield
        return
    original = llama.LlamaEngine

    class Engine(original):
        def __init__(self, path, context, _threads=None):
            super().__init__(path, context, threads)

    llama.LlamaEngine = Engine
    try:
        yield
    finally:
        llama.LlamaEngine = original


def selection(limit: int, threads: int | None) -> None:
    """Figure 3: mean NLL of the selected candidates against all scored ones."""
    from generator.run import RunConfig, generate

    print(f"\n3. selection by fit: generate --candidates {K} --scorer embedded --limit {limit}")
    body, notes = [], []
    with tempfile.TemporaryDirectory(prefix="hedgerow-bench-") as tmp:
        for name in ("gsm8k_train_300.jsonl", "alpaca_300.jsonl"):
            sample = name.split("_")[0]
            config = RunConfig(
                seeds=(str(DATA / name),),
                out=str(Path(tmp) / sample),
                candidates=K,
                limit=limit,
                scorer="embedded",
            )
            with engine_threads(threads):
                start = time.perf_counter()
                result = generate(config)
                seconds = time.perf_counter() - start
            with (result.path / "candidates.jsonl").open(encoding="utf-8") as fh:
                candidates = [json.loads(line) for line in fh if line.strip()]
            manifest = json.loads((result.path / "manifest.json").read_text(encoding="utf-8"))
            decided = [r for r in candidates if r.get("status") in ("selected", "dropped")]
            for behavior in sorted({r["behavior"] for r in decided}):
                mine = [r for r in decided if r["behavior"] == behavior]
                every = [r["fit"]["nll"] for r in mine if r.get("fit")]
                chosen = [
                    r["fit"]["nll"] for r in mine if r.get("fit") and r["status"] == "selected"
                ]
                unnatural = sum(r.get("drop_reason") in UNNATURAL for r in mine)
                mean_all = statistics.mean(every) if every else float("nan")
                mean_sel = statistics.mean(chosen) if chosen else float("nan")
                body.append(
                    [
                        f"{sample} {behavior}",
                        f"{len(mine)}",
                        f"{len(every)}",
                        f"{len(chosen)}",
                        f"{mean_all:.3f}",
                        f"{mean_sel:.3f}",
                        f"{mean_sel - mean_all:+.3f}",
                        f"{unnatural / len(mine):.0%}",
                    ]
                )
            unnatural = sum(r.get("drop_reason") in UNNATURAL for r in decided)
            tokens = sum(r["fit"]["tokens"] for r in decided if r.get("fit"))
            fit = manifest.get("scorer") or {}
            reference = fit.get("reference", {})
            notes.append(
                f"{sample}: dropped as unnatural/pair_partner_unnatural "
                f"{unnatural / max(len(decided), 1):.0%} of {len(decided)}; cutoff_nll "
                f"{fit.get('cutoff_nll')} (reference of {reference.get('size')}: mean "
                f"{reference.get('mean')}, p50 {reference.get('p50')}, p90 {reference.get('p90')})"
            )
            notes.append(
                f"  run took {seconds:.1f} s: {seconds / max(len(decided), 1):.2f} s per "
                f"candidate, {tokens / seconds:.0f} scored tok/s (load and reference included)"
            )
    header = ["behavior", "candidates", "scored", "selected", "NLL all", "NLL sel", "sel-all"]
    print_table([*header, "unnatural"], body)
    for note in notes:
        print(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="GSM8K pairs for figure 1")
    parser.add_argument("--cases", type=int, default=6, help="prompts of K=4 for figure 2")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per figure")
    parser.add_argument("--limit", type=int, default=15, help="seeds per sample for figure 3")
    parser.add_argument("--skip-generate", action="store_true", help="figures 1 and 2 only")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no folder {DATA}: this benchmark reads the GSM8K and Alpaca samples there")

    started = time.perf_counter()
    prompts = Prompts()
    scorer = scoring.make("embedded", prompts)
    if args.threads:
        scorer.model.engine = llama.LlamaEngine(scorer.path, scorer.context, args.threads)
    engine = scorer.load()
    threads = args.threads or engine.L.llama_n_threads_batch(engine.ctx)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"hedgerow scoring benchmark: {scorer.path.name}, {threads} llama.cpp threads, "
        f"{os.cpu_count()} CPUs (load average {load}), Python {platform.python_version()}"
    )
    try:
        overhead(scorer, engine, prompts, args.pairs, args.repeats)
        reuse(engine, prompts, args.cases, args.repeats)
    finally:
        asyncio.run(scorer.aclose())
    if not args.skip_generate:
        selection(args.limit, args.threads)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
