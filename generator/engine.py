"""Where a run's seeds are processed: in this process (`local`), or on a Ray cluster (`ray`).

The driver (generator.run, or `hedgerow score`) stays the output's single writer either
way: it reads the seeds, hands them out, and writes every seed's results in input order.
An engine only turns items into results (a seed into its probe, its rows, or its fit), so
the same `--seed` writes the same bytes on either engine.

With `--engine ray`, items go to Ray actors in blocks (`--ray-block`); each actor builds
its job once (generators, backend, scorer, probe: its model loaded once per actor, with
`--ray-threads` llama.cpp threads). A killed actor is restarted by Ray and its block run
again; a block's results reach the output only when the whole block came back, so
nothing is written twice. Without `--ray-address` (or RAY_ADDRESS) a local Ray starts;
with one, the driver joins that cluster. A run's stages each get a pool of their own (the
probe's, then the rows'), the first one gone before the next starts.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from generator.errors import ConfigError, HedgerowError, NotAvailableError, param

ENGINES = ("local", "ray")
INSTALL = "pip install 'hedgerow[ray]'"
JOIN_TIMEOUT = 5.0  # seconds a --ray-address has to accept a connection
KEYS = ("HEDGEROW_SCORER_API_KEY", "HEDGEROW_PROBE_API_KEY")  # read where the job is built

T = TypeVar("T")
R = TypeVar("R")


async def ordered(
    items: Iterable[T],
    submit: Callable[[T], asyncio.Future],
    window: int,
    keep: Callable[[T, Any], None],
    flush: Callable[[], None] = lambda: None,
) -> None:
    """Each item submitted, at most `window` in flight, and `keep(item, result)` called in
    input order (the next item is drawn after the results ahead of it are kept). Stopped
    early (cancelled, interrupted), the results already back are kept, in order, and the
    rest cancelled."""
    pending: deque[tuple[T, asyncio.Future]] = deque()
    try:
        for item in items:
            pending.append((item, submit(item)))
            while pending and (len(pending) >= window or pending[0][1].done()):
                flush()
                item, future = pending.popleft()
                keep(item, await future)
        flush()
        while pending:
            item, future = pending.popleft()
            keep(item, await future)
    except (asyncio.CancelledError, KeyboardInterrupt):
        while pending and pending[0][1].done() and not pending[0][1].cancelled():
            if pending[0][1].exception() is not None:
                break
            item, future = pending.popleft()
            keep(item, future.result())
        raise
    finally:
        for _, future in pending:
            future.cancel()
        await asyncio.gather(*(f for _, f in pending), return_exceptions=True)


class LocalEngine:
    """Each seed in this process, as many at a time as the run's window."""

    name = "local"
    window = 0  # the run's own window decides

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def probes(self, probe):
        """The probe's pool: none, the driver probes in turn."""
        return None

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
    """One Ray actor: its job built on the first block (and again after a restart), then
    blocks of items turned into results on an event loop of its own (kept between
    blocks: a client made in it stays usable)."""

    def __init__(self, threads, keys):
        os.environ.update(keys)  # the driver's scorer and probe keys (a node has its own env)
        if threads:
            os.environ["HEDGEROW_THREADS"] = str(threads)
        import ray

        self.job = None
        self.loop = asyncio.new_event_loop()
        node = ray.get_runtime_context().get_node_id()[:8]
        self.id = f"{node}:{os.getpid()}"  # node and process: the per-worker counts

    def process_block(self, job: list, items: list) -> tuple[str, list]:
        if self.job is None:  # `job` holds the pool's reference to it, fetched once
            import ray

            self.job = ray.get(job[0])
            self.job.setup()
        return self.id, self.loop.run_until_complete(self.job.run(items))


