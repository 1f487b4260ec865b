"""The probe as a stage of a run: every seed probed once, before generation, into the run
folder's `probe.jsonl`; then each seed handed on with what was measured.

    survey    offer()  every seed may be an exemplar for the others
    probe     run()    each seed not yet in probe.jsonl is probed and written (resumable)
    pair      run()    each seed the model does not know gets a partner it does know
    generate  attach() the seed as generators see it: knowledge, or why none; its partner
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from generator.engine import ordered
from generator.probe import Probe, Probed
from generator.probe.pairing import partners
from generator.probe.store import ProbeStore
from generator.values import CATEGORIES, Seed

SYNC_EVERY = 16  # probed seeds between fsyncs of probe.jsonl (each costs a model call)


class KnowledgeStage:
    """What the run knows of the target model's knowledge, seed by seed."""

    def __init__(self, probe: Probe | None, pair: bool):
        self.probe = probe
        self.pair = pair  # a behavior declines the unknown seeds: find their partners
        self.store: ProbeStore | None = None
        self.partner_of: dict[str, Seed] = {}
        self.probed_now = 0  # seeds this invocation probed (work a failure must keep)
        self._verdicts: dict = {}  # a dry run's verdicts (no run folder to keep them)

    def offer(self, seed: Seed) -> None:
        if self.probe is not None:
            self.probe.offer(seed)

    async def run(
        self,
        seeds: Callable[[], Iterable[Seed]],
        store: ProbeStore | None,
        say: Callable[[str], None] | None = None,
        pool=None,
    ) -> None:
        """Probe every seed `seeds()` gives that `store` does not hold yet, then pair.
        `pool` (an engine's, generator.engine.Pool) probes them elsewhere, many at a time;
        without one, this process asks them in turn. Either way each verdict is written
        in input order."""
        if self.probe is None:
            return
        self.store = store
        unsynced = 0
        measured = []  # (index, id, prompt's head, knowledge) of the measured seeds

        def fresh() -> Iterator[Seed]:  # streamed: memory grows with the verdicts
            for seed in seeds():
                if store is not None and seed.id in store.done:  # probed before a kill
                    if (known := self.knowledge(seed)) is not None:
                        measured.append((seed.index, seed.id, seed.prompt[:200], known))
                    continue  # never asked twice
                if say:
                    say(f"probing the model's knowledge: {self.probed_now} seeds asked")
                yield seed

        def keep(seed: Seed, probed: Probed) -> None:
            nonlocal unsynced
            self.probed_now += probed.knowledge is not None  # a model was asked
            if store is not None:
                store.add(probed)
                unsynced += 1
                if unsynced >= SYNC_EVERY:
                    store.sync()
                    unsynced = 0
            else:  # a dry run keeps its verdicts in memory only
                self._verdicts[seed.id] = probed
            if probed.knowledge is not None:
                measured.append((seed.index, seed.id, seed.prompt[:200], probed.knowledge))

        probe = self.probe
        try:
            if pool is None:
                await ordered(fresh(), lambda s: asyncio.ensure_future(probe.probe(s)), 1, keep)
            else:
                await ordered(fresh(), pool.submit, pool.window, keep, pool.flush)
        finally:
            if pool is not None:  # its actors gone: the next stage's get their CPUs
                await pool.aclose()
        if store is not None:
            store.sync()
        if say:
            say("")
        if self.pair:
            threshold = self.probe.answers.bank.partner_min_p
            order = sorted(measured)  # in input order: an augment run hands them shuffled
            known = partners(((i, p, k) for _, i, p, k in order), threshold)
            wanted = set(known.values())
            found = {s.id: s for s in seeds() if s.id in wanted}
            self.partner_of = {
                lost: replace(found[p], knowledge=self.knowledge(found[p]))
                for lost, p in known.items()
            }

    def _probed(self, seed: Seed):
        if self.store is not None:
            return self.store.done.get(seed.id)
        return self._verdicts.get(seed.id)

    def knowledge(self, seed: Seed):
        probed = self._probed(seed)
        return probed.knowledge if probed is not None else None

    def attach(self, seed: Seed) -> Seed:
        """The seed with its knowledge (or why none was measured) and its partner."""
        if self.probe is None:
            return replace(seed, unmeasured="probe_off")
        probed = self._probed(seed)
        if probed is None or probed.knowledge is None:
            return replace(seed, unmeasured=probed.reason if probed else "not_probed")
        return replace(
            seed,
            knowledge=probed.knowledge,
            partner=self.partner_of.get(seed.id),
            model_answer=probed.greedy,
        )

    def describe(self) -> dict[str, Any] | None:
        """What the manifest records: the probe, and the seeds in each category."""
        if self.probe is None:
            return None
        verdicts = (self.store.done if self.store is not None else self._verdicts).values()
        categories: Counter = Counter()
        unmeasured: Counter = Counter()
        for probed in verdicts:
            if probed.knowledge is not None:
                categories[probed.knowledge.category] += 1
            else:
                unmeasured[probed.reason] += 1
        return {
            **self.probe.sampler.describe(),
            "samples": self.probe.samples,
            "temperature": self.probe.temperature,
            "frame_sha256": self.probe.prompts.sha256("probe/frame.j2"),
            "categories": {c: categories[c] for c in CATEGORIES},
            "not_checkable": dict(sorted(unmeasured.items())),
            "pairs_unknown_to_known": len(self.partner_of),
        }

    async def aclose(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.probe is not None:
            await self.probe.sampler.aclose()
