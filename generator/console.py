"""What a command shows while it works and when it is done: the progress bar, the stop on
Ctrl-C or SIGTERM (exit 130, finished work kept), and the summaries of a run and a scoring.

Only `cli.py` uses this: the library never prints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import click


class Bar:
    """A rich progress bar with rate and ETA, on stderr, only when it is a terminal."""

    def __init__(self, label: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        console = Console(stderr=True)
        self.enabled = console.is_terminal

        class Rate(ProgressColumn):
            def render(self, task):
                return Text(f"{task.speed or 0:.1f} seeds/s")

        class Requests(ProgressColumn):
            def render(self, task):
                return Text(task.fields.get("requests", ""))

        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            Requests(),
            console=console,
            disable=not self.enabled,
        )
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start(self, total: int, done: int) -> None:
        self.task = self.progress.add_task("seeds", total=total, completed=done)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)

    def say(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, requests=text)

    def note(self, stats) -> None:
        errors = sum(stats.errors.values())
        text = (
            f"{stats.sent} sent {stats.cached} cached "
            f"{stats.prompt_tokens + stats.completion_tokens:,} tokens "
            f"{errors} errors {stats.failed} failed"
        )
        self.progress.update(self.task, requests=text)


GRACE = 1.0  # seconds a stop signal waits for the run to reach an await before forcing


class Stop:
    """What Ctrl-C and SIGTERM do while a command works (see `stoppable`).

    The first signal stops the work where it is safe to: inside the event loop, by a
    KeyboardInterrupt raised between two task steps (so no step, and no seed, is cut in
    half; asyncio then cancels every task at its await, and the in-process scorer stops
    at its next llama_decode); outside it, by a KeyboardInterrupt right where the code
    is, as Python does. If the loop has not got there within GRACE seconds it is stuck
    in something that does not return (a blocking read), and the signal is sent again to
    the main thread, which raises KeyboardInterrupt out of that call. A second signal
    from outside exits at once: the run folder keeps what its journal records, like
    after a kill.
    """

    def __init__(self, kept: str):
        self.message = f"interrupted: {kept}; run the same command to resume"
        self.signals = 0
        self.forcing = False
        self.delivered = False  # the forced KeyboardInterrupt was raised
        self.active = True
        self.lock = threading.RLock()  # re-entered by a signal handler on the main thread
        self.reached = threading.Event()  # the loop ran the interrupt

    def handle(self, signum, frame) -> None:
        asyncio = sys.modules.get("asyncio")  # not imported: no loop can be running
        loop = asyncio and asyncio._get_running_loop()
        if self.forcing:  # our own signal, sent by `_watch`: out of the call that blocks
            self.forcing = False
            self.delivered = True
            task = loop and asyncio.current_task(loop)
            if task is not None:  # it ends with our KeyboardInterrupt: nothing to report
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise KeyboardInterrupt
        self.signals += 1
        if self.signals > 1 or not self.active:
            self.exit_now()
        if loop is None:
            raise KeyboardInterrupt
        try:
            loop.call_soon_threadsafe(self._interrupt)
        except RuntimeError:  # the loop is closing
            raise KeyboardInterrupt from None
        threading.Thread(target=self._watch, args=(signum,), daemon=True).start()

    def _interrupt(self) -> None:
        with self.lock:  # either this or `_watch` stops the work, never both
            if self.forcing or self.delivered:
                return
            self.reached.set()
        raise KeyboardInterrupt

    def _watch(self, signum: int) -> None:
        self.reached.wait(GRACE)
        with self.lock:
            if self.active and not self.reached.is_set():
                self.forcing = True
                signal.pthread_kill(threading.main_thread().ident, signum)

    def exit_now(self) -> None:
        with self.lock:
            self.active = False
        if sys.stderr.isatty():
            sys.stderr.write("\x1b[?25h\n")  # the progress bar hid the cursor
        sys.stderr.write(self.message + "\n")
        sys.stderr.flush()
        os._exit(130)

    def stopped(self) -> None:
        with self.lock:  # no forced signal after this: the main thread is leaving
            self.active = False


@contextlib.contextmanager
def stoppable(kept: str):
    """Ctrl-C and SIGTERM stop the work inside promptly, wherever it waits: exit 130,
    saying what is kept (`Stop` says how)."""
    stop = Stop(kept)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if main_thread:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup`, `cmd &`: left so
                previous[signum] = signal.signal(signum, stop.handle)
    try:
        yield
    except KeyboardInterrupt:
        stop.stopped()
        click.echo(stop.message, err=True)
        sys.exit(130)
    finally:
        stop.stopped()
        for signum, handler in previous.items():
            if handler is not None:  # None: not set from Python, nothing to put back
                signal.signal(signum, handler)


def print_summary(result) -> None:
    counts = result.counts
    where = "dry run, nothing written" if result.path is None else str(result.path)
    if result.resumed_from:
        where += f" (resumed after {result.resumed_from} seeds)"
    if result.retried:
        where += f" (redid {result.retried} seeds from the first whose requests had failed)"
    click.echo(f"{result.seeds} seeds -> {where}")
    behaviors = sorted(set(counts["candidates"]) | {k.split(":")[0] for k in counts["skipped"]})
    for behavior in behaviors:
        skipped = sum(v for k, v in counts["skipped"].items() if k.startswith(behavior + ":"))
        click.echo(
            f"  {behavior:<10} {counts['selected'].get(behavior, 0):>6} selected"
            f"  {counts['candidates'].get(behavior, 0):>6} candidates"
            f"  {skipped:>6} seeds skipped"
        )
    if counts["dropped"]:
        reasons = ", ".join(f"{k} {v}" for k, v in counts["dropped"].items())
        click.echo(f"  dropped: {reasons}")
    if counts.get("failed"):
        reasons = ", ".join(f"{k} {v}" for k, v in counts["failed"].items())
        click.echo(f"  failed (see candidates.jsonl): {reasons}")
    print_request_failures(result)
    skipped_rows = (result.manifest.get("input_errors") or {}).get("skipped_rows")
    if skipped_rows:
        click.echo(f"  input rows skipped (--on-error skip; see manifest.json): {skipped_rows}")
    if (result.manifest.get("engine") or {}).get("name") == "ray":
        print_engine(result.manifest["engine"])
    r = result.requests
    if r is not None:
        click.echo(
            f"  requests: {r['requests']} ({r['sent']} sent, {r['cached']} from the cache, "
            f"{r['retries']} retries, {r['reasks']} re-asks, {r['failed']} failed)"
        )
        if result.path is None:
            cost = r.get("estimated_prompt_cost_usd")
            click.echo(
                f"  would send {r['requests'] - r['cached']} requests, about "
                f"{r.get('estimated_prompt_tokens', 0):,} prompt tokens (characters / 4)"
                + (f", about ${cost:.2f} of input" if cost is not None else "")
                + "; completions add at most max_tokens each"
            )
        else:
            usage = result.manifest.get("token_usage", {})
            click.echo(
                f"  tokens: {usage.get('prompt', 0):,} prompt, "
                f"{usage.get('completion', 0):,} completion"
            )


def print_request_failures(result) -> None:
    """Requests that got no answer, by why, and that the same command asks them again."""
    failures = result.request_failures
    if not failures:
        return
    ranked = sorted(failures.items(), key=lambda kv: -kv[1])
    why = ", ".join(f"{cause} {n}" for cause, n in ranked[:3])
    if len(ranked) > 3:
        why += f", {sum(n for _, n in ranked[3:])} other"
    click.echo(
        f"  requests without an answer: {sum(failures.values())} ({why}); run the same "
        "command again to ask them again (finished work is kept)",
        err=True,
    )


def print_engine(engine: dict) -> None:
    """Where a Ray run's work went: the cluster, and the items each worker did."""
    counts = {k: v for k, v in engine.items() if k.endswith("_per_worker") and isinstance(v, dict)}
    nodes, threads = engine["nodes"], engine["threads_per_worker"]
    click.echo(
        f"  engine: ray, {engine['workers']} workers on {nodes} node{'s' * (nodes != 1)}"
        f" ({threads} thread{'s' * (threads != 1)} each, blocks of {engine['block']})"
    )
    for name, per_worker in counts.items():
        spread = ", ".join(f"{w} {n}" for w, n in per_worker.items())
        click.echo(f"    {name.removesuffix('_per_worker')} per worker: {spread}")


