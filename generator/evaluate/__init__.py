"""`hedgerow eval`: does a model still decline what it cannot know, answer what it can,
state a confidence that means something, and notice its own slips?

    inputs ─► sets (probe items) ─► ask (answers.jsonl) ─► verdicts ─► figures ─► page

`evaluate(config)` is the library call behind the command: it never prints, and returns
an `EvalResult`; `eval.json` (every item, answer, parse and verdict, and the figures)
and `eval.html` are written in the eval folder. `compare(a, b)` puts two evals side by
side with each change, its 95% interval and whether that excludes zero.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generator import jsontext, outputs
from generator.config import DEFAULT_CONCURRENCY
from generator.errors import ConfigError, EndpointError, InputError, RunFolderError, param
from generator.evaluate import figures as _figures
from generator.evaluate.ask import ANSWERS, LOCK, TEMPLATES, AnswerStore, Asker, Framing
from generator.evaluate.sets import Item, Sets, from_file, from_run, from_seeds, is_run_folder
from generator.evaluate.verdicts import Verdicts
from generator.templates import Prompts

RESULT, PAGE = "eval.json", "eval.html"

COMPARE = "compare.html"
_OURS = (ANSWERS, RESULT, PAGE, COMPARE, "cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm")


@dataclass(frozen=True)
class EvalConfig:
    """Everything that decides an eval."""

    seeds: tuple[str, ...] = ()  # seed files, or run folders (their unselected candidates)
    unanswerable: tuple[str, ...] = ()
    answerable: tuple[str, ...] = ()
    out: str | None = None
    backend: str = "local"  # local (embedded, gguf:PATH) | openai
    model: str | None = None  # local: embedded (default) or gguf:PATH; openai: its name
    base_urls: tuple[str, ...] = ()
    api: str = "chat"  # openai: chat | completions (a base model behind the endpoint)
    concurrency: int | None = None
    timeout: float = 120.0
    retries: int = 6
    limit: int | None = None  # rows read from each input
    seed: int = 0
    prompts: str | None = None
    prompt_column: str | None = None
    response_column: str | None = None


@dataclass
class EvalResult:
    path: Path  # the eval folder
    figures: dict[str, dict[str, Any]]
    sets: dict[str, int]
    model: dict[str, Any]
    asked: int  # questions sent to the model by this run
    reused: int  # answered before (a resumed or repeated eval)
    failures: dict[str, int] = field(default_factory=dict)  # no answer, by why


def _asker(config: EvalConfig, prompts: Prompts, api_key: str | None) -> Asker:
    """The model under test, from the flags; an error names the flag to fix."""
    framing = Framing(prompts)
    if config.backend == "openai":
        from generator import backends
        from generator.backends.openai import Settings
        from generator.evaluate.ask import ChatAsker, CompletionAsker

        if not config.model or config.model == "embedded" or config.model.startswith("gguf:"):
            raise ConfigError(
                f"{param('backend')} openai needs {param('model')} NAME (the endpoint's model id)"
            )
        if config.api not in ("chat", "completions"):
            raise ConfigError(f"{param('api')} must be chat or completions")
        settings = Settings(
            model=config.model,
            base_urls=config.base_urls,
            api_key=api_key,
            concurrency=config.concurrency or DEFAULT_CONCURRENCY,
            timeout=config.timeout,
            retries=config.retries,
            reasks=0,
        )
        backend = backends.get("openai", prompts=prompts, settings=settings, seed=config.seed)
        model = {
            "backend": "openai",
            "api": config.api,
            "model": config.model,
            "endpoint": backend.endpoint,
        }
        kind = ChatAsker if config.api == "chat" else CompletionAsker
        return kind(framing, model, backend)
    if config.backend != "local":
        raise ConfigError(f"{param('backend')} {config.backend}: use local or openai")
    for flag, value in (
        (param("base_urls"), config.base_urls),
        (param("concurrency"), config.concurrency),
    ):
        if value:
            raise ConfigError(
                f"{flag} is for {param('backend')} openai; add {param('backend')} openai"
            )
    spec = config.model or "embedded"
    if spec != "embedded" and not (spec.startswith("gguf:") and spec[5:]):
        raise ConfigError(
            f"{param('model')} {spec}: a local model is embedded or gguf:PATH; a model behind an "
            f"endpoint needs {param('backend')} openai {param('base_urls')} URL"
        )
    from generator.evaluate.ask import LocalAsker
    from generator.scoring import CONTEXT, embedded_model
    from generator.scoring.model import LocalModel

    path = embedded_model() if spec == "embedded" else Path(spec[5:]).expanduser()
    local = LocalModel(path, CONTEXT, f"{param('model')} {spec}")
    model = {"backend": "local", "model": spec, "file": path.name, "bytes": path.stat().st_size}
    return LocalAsker(framing, model, local)


def build_sets(config: EvalConfig, prompts: Prompts) -> Sets:
    """Every item the eval asks, from the seeds (or run folders) and the probe files."""
    from generator.io import iter_seeds

    sets = Sets()
    files = []
    for name in config.seeds:
        if is_run_folder(Path(name)):
            from_run(sets, Path(name), prompts, config.limit)
        else:
            files.append(name)
    for name in files:  # each file's own --limit rows
        seeds = list(iter_seeds([name], config.prompt_column, config.response_column, config.limit))
        from_seeds(sets, seeds, prompts, config.seed)
    for flag, names in (
        (param("unanswerable"), config.unanswerable),
        (param("answerable"), config.answerable),
    ):
        for name in names:
            from_file(sets, Path(name), flag, prompts, config.limit)
    if not sets.items:
        raise InputError(
            "nothing to ask: no seed gave a made-up twin, a checkable reference or a "
            f"near-miss; add seeds with short answers or final numbers, or {param('unanswerable')}/"
            f"{param('answerable')} files"
        )
    return sets


def _fingerprint(config: EvalConfig, model: dict[str, Any], prompts: Prompts) -> str:
    from generator.io import input_stats

    inputs = input_stats([*config.seeds, *config.unanswerable, *config.answerable])
    settings = asdict(config)
    for name in ("out", "concurrency", "timeout", "retries"):  # how, not what, is asked
        settings.pop(name)
    templates = {name: prompts.sha256(name) for name in TEMPLATES}
    blob = jsontext.dumps(
        {"inputs": inputs, "settings": settings, "model": model, "templates": templates},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _folder(config: EvalConfig, fingerprint: str) -> tuple[Path, Path | None]:
    """The eval folder, checked and made; and the highest folder this made (None if the
    folder was there), to remove if the eval leaves nothing in it."""
    if config.out:
        path = Path(config.out)
    else:
        first = (config.seeds or config.unanswerable or config.answerable or ("eval",))[0]
        stem = Path(first).name.split(".")[0] or "eval"
        path = Path("outputs") / f"eval-{stem}-{fingerprint[:8]}"
    outputs.check_target(
        path, "run", inputs=[*config.seeds, *config.unanswerable, *config.answerable]
    )
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if not _ours(p.name))
        if foreign:
            raise ConfigError(
                f"-o {path} holds files hedgerow eval did not write ({', '.join(foreign[:3])}); "
                "choose a new or empty folder"
            )
    made = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        made = folder
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise outputs.write_error(path, e, "make the folder") from None
    return path, made


def _remove(path: Path, made: Path | None) -> None:
    """An eval that got no answer leaves nothing behind: its files, and the folders it
    made (only when they are empty then)."""
    for name in (*_OURS, LOCK):
        (path / name).unlink(missing_ok=True)
    if made is not None:
        for folder in (path, *path.parents):
            try:
                folder.rmdir()
            except OSError:
                break
            if folder == made:
                break


def _ours(name: str) -> bool:
    """A file an eval writes (a `.NAME.tmp` or `.NAME.lock`: one it was writing when it was
    killed)."""
    stem, _, suffix = name[1:].rpartition(".")
    return name in (*_OURS, LOCK) or (
        name[:1] == "." and suffix in ("tmp", "lock") and stem in _OURS
    )


async def _ask_all(
    items: list[Item], keys: dict[str, str], asker: Asker, store: AnswerStore, progress
) -> dict[str, str]:
    """Ask every item without an answer, `asker.concurrency` at a time; returns the
    failures (item id -> why)."""
    failed: dict[str, str] = {}
    todo = iter([(item, keys[item.id]) for item in items if store.get(keys[item.id]) is None])

    async def worker() -> None:
        for item, key in todo:  # one iterator shared by every worker
            reply = await asker.ask(item)
            if reply.text is None:
                failed[item.id] = reply.error or "no answer"
            else:
                store.add(key, item, reply.text)
            if progress:
                progress.advance()
                if asker.stats is not None:
                    progress.note(asker.stats)

    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, asker.concurrency))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asker.aclose()
    return failed


def evaluate(
    config: EvalConfig,
    progress=None,
    command: list[str] | None = None,
    overwrite: bool = False,
    api_key: str | None = None,
) -> EvalResult:
    """Run (or resume) one eval; returns its folder and figures."""
    prompts = Prompts(config.prompts)
    prompts.check_banks(list(TEMPLATES))
    verdicts = Verdicts(prompts)  # every cue and table compiled before any work
    asker = _asker(config, prompts, api_key)
    try:
        sets = build_sets(config, prompts)
        items = sets.items
        keys = {item.id: asker.key(item) for item in items}  # every template renders
        path, made = _folder(config, _fingerprint(config, asker.model, prompts))
        store = AnswerStore(path, asker.model, start_over=_OURS if overwrite else ())
    except BaseException:
        asyncio.run(asker.aclose())
        raise
    reused = sum(1 for item in items if store.get(keys[item.id]) is not None)
    try:
        asker.open(path)
        if progress:
            progress.start(len(items), reused)
        failed = asyncio.run(_ask_all(items, keys, asker, store, progress))
    finally:
        store.close()
    causes = dict(Counter(failed.values()).most_common())
    texts = {item.id: store.get(keys[item.id]) for item in items}
    if all(text is None for text in texts.values()):
        if not store.answers:
            _remove(path, made)
        raise EndpointError(asker.failed_message(len(failed), causes))
    rows = [_row(item, texts[item.id], failed.get(item.id), verdicts) for item in items]
    result = EvalResult(
        path,
        _figures.compute(rows),
        sets.counts(),
        asker.model,
        asked=len(items) - reused - len(failed),
        reused=reused,
        failures=causes,
    )
    from generator.manifest import redact

    _write_result(result, rows, sets, redact(command, api_key))
    if not any((text or "").strip() for text in texts.values()):
        raise EndpointError(
            f"the model answered all {len(rows) - len(failed)} questions with empty text, so "
            f"there is nothing to judge (see {path / RESULT}); check {param('model')} and "
            "its prompt "
            "format"
        )
    return result


def _write_result(result: EvalResult, rows: list[dict], sets: Sets, command) -> None:
    """eval.json (every item, answer, parse and verdict; the figures) and eval.html."""
    from generator.evaluate.page import write_page

    data = {
        "model": result.model,
        "command": command,
        "sets": result.sets,
        "skipped": dict(sorted(sets.skipped.items())),
        "unanswered": result.failures,
        "figures": result.figures,
        "reliability": _figures.reliability(*_figures.calibrated(rows)),
        "items": rows,
    }
    _write(result.path / RESULT, jsontext.dumps(data, indent=1, ensure_ascii=False) + "\n")
    _write(result.path / PAGE, write_page(data, result.path))


def _row(item: Item, text: str | None, error: str | None, verdicts: Verdicts) -> dict:
    row = item.to_row()
    if text is None:
        return {
            **row,
            "status": "failed",
            "error": error or "no answer",
            "answer": None,
            "parse": None,
            "verdict": None,
        }
    parse, verdict = verdicts.judge(item, text)
    return {
        **row,
        "status": "answered",
        "answer": text,
        "parse": parse.to_dict(),
        "verdict": verdict,
    }


def _write(target: Path, text: str) -> None:
    """Write one file whole (a reader never sees half of it)."""
    outputs.write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------- compare


@dataclass
class Comparison:
    a: Path
    b: Path
    path: Path  # the page written
    changes: dict[str, dict[str, Any]]  # figure -> {"a", "b", "change", "by"}
    common: int  # questions both evals asked
    questions: tuple[int, int]


def load(folder: Path | str) -> dict[str, Any]:
    """An eval folder's eval.json, or a one-line error saying what to pass."""
    import json

    path = Path(folder) / RESULT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("figures"), dict):
            raise ValueError("no figures")
    except FileNotFoundError:
        raise RunFolderError(
            f"{folder}: no {RESULT}; pass a folder written by hedgerow eval"
        ) from None
    except (OSError, ValueError) as e:
        raise RunFolderError(f"{path}: cannot read it ({e}); run its eval again") from None
    return data


