"""Where a run's seeds are processed: in this process (`local`), or on a Ray cluster (`ray`).

The driver (generator.run) stays the run folder's single writer either way: it reads the
seeds, attaches what the probe measured, scores the reference, and writes every seed's
rows in input order. An engine only turns a seed into its rows (generate, validate,
score, select), so the same `--seed` writes the same bytes on either engine.

With `--engine ray`, seeds go to Ray actors in blocks (`--ray-block`); each actor holds a
pipeline of its own (generators, backend, scorer: its model loaded once per actor, with
`--ray-threads` llama.cpp threads). A killed actor is restarted by Ray and its block run
again; a block's rows reach the run folder only when the whole block came back, so
nothing is written twice. Without `--ray-address` (or RAY_ADDRESS) a local Ray starts;
with one, the driver joins that cluster.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from generator.errors import ConfigError, NotAvailableError, param

ENGINES = ("local", "ray")
INSTALL = "pip install 'hedgerow[ray]'"
JOIN_TIMEOUT = 5.0  # seconds a --ray-address has to accept a connection


class LocalEngine:
    """Each seed in this process, as many at a time as the run's window."""

    name = "local"
    window = 0  # the run's own window decides

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def start(self) -> None:
        pass

    def submit(self, seed, wanted) -> asyncio.Future:
        return asyncio.ensure_future(self.pipeline.process(seed, wanted))

    def flush(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"name": "local"}


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"{param('engine')} ray needs Ray, which is not installed: {INSTALL}"
        ) from None
    return ray


class _Worker:
    """One Ray actor: a pipeline of its own, turning blocks of seeds into their rows."""

    def __init__(self, config, api_key, reference, corpus, threads):
        if threads:
            os.environ["HEDGEROW_THREADS"] = str(threads)
        from generator import scoring
        from generator.run import Pipeline

        # the driver probes, and attaches what it measured to each seed it sends
        self.pipeline = Pipeline(replace(config, probe="none", engine="local"), api_key)
        self.pipeline.corpus = corpus
        self.pipeline.reference = scoring.Reference(reference) if reference else None
        self.pipeline.connect(None)
        import ray

        node = ray.get_runtime_context().get_node_id()[:8]
        self.id = f"{node}:{os.getpid()}"  # node and process: the manifest's per-worker counts

    def process_block(self, items: Sequence[tuple[Any, tuple[str, ...]]]):
        pipeline = self.pipeline
        by_name = {g.name: g for g in pipeline.generators}

        async def block():
            return [
                await pipeline.process(seed, [by_name[n] for n in names]) for seed, names in items
            ]

        return self.id, asyncio.run(block())


class RayEngine:
    """Seeds to a pool of Ray actors in blocks; rows back in input order."""

    name = "ray"

    def __init__(self, pipeline):
        config = pipeline.config
        if config.backend != "offline":
            raise NotAvailableError(
                f"{param('engine')} ray runs {param('backend')} offline for now: an endpoint's "
                "response cache lives in the driver's run folder; run an endpoint with "
                f"{param('engine')} local, which spreads requests over every "
                f"{param('base_urls')}"
            )
        if config.ray_block < 1:
            raise ConfigError(f"{param('ray_block')} must be at least 1")
        if config.ray_workers is not None and config.ray_workers < 1:
            raise ConfigError(f"{param('ray_workers')} must be at least 1")
        self.ray = _ray()
        self.pipeline = pipeline
        self.config = config
        self._join(config.ray_address or os.environ.get("RAY_ADDRESS") or None)
        self.actors: list = []
        self.idle: asyncio.Queue | None = None
        self.block: list[tuple[Any, asyncio.Future]] = []
        self.tasks: set[asyncio.Task] = set()
        self.per_worker: Counter = Counter()
        self.nodes = 0
        self.window = 0  # seeds in flight: every actor's block, twice over

    def start(self) -> None:
        """Make the actors, once the driver has what they need: the input's vocabulary
        and the scored reference."""
        ray, config = self.ray, self.config
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.nodes = len(nodes)
        cpus = int(sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)) or 1
        threads = config.ray_threads or 1
        count = config.ray_workers or max(1, cpus // threads)
        worker = ray.remote(num_cpus=threads, max_restarts=-1, max_task_retries=-1)(_Worker)
        pipeline = self.pipeline
        reference = tuple(pipeline.reference.nll) if pipeline.reference is not None else None
        api_key = pipeline.settings.api_key if pipeline.settings is not None else None
        self.actors = [
            worker.remote(config, api_key, reference, pipeline.corpus, threads)
            for _ in range(count)
        ]
        self.window = 2 * count * config.ray_block
        self.idle = asyncio.Queue()
        for actor in self.actors:
            self.idle.put_nowait(actor)

    def _join(self, address: str | None) -> None:
        """Join the cluster at `address` (or start a local Ray) before any work, or a
        one-line error: an address that does not answer is refused in seconds (Ray
        itself waits minutes)."""
        if address and address != "auto":
            host, _, port = address.removeprefix("ray://").rpartition(":")
            try:
                socket.create_connection((host or "127.0.0.1", int(port)), JOIN_TIMEOUT).close()
            except (OSError, ValueError) as e:
                raise ConfigError(
                    f"{param('ray_address')} {address}: no Ray cluster answers there "
                    f"({getattr(e, 'strerror', None) or e}); start one with `ray start "
                    "--head`, or check the address"
                ) from None
        try:
            self.ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
                configure_logging=False,
            )
        except Exception as e:  # ConnectionError, or Ray's own for a bad address
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                f"{param('ray_address')} {address or 'auto'}: cannot join the Ray cluster "
                f"({first}); start it with `ray start --head`, or check the address"
            ) from None

    def submit(self, seed, wanted) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.block.append(((seed, tuple(g.name for g in wanted)), future))
        if len(self.block) >= self.config.ray_block:
            self.flush()
        return future

    def flush(self) -> None:
        """Send the seeds gathered so far as one block."""
        if not self.block:
            return
        block, self.block = self.block, []
        task = asyncio.ensure_future(self._run(block))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, block) -> None:
        actor = await self.idle.get()
        try:
            worker, results = await actor.process_block.remote([item for item, _ in block])
        except BaseException as e:
            for _, future in block:
                if not future.done():
                    future.set_exception(e if isinstance(e, Exception) else RuntimeError(e))
            raise
        finally:
            self.idle.put_nowait(actor)
        self.per_worker[worker] += len(block)
        for (_, future), rows in zip(block, results, strict=True):
            if not future.done():
                future.set_result(rows)

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []

    def describe(self) -> dict[str, Any]:
        return {
            "name": "ray",
            "nodes": self.nodes,
            "workers": len(self.per_worker) or len(self.actors),
            "block": self.config.ray_block,
            "threads_per_worker": self.config.ray_threads or 1,
            "seeds_per_worker": dict(sorted(self.per_worker.items())),
        }


def make(pipeline):
    """The engine the run's config names."""
    name = pipeline.config.engine
    if name == "local":
        return LocalEngine(pipeline)
    if name == "ray":
        return RayEngine(pipeline)
    raise ConfigError(f"{param('engine')} {name}: unknown engine; use {' or '.join(ENGINES)}")
