"""What a run folder says about its run: the counts of its rows and its manifest.

`tally` is the one definition of a run's counts (the run's summary, `hedgerow report`);
`build_manifest` assembles manifest.json from the finished run: the command (redacted),
the settings, versions, template hashes, counts, token usage and timings.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from generator import __version__
from generator.values import REQUEST_FAILED

if TYPE_CHECKING:  # the orchestrator's types, named here without importing it
    from generator.run import Pipeline, RunConfig


def tally(rows: Iterable[dict[str, Any]], counts: dict[str, Counter] | None = None):
    """Counts per behavior and reason from candidate rows (one definition for all reports);
    `request_failures` counts the requests that got no answer by why."""
    kinds = ("candidates", "selected", "dropped", "skipped", "failed", "request_failures")
    counts = counts if counts is not None else {k: Counter() for k in kinds}
    for row in rows:
        behavior = row["behavior"]
        status = row.get("status")
        if status in ("skipped", "failed"):
            counts[status][f"{behavior}:{row['reason']}"] += 1
            if row["reason"] == REQUEST_FAILED:
                counts["request_failures"][row.get("detail") or "unknown"] += 1
            continue
        counts["candidates"][behavior] += 1
        if status == "selected":
            counts["selected"][behavior] += 1
        else:
            counts["dropped"][row.get("drop_reason") or "unknown"] += 1
    return counts


def plain(counts: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """Counts as the manifest writes them: plain dicts, sorted by key."""
    return {k: dict(sorted(v.items())) for k, v in counts.items()}


def settled(candidate_rows: list[dict]) -> bool:
    """A seed none of whose requests failed; an unsettled one is done again on resume."""
    return not any(r.get("reason") == REQUEST_FAILED for r in candidate_rows)


def unusable(counts: dict[str, dict[str, int]]) -> int:
    """Replies that came back but could not be used (failed rows other than no answer)."""
    return sum(v for k, v in counts["failed"].items() if not k.endswith(":" + REQUEST_FAILED))


def token_usage(stats, carried: dict[str, int]) -> dict[str, int]:
    """Tokens the run has spent, across every resume (carried in the journal)."""
    prompt = carried.get("prompt", 0) + (stats.prompt_tokens if stats else 0)
    completion = carried.get("completion", 0) + (stats.completion_tokens if stats else 0)
    return {"prompt": prompt, "completion": completion}


def request_summary(stats, config: RunConfig) -> dict[str, Any] | None:
    """What this invocation asked of the endpoint (None offline)."""
    if stats is None:
        return None
    from generator.backends.openai import estimate_cost

    out = {
        "requests": stats.requests,
        "sent": stats.sent,
        "cached": stats.cached,
        "retries": stats.retries,
        "reasks": stats.reasks,
        "failed": stats.failed,
        "errors": dict(sorted(stats.errors.items())),
        "circuit_openings": stats.circuit_openings,
    }
    if stats.estimated_prompt_tokens:
        out["estimated_prompt_tokens"] = stats.estimated_prompt_tokens
        out["estimated_prompt_cost_usd"] = estimate_cost(
            config.model, stats.estimated_prompt_tokens
        )
    return out


def versions() -> dict[str, str]:
    """The versions of hedgerow, Python and the libraries a run's output depends on."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"hedgerow": __version__, "python": platform.python_version()}
    for package in ("jinja2", "click", "datasets", "aiohttp", "rich"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def redact(argv: list[str] | None, secret: str | None = None) -> list[str] | None:
    """A command line with secret values blanked (an API key is never written anywhere)."""
    if argv is None:
        return None
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            hide = arg == "--api-key"
            out.append(arg.replace(secret, "***") if secret else arg)
    return out


def build_manifest(
    config: RunConfig,
    pipeline: Pipeline,
    command: list[str] | None,
    fingerprint: str,
    counts: dict,
    status: str,
    total: int,
    done: int,
    resumed_from: int,
    started: float,
    seconds: float,
    usage: dict[str, int],
    requests: dict[str, Any] | None,
) -> dict[str, Any]:
    """manifest.json of a run: what ran, on what, with which templates, and what it made."""
    selected = counts["selected"]
    processed = done - resumed_from
    return {
        "hedgerow": __version__,
        "status": status,
        "command": command,  # already redacted
        "config": asdict(config),
        "fingerprint": fingerprint,
        "versions": versions(),
        "templates": pipeline.template_hashes,
        "scorer": (
            {
                **pipeline.scorer.describe(),
                "reference": pipeline.reference.summary(),
                "cutoff_nll": pipeline.reference.cutoff(config.fit_threshold),
            }
            if pipeline.scorer is not None and pipeline.reference is not None
            else None
        ),
        # the target model's knowledge, measured (None with --probe none or a dry run)
        "probe": pipeline.knowledge.describe(),
        "seeds": {"total": total, "done": done, "resumed_from": resumed_from},
        "input_errors": {
            "skipped_rows": pipeline.input_error_count,
            "first": pipeline.input_errors,  # at most run.LISTED_ERRORS
        },
        "counts": counts,
        # whole pairs kept, over every behavior that pairs its rows
        "pairs": sum(
            min(selected.get(g.name, 0), selected.get(g.partner, 0))
            for g in pipeline.generators
            if g.partner
        ),
        "token_usage": usage,
        "requests": requests,
        # where the seeds were processed: this process, or a Ray cluster's workers
        "engine": pipeline.engine.describe(),
        "timings": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(seconds, 3),
            "seeds_per_second": round(processed / seconds, 2) if seconds > 0 else None,
        },
    }