def compare(a: Path | str, b: Path | str, out: Path | str | None = None) -> Comparison:
    """Eval B against eval A (before and after fine-tuning): each figure's change, its
    95% interval and whether it excludes zero; the page goes to `out` (default B's
    folder, compare.html)."""
    from generator.evaluate.page import write_compare

    da, db = load(a), load(b)
    ia, ib = da.get("items") or [], db.get("items") or []
    changes = {}
    for name in da["figures"]:
        if name not in db["figures"]:
            continue
        fa, fb = da["figures"][name], db["figures"][name]
        entry = {
            "a": fa,
            "b": fb,
            "change": _figures.change(name, da["figures"], db["figures"], ia, ib),
        }
        groups = sorted(set(fa.get("by") or {}) & set(fb.get("by") or {}))
        entry["by"] = {g: _figures.change(g, fa["by"], fb["by"], ia, ib) for g in groups}
        changes[name] = entry
    read = [Path(a) / RESULT, Path(b) / RESULT]
    target = outputs.check_target(Path(out) if out else Path(b) / COMPARE, inputs=read)
    common = len({i["id"] for i in ia} & {i["id"] for i in ib})
    comparison = Comparison(Path(a), Path(b), target, changes, common, (len(ia), len(ib)))
    _write(target, write_compare(comparison, da, db))
    return comparison
