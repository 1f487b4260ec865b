"""`--probe embedded|gguf:PATH`: the target model in-process through llama.cpp."""

from __future__ import annotations

from typing import Any

from generator.probe import Sampler
from generator.probe.sampling import Sampled, sample


class LocalSampler(Sampler):
    """Samples answers from a `scoring.llama.LocalModel` (shared with the scorer when
    both name the same model: one copy in memory, one thread)."""

    def __init__(self, spec: str, model, owned: bool):
        self.spec = spec
        self.model = model
        self.owned = owned  # closed here only when the scorer does not share it
        self.together = True  # False: each answer decoded alone (the benchmark's baseline)

    def describe(self) -> dict[str, Any]:
        return {
            "probe": self.spec,
            "model": self.model.path.name,
            "shared_with_scorer": not self.owned,
        }

    async def sample(self, frame: str, k: int, temperature: float, max_tokens: int, seed: int):
        import numpy

        def run(engine) -> Sampled:
            rng = numpy.random.default_rng(seed)
            return sample(
                engine, engine.tokenize(frame), k, temperature, max_tokens, rng, self.together
            )

        return await self.model.call(run, sequences=k + 1)

    async def aclose(self) -> None:
        if self.owned:
            await self.model.aclose()
