"""The knowledge probe: what the target model knows, measured by asking it.

For each seed whose reference can be checked (`probe.answers`), the target model reads a
few-shot frame (`prompts/probe/frame.j2`, exemplars from other seeds of the same input)
and answers once greedily and K times at a temperature. Each answer is checked against
the reference; the share of right samples is `p_correct` (as Alignment for Honesty maps
k of 10 to a confidence), and SliCK's categories follow from the greedy answer and the
samples:

    HighlyKnown   the greedy answer and every sample right
    MaybeKnown    the greedy answer right, some sample wrong
    WeaklyKnown   the greedy answer wrong, some sample right
    Unknown       the greedy answer and every sample wrong

(SliCK decides the first split with several few-shot frames' greedy answers; one frame
and its samples stand in for them here.)

    --probe embedded     the --scorer model when that is in-process, else the bundled one
    --probe gguf:PATH    any GGUF model file, in-process
    --probe openai:URL   an OpenAI-compatible /v1/completions (llama.cpp's server, vLLM)
    --probe none         no probe: nothing states a measured confidence
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from generator.probe.answers import Answers, Expected
from generator.probe.sampling import Sampled
from generator.templates import Prompts
from generator.values import Knowledge, Seed

FRAME = "probe/frame.j2"
POOL = 64  # checkable seeds kept (a reservoir sample) to draw exemplars from


@dataclass(frozen=True)
class Probed:
    """One seed's probe: its knowledge, or why it has none; and what the model said."""

    seed_id: str
    knowledge: Knowledge | None
    reason: str = ""  # why knowledge is None: long_form, not_knowledge, ...
    expected: str | None = None
    greedy: str | None = None
    samples: tuple[str, ...] = ()
    frame_sha256: str | None = None

    def to_row(self) -> dict[str, Any]:
        return {
            "seed_id": self.seed_id,
            "knowledge": self.knowledge.to_dict() if self.knowledge else None,
            "reason": self.reason,
            "expected": self.expected,
            "greedy": self.greedy,
            "samples": list(self.samples),
            "frame_sha256": self.frame_sha256,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Probed:
        k = row.get("knowledge")
        return cls(
            row["seed_id"],
            Knowledge.from_dict(k) if k else None,
            row.get("reason", ""),
            row.get("expected"),
            row.get("greedy"),
            tuple(row.get("samples") or ()),
            row.get("frame_sha256"),
        )


class Sampler:
    """Puts a frame to the target model: one interface for every engine."""

    spec: str

    async def sample(self, frame: str, k: int, temperature: float, max_tokens: int, seed: int):
        """A `Sampled` (greedy answer and k samples) for the frame."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"probe": self.spec}

    async def aclose(self) -> None:
        pass


class Probe:
    """The probe stage: checkable seeds in, `Probed` out."""

    def __init__(
        self,
        prompts: Prompts,
        sampler: Sampler,
        samples: int = 10,
        temperature: float = 1.0,
        seed: int = 0,
    ):
        self.prompts = prompts
        self.answers = Answers(prompts)
        self.sampler = sampler
        self.samples = samples
        self.temperature = temperature
        self.seed = seed
        self.pool: list[tuple[Seed, Expected]] = []
        self._seen = 0
        self._rng = random.Random(f"probe-pool\x1f{seed}")

    def expected(self, seed: Seed) -> Expected | str:
        return self.answers.expected(seed.prompt, seed.response)

    def offer(self, seed: Seed) -> None:
        """Let a seed of the input be an exemplar for others (a reservoir of POOL)."""
        expected = self.expected(seed)
        if isinstance(expected, str):
            return
        self._seen += 1
        if len(self.pool) < POOL:
            self.pool.append((seed, expected))
        elif (j := self._rng.randrange(self._seen)) < POOL:
            self.pool[j] = (seed, expected)

    def exemplars(self, seed: Seed, expected: Expected) -> list[dict[str, str]]:
        """Other seeds of the input with their short answers, the same kind first (numbers
        for a number), drawn by (run seed, seed id); the bank's fallbacks fill the rest."""
        n = self.answers.bank.exemplars
        others = sorted(
            (s for s in self.pool if s[0].id != seed.id and s[0].prompt != seed.prompt),
            key=lambda s: s[0].index,
        )
        rng = random.Random(f"exemplars\x1f{self.seed}\x1f{seed.id}")
        rng.shuffle(others)
        others.sort(key=lambda s: s[1].kind != expected.kind)  # stable: same kind first
        chosen = [{"question": " ".join(s.prompt.split()), "answer": e.text} for s, e in others]
        for fallback in self.answers.bank.fallback:
            chosen.append({"question": fallback.question, "answer": fallback.answer})
        return chosen[:n]

    def frame(self, seed: Seed, expected: Expected) -> str:
        return self.prompts.render(
            FRAME, exemplars=self.exemplars(seed, expected), question=" ".join(seed.prompt.split())
        )

    async def probe(self, seed: Seed) -> Probed:
        """Ask the target model the seed's question and check what it says."""
        expected = self.expected(seed)
        if isinstance(expected, str):
            return Probed(seed.id, None, reason=expected)
        frame = self.frame(seed, expected)
        number = int.from_bytes(
            hashlib.sha256(f"{self.seed}\x1f{seed.id}".encode()).digest()[:8], "big"
        )
        said: Sampled = await self.sampler.sample(
            frame,
            self.samples,
            self.temperature,
            self.answers.bank.max_answer_tokens,
            number,
        )
        right = [self.answers.correct(expected, s) for s in said.samples]
        knowledge = Knowledge.measure(self.answers.correct(expected, said.greedy), right)
        return Probed(
            seed.id,
            knowledge,
            expected=expected.text,
            greedy=said.greedy,
            samples=said.samples,
            frame_sha256=hashlib.sha256(frame.encode()).hexdigest()[:16],
        )

    async def aclose(self) -> None:
        await self.sampler.aclose()


SPECS = "embedded, gguf:PATH, openai:URL or none"


def make(
    spec: str,
    prompts: Prompts,
    scorer=None,
    samples: int = 10,
    temperature: float = 1.0,
    seed: int = 0,
    timeout: float = 120.0,
) -> Probe | None:
    """The probe a --probe value names (None for `none`). `embedded` is the scorer's own
    in-process model when it has one (so both read one copy), else the bundled model."""
    import os
    from pathlib import Path

    from generator.errors import ConfigError, param

    if samples < 1:
        raise ConfigError(f"{param('probe_samples')} must be at least 1")
    if not 0 <= temperature <= 2:
        raise ConfigError(f"{param('probe_temperature')} must be between 0 and 2")
    kind, _, rest = spec.partition(":")
    if spec == "none":
        return None
    if kind == "openai" and rest.startswith(("http://", "https://")):
        from generator.probe.server import ServerSampler

        key = os.environ.get("HEDGEROW_PROBE_API_KEY")
        sampler: Sampler = ServerSampler(spec, rest, api_key=key, timeout=timeout)
    elif spec == "embedded" or (kind == "gguf" and rest):
        from generator.probe.local import LocalSampler
        from generator.scoring import CONTEXT, embedded_model
        from generator.scoring.model import LocalModel

        shared = scorer.local_model() if scorer is not None else None
        path = embedded_model() if spec == "embedded" else Path(rest).expanduser()
        if spec == "embedded" and shared is not None:
            path = shared.path  # the scorer's model: the target model is probed and scored
        if shared is not None and shared.path.resolve() == path.resolve():
            sampler = LocalSampler(spec, shared, owned=False)
        else:
            sampler = LocalSampler(
                spec, LocalModel(path, CONTEXT, f"{param('probe')} {spec}"), owned=True
            )
    else:
        raise ConfigError(f"{param('probe')} {spec}: not a probe; use {SPECS}")
    return Probe(prompts, sampler, samples=samples, temperature=temperature, seed=seed)