def print_knowledge(result) -> None:
    """Rows per SliCK category, the Unknown share named for what it teaches, and the rows
    that could not be checked, by why; every share is of all rows."""

    def share(n: int) -> str:
        return f"{n / result.rows:>4.0%} ({n} {'row' if n == 1 else 'rows'})"

    checkable = sum(result.knowledge.values())
    click.echo(f"  knowledge of the model, {checkable} rows checked:")
    for category, n in result.knowledge.items():
        line = f"    {category:<13} {share(n)}"
        if category == "Unknown":
            line += (
                ": examples the model does not know; fine-tuning on them teaches it to "
                "make things up (SliCK)"
            )
        click.echo(line)
    if result.not_checkable:
        why = ", ".join(f"{reason} {n}" for reason, n in result.not_checkable.items())
        unchecked = result.rows - checkable
        click.echo(f"    {'not checkable':<13} {share(unchecked)}: {why}")


def print_fit(result) -> None:
    if result.failed:
        why = (result.failure or "").split("; ")[0]
        if result.mean_nll is None:
            raise click.ClickException(
                f"{result.path}: no row got a finite score ({why}); fix the scorer, then "
                "score again with --overwrite"
            )
        click.echo(f"  {result.failed} rows not scored (their fit.error says why): {why}", err=True)
    if result.mean_nll is None:
        click.echo("  no row had a response to score")
        return
    click.echo(f"  {result.scored} scored, mean nll {result.mean_nll:.3f} nats/token")
    click.echo("  least natural to the base model:")
    for row in result.foreign:
        prompt = " ".join(row["prompt"].split())
        click.echo(f"    row {row['row']:>6}  nll {row['nll']:.3f}  {prompt[:70]}")
