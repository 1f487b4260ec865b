"""Answers sampled in-process from llama.cpp: one greedy answer and K samples of one frame.

The frame is evaluated once; the greedy answer continues in its sequence and each sample
gets a sequence of its own that shares the frame's KV cells, so every step decodes one
token of every unfinished answer in a single `llama_decode`. Sampling is plain softmax
at the temperature, drawn from a `numpy` generator seeded by the caller: the same seed
gives the same answers.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

from generator.errors import ScorerError


@dataclass(frozen=True)
class Sampled:
    """What the model said: its greedy answer and its K samples, each up to a newline."""

    greedy: str
    samples: tuple[str, ...]


def _piece(engine, token: int) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = engine.L.llama_token_to_piece(engine.vocab, token, buf, len(buf), 0, False)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = engine.L.llama_token_to_piece(engine.vocab, token, buf, len(buf), 0, False)
    return buf.raw[: max(n, 0)]


def _draw(np, row, temperature: float, rng) -> int:
    if temperature <= 0:
        return int(row.argmax())
    z = row.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


def sample(
    engine,
    prompt: Sequence[int],
    k: int,
    temperature: float,
    max_tokens: int,
    rng,
    together: bool = True,
) -> Sampled:
    """The greedy answer and `k` samples after `prompt` (token ids, BOS first).

    `together=False` decodes each answer on its own, the frame evaluated again each time:
    the slow way, kept for the benchmark that measures what sharing the frame saves."""
    if not together:
        one = [_answers(engine, prompt, [0.0], max_tokens, rng)[0]]
        one += [_answers(engine, prompt, [temperature], max_tokens, rng)[0] for _ in range(k)]
        return Sampled(one[0], tuple(one[1:]))
    texts = _answers(engine, prompt, [0.0] + [temperature] * k, max_tokens, rng)
    return Sampled(texts[0], tuple(texts[1:]))


def greedy(engine, prompt: Sequence[int], max_tokens: int, stops: Sequence[str]) -> str:
    """The greedy continuation of `prompt`, cut at the first of `stops` (which may allow
    several lines, unlike `sample`'s answers): how `hedgerow eval` asks a base model."""
    return _answers(engine, prompt, [0.0], max_tokens, None, tuple(stops))[0]


def _answers(engine, prompt, temperatures, max_tokens, rng, stops=("\n",)) -> list[str]:
    L, np, memory = engine.L, engine.np, engine.memory
    n, width = len(prompt), len(temperatures)
    ends = [stop.encode() for stop in stops]
    if n + max_tokens > engine.context:
        raise ScorerError(
            f"the probe's frame is {n} tokens, too long for the model's context of "
            f"{engine.context}; shorten prompts/probe/frame.j2 or its exemplars"
        )
    if width > engine.sequences:
        raise ScorerError(f"{width} answers at once, but the model has {engine.sequences}")
    L.llama_memory_clear(memory, True)
    for start in range(0, n, engine.batch_size):
        chunk = prompt[start : start + engine.batch_size]
        engine.decode([(t, start + i, 0, start + i == n - 1) for i, t in enumerate(chunk)])
    last = engine.rows(1)[0]
    tokens = [[_draw(np, last, t, rng)] for t in temperatures]
    for seq in range(1, width):
        L.llama_memory_seq_cp(memory, 0, seq, -1, -1)
    text = [bytearray() for _ in temperatures]
    live = list(range(width))
    while True:
        still = []
        for seq in live:
            token = tokens[seq][-1]
            if L.llama_vocab_is_eog(engine.vocab, token):
                continue
            text[seq] += _piece(engine, token)
            if any(stop in text[seq] for stop in ends) or len(tokens[seq]) >= max_tokens:
                continue
            still.append(seq)
        live = still
        if not live:
            break
        engine.decode([(tokens[s][-1], n + len(tokens[s]) - 1, s, True) for s in live])
        rows = engine.rows(len(live))
        for i, seq in enumerate(live):
            tokens[seq].append(_draw(np, rows[i], temperatures[seq], rng))
    for seq in range(1, width):
        L.llama_memory_seq_rm(memory, seq, -1, -1)
    return [_cut(t.decode("utf-8", "replace"), stops) for t in text]


def _cut(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first of `stops`, stripped."""
    for stop in stops:
        text = text.split(stop, 1)[0]
    return text.strip()
