"""The offline backend: candidates rendered from templates, deterministic per --seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

from generator.generators import Context, Generator
from generator.templates import Prompts
from generator.values import Example, Seed, Skip


@dataclass
class OfflineBackend:
    """Renders each generator's offline templates; no network, no model."""

    prompts: Prompts
    seed: int = 0
    corpus: object = None  # the input's vocabulary (generator.corpus), for refusals

    name = "offline"

    stats = None  # nothing is asked of anyone
    cache = None

    @staticmethod
    def templates() -> list[str]:
        return []

    async def produce(self, generator: Generator, seed: Seed, k: int) -> list[Example] | Skip:
        # One stream of randomness per (run seed, seed, behavior): adding a behavior or
        # reordering seeds never changes another's output.
        rng = random.Random(f"{self.seed}\x1f{seed.id}\x1f{generator.name}")
        ctx = Context(prompts=self.prompts, rng=rng, corpus=self.corpus)
        return generator.offline(seed, ctx, k)

    async def aclose(self) -> None:
        pass