class Cluster:
    """The Ray cluster a run joins (or the local Ray it starts), and its actors' shape."""

    def __init__(
        self,
        address: str | None,
        workers: int | None = None,
        threads: int | None = None,
        block: int = 16,
    ):
        if block < 1:
            raise ConfigError(f"{param('ray_block')} must be at least 1")
        if workers is not None and workers < 1:
            raise ConfigError(f"{param('ray_workers')} must be at least 1")
        if threads is not None and threads < 1:
            raise ConfigError(f"{param('ray_threads')} must be at least 1")
        self.ray = _ray()
        self.ray_errors = (self.ray.exceptions.RayError,)
        self.block = block
        self.threads = threads or 1
        self._join(address or os.environ.get("RAY_ADDRESS") or None)
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        self.nodes = len(nodes)
        self.workers = self._fit(
            workers, [int(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
        )

    def _fit(self, workers: int | None, cpus: list[int]) -> int:
        """The actors to make: `workers`, or as many of `threads` CPUs each as the nodes
        hold; a one-line error for more than they hold (Ray keeps the rest waiting for a
        CPU, and the run hangs behind them). Counted from the nodes up now: an
        autoscaling cluster's nodes must be up before the run."""
        threads = self.threads
        held = sum(c // threads for c in cpus)  # an actor's CPUs are on one node
        where = f"{sum(cpus)} CPUs on {len(cpus)} node{'s' * (len(cpus) != 1)}"
        if not any(cpus):
            raise ConfigError(
                f"{param('engine')} ray: the cluster has no CPUs for workers ({where}); "
                "start a node with CPUs (`ray start --address HEAD:PORT`) and run again"
            )
        if not held:
            raise ConfigError(
                f"{param('ray_threads')} {threads}: no node of the cluster has {threads} CPUs "
                f"({where}, at most {max(cpus)} on one); lower {param('ray_threads')}"
            )
        if workers is not None and workers > held:
            raise ConfigError(
                f"{param('ray_workers')} {workers}: the cluster holds {held} workers of "
                f"{threads} CPU{'s' * (threads != 1)} ({where}), and Ray would keep the rest "
                f"waiting for a CPU; lower {param('ray_workers')}, or leave it out for {held}"
            )
        return workers or held

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

    def pool(self, job) -> Pool:
        return Pool(self, job)

    def describe(self, **pools: Pool | None) -> dict[str, Any]:
        """The manifest's engine: the cluster, and each pool's items per worker."""
        used = {name: pool for name, pool in pools.items() if pool is not None}
        counts = {f"{n}_per_worker": dict(sorted(p.per_worker.items())) for n, p in used.items()}
        return {
            "name": "ray",
            "nodes": self.nodes,
            "workers": self.workers,  # actors per stage (a restarted one keeps its place)
            "block": self.block,
            "threads_per_worker": self.threads,
            **counts,
        }


class Pool:
    """The cluster's actors running one job, fed blocks of items; each item's result is a
    future, settled when its whole block came back. The actors are made on the first
    block: a stage with nothing to do costs no model load."""

    def __init__(self, cluster: Cluster, job):
        self.cluster = cluster
        self.job = job
        self.size = cluster.block
        self.window = 2 * cluster.workers * cluster.block  # every actor's block, twice over
        self.actors: list = []
        self.idle: asyncio.Queue | None = None
        self.block: list[tuple[Any, asyncio.Future]] = []
        self.tasks: set[asyncio.Task] = set()
        self.per_worker: Counter = Counter()
        self.job_ref = None

    def _start(self) -> None:
        ray, threads = self.cluster.ray, self.cluster.threads
        worker = ray.remote(num_cpus=threads, max_restarts=-1, max_task_retries=-1)(_Worker)
        # The job goes with each block inside a list (a reference Ray does not resolve),
        # not to the constructor: a restarted actor fetches it again from the reference
        # held here for the pool's life.
        self.job_ref = ray.put(self.job)
        keys = {k: os.environ[k] for k in KEYS if os.environ.get(k)}
        self.actors = [worker.remote(threads, keys) for _ in range(self.cluster.workers)]
        self.idle = asyncio.Queue()
        for actor in self.actors:
            self.idle.put_nowait(actor)

    def submit(self, item) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.block.append((item, future))
        if len(self.block) >= self.size:
            self.flush()
        return future

    def flush(self) -> None:
        """Send the items gathered so far as one block."""
        if not self.block:
            return
        if self.idle is None:
            self._start()
        block, self.block = self.block, []
        task = asyncio.ensure_future(self._run(block))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, block) -> None:
        actor = await self.idle.get()
        try:
            items = [item for item, _ in block]
            worker, results = await actor.process_block.remote([self.job_ref], items)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the block's futures carry it to the stage awaiting them
            error = self._one_line(e)
            for _, future in block:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            self.idle.put_nowait(actor)
        self.per_worker[worker] += len(block)
        for (_, future), result in zip(block, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _one_line(self, error: Exception) -> Exception:
        """A worker's failure as the user sees it: a hedgerow error raised on the worker
        as itself, anything else (an actor that cannot start) in one line."""
        cause = getattr(error, "cause", None)
        if isinstance(cause, HedgerowError):
            return cause
        if isinstance(error, HedgerowError) and not isinstance(error, self.cluster.ray_errors):
            return error
        lines = [line for line in str(error).splitlines() if line.strip()]
        why = lines[-1].strip() if lines else type(error).__name__
        return ConfigError(
            f"{param('engine')} ray: a worker failed ({why}); check that every node has "
            "the model, the prompts folder and the same hedgerow"
        )

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for actor in self.actors:
            self.cluster.ray.kill(actor)
        self.actors = []
        self.job_ref = None


class _Rows:
    """A run's rows job: each seed (with what the probe measured attached) through a
    pipeline of the worker's own."""

    def __init__(self, config, api_key, reference, corpus):
        self.config, self.api_key, self.reference, self.corpus = config, api_key, reference, corpus

    def setup(self) -> None:
        from generator import scoring
        from generator.run import Pipeline

        # the seeds arrive probed: the worker's pipeline has no probe of its own
        pipeline = Pipeline(replace(self.config, probe="none", engine="local"), self.api_key)
        pipeline.corpus = self.corpus
        pipeline.reference = scoring.Reference(self.reference) if self.reference else None
        pipeline.connect(None)
        self.pipeline = pipeline
        self.by_name = {g.name: g for g in pipeline.generators}

    async def run(self, items):
        return [
            await self.pipeline.process(seed, [self.by_name[n] for n in names])
            for seed, names in items
        ]


class _Probes:
    """A run's probe job: each seed asked of the worker's own copy of the target model,
    with the driver's exemplars (so each seed's frame is the one the driver would make)."""

    def __init__(self, config, api_key, exemplars):
        self.config, self.api_key, self.exemplars = config, api_key, exemplars

    def setup(self) -> None:
        from generator.run import Pipeline

        self.probe = Pipeline(replace(self.config, engine="local"), self.api_key).knowledge.probe
        self.probe.pool = list(self.exemplars)

    async def run(self, seeds):
        return [await self.probe.probe(seed) for seed in seeds]


class RayEngine:
    """A run's seeds to a Ray cluster: the probe's pool, then the rows' pool."""

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
        self.pipeline = pipeline
        self.cluster = Cluster(
            config.ray_address, config.ray_workers, config.ray_threads, config.ray_block
        )
        self.rows: Pool | None = None
        self.probed: Pool | None = None
        self.window = 0

    def _api_key(self):
        settings = self.pipeline.settings
        return settings.api_key if settings is not None else None

    def probes(self, probe) -> Pool:
        """The probe's pool, with the exemplars the driver drew from every seed."""
        self.probed = self.cluster.pool(_Probes(self.pipeline.config, self._api_key(), probe.pool))
        return self.probed

    def start(self) -> None:
        """Make the rows' pool, once the driver has what its actors need: the input's
        vocabulary and the scored reference."""
        pipeline = self.pipeline
        reference = tuple(pipeline.reference.nll) if pipeline.reference is not None else None
        job = _Rows(pipeline.config, self._api_key(), reference, pipeline.corpus)
        self.rows = self.cluster.pool(job)
        self.window = self.rows.window

    def submit(self, seed, wanted) -> asyncio.Future:
        return self.rows.submit((seed, tuple(g.name for g in wanted)))

    def flush(self) -> None:
        if self.rows is not None:
            self.rows.flush()

    async def aclose(self) -> None:
        for pool in (self.probed, self.rows):
            if pool is not None:
                await pool.aclose()

    def describe(self) -> dict[str, Any]:
        return self.cluster.describe(seeds=self.rows, probes=self.probed)


def check(name: str) -> None:
    """A one-line error for an engine that is not one of ENGINES."""
    if name not in ENGINES:
        raise ConfigError(f"{param('engine')} {name}: unknown engine; use {' or '.join(ENGINES)}")


def make(pipeline):
    """The engine the run's config names."""
    name = pipeline.config.engine
    check(name)
    return RayEngine(pipeline) if name == "ray" else LocalEngine(pipeline)
