"""Putting the questions to a model, and keeping every answer.

Three askers, one interface (`ask(item) -> Reply`):

- `ChatAsker` (`--backend openai`): the chat templates (`eval/chat.j2`, and for a
  recovery probe the answer so far as the assistant's turn, then `eval/recovery.j2`),
  sent through the openai backend: its concurrency, throttle, retries and response
  cache (`cache.sqlite` in the eval folder);
- `CompletionAsker` (`--backend openai --api completions`): a base model behind an
  endpoint, sent the few-shot frame (`eval/frame.j2`, `eval/recovery_frame.j2`) through
  the same backend, greedy, cut at the bank's stops;
- `LocalAsker` (`--model embedded|gguf:PATH`): the same frame, decoded greedily
  in-process by llama.cpp (`probe.sampling.greedy`).

Every answer goes to `answers.jsonl` (`AnswerStore`) under a key that hashes exactly
what was asked and of which model, before the figures read it: a killed eval continues
with the questions that have no answer, and a re-run asks nothing twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator import jsontext, outputs
from generator.errors import RunFolderError
from generator.evaluate.sets import RECOVERY, Item
from generator.templates import Prompts

BANK = "eval/eval.toml"
TEMPLATES = (
    BANK,
    "eval/confidence.toml",
    "eval/chat.j2",
    "eval/recovery.j2",
    "eval/frame.j2",
    "eval/recovery_frame.j2",
)
ANSWERS = "answers.jsonl"
LOCK = ".lock"


@dataclass(frozen=True)
class Reply:
    """What came back: the model's text, or why nothing did (asked again on a re-run)."""

    text: str | None
    error: str | None = None


class Framing:
    """How an item is put to a chat model (messages) or a base model (a frame)."""

    def __init__(self, prompts: Prompts):
        self.prompts = prompts
        self.bank = prompts.bank(BANK)

    def messages(self, item: Item) -> list[dict[str, str]]:
        if item.set == RECOVERY:
            return [
                {"role": "user", "content": item.question},
                {"role": "assistant", "content": item.prefix or ""},
                {"role": "user", "content": self.prompts.render("eval/recovery.j2")},
            ]
        text = self.prompts.render("eval/chat.j2", question=item.question)
        return [{"role": "user", "content": text}]

    def frame(self, item: Item) -> str:
        if item.set == RECOVERY:
            return self.prompts.render(
                "eval/recovery_frame.j2",
                exemplars=self.bank["recovery_exemplars"],
                question=item.question,
                prefix=item.prefix or "",
            )
        return self.prompts.render(
            "eval/frame.j2", exemplars=self.bank["exemplars"], question=item.question
        )

    def max_tokens(self, item: Item) -> int:
        """A base model's answer length: a recovery continues a worked answer."""
        key = "recovery_max_tokens" if item.set == RECOVERY else "max_tokens"
        return self.bank["frame"][key]

    @property
    def stops(self) -> list[str]:
        return list(self.bank["frame"]["stops"])


def request_key(model: dict[str, Any], asked: Any) -> str:
    """The key of one answer: a hash of the model and exactly what it was asked."""
    blob = jsontext.dumps({"model": model, "asked": asked}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Asker:
    """Puts items to one model."""

    concurrency = 1
    stats: Any = None  # the backend's request counts, for the progress line

    def __init__(self, framing: Framing, model: dict[str, Any]):
        self.framing = framing
        self.model = model  # who answers: part of every answer's key, and of eval.json

    def request(self, item: Item) -> Any:
        raise NotImplementedError

    def key(self, item: Item) -> str:
        return request_key(self.model, self.request(item))

    def open(self, folder: Path) -> None:
        """Get ready to ask, keeping whatever it keeps in the eval folder."""

    async def ask(self, item: Item) -> Reply:
        raise NotImplementedError

    def failed_message(self, failed: int, causes: dict[str, int]) -> str:
        """The one line for an eval whose every question went unanswered."""
        why = ", ".join(f"{c} {n}" for c, n in causes.items())
        return f"none of the {failed} questions got an answer ({why})"

    async def aclose(self) -> None:
        pass


class ChatAsker(Asker):
    def __init__(self, framing: Framing, model: dict[str, Any], backend):
        super().__init__(framing, model)
        self.backend = backend
        self.concurrency = backend.settings.concurrency
        self.stats = backend.stats

    def request(self, item: Item) -> Any:
        chat = self.framing.bank["chat"]
        params = {"temperature": chat["temperature"], "max_tokens": chat["max_tokens"]}
        # the backend seeds each request from --seed: part of what decides the answer
        return {
            "messages": self.framing.messages(item),
            "params": params,
            "seed": self.backend.seed,
        }

    async def ask(self, item: Item) -> Reply:
        from generator.backends.protocol import RequestFailed

        request = self.request(item)
        try:
            return Reply(await self.backend.plain(request["messages"], request["params"]))
        except RequestFailed as e:
            return Reply(None, str(e))

    def open(self, folder: Path) -> None:
        from generator.backends.cache import FILE, ResponseCache

        self.backend.cache = ResponseCache(folder / FILE)  # nothing is asked twice

    def failed_message(self, failed: int, causes: dict[str, int]) -> str:
        return self.backend.failed_message(failed, causes)

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.backend.cache is not None:
            self.backend.cache.close()
            self.backend.cache = None


class CompletionAsker(ChatAsker):
    def request(self, item: Item) -> Any:
        params = {
            "temperature": 0.0,
            "max_tokens": self.framing.max_tokens(item),
            "stop": self.framing.stops,
        }
        return {"prompt": self.framing.frame(item), "params": params, "seed": self.backend.seed}

    async def ask(self, item: Item) -> Reply:
        from generator.backends.protocol import RequestFailed

        request = self.request(item)
        try:
            text = await self.backend.plain(request["prompt"], request["params"])
        except RequestFailed as e:
            return Reply(None, str(e))
        for stop in self.framing.stops:  # a server that ignores `stop` is cut here
            text = text.split(stop, 1)[0]
        return Reply(text.strip())


class LocalAsker(Asker):
    def __init__(self, framing: Framing, model: dict[str, Any], local):
        super().__init__(framing, model)
        self.local = local  # scoring.model.LocalModel

    def request(self, item: Item) -> Any:
        limits = {"max_tokens": self.framing.max_tokens(item)}
        return {"frame": self.framing.frame(item), **limits, "stops": self.framing.stops}

    async def ask(self, item: Item) -> Reply:
        from generator.probe.sampling import greedy

        request = self.request(item)

        def run(engine) -> Reply:
            tokens = engine.tokenize(request["frame"])
            if len(tokens) + request["max_tokens"] > engine.context:
                return Reply(None, f"the frame is {len(tokens)} tokens, too long for the model")
            return Reply(greedy(engine, tokens, request["max_tokens"], request["stops"]))

        return await self.local.call(run)

    async def aclose(self) -> None:
        await self.local.aclose()


# --------------------------------------------------------------------------- answers.jsonl


class AnswerStore:
    """`answers.jsonl`: a header naming the model, then one line per answer, appended as
    answers arrive and fsynced at least once a second. A line cut short by a kill is
    dropped when the store opens again (that question is simply asked again)."""

    def __init__(
        self,
        folder: Path,
        model: dict[str, Any],
        start_over: tuple[str, ...] = (),
        sync_seconds: float = 1.0,
    ):
        """Open the store (and lock the folder); `start_over` names the files of an earlier
        eval to remove first (--overwrite)."""
        self.path = folder / ANSWERS
        self.sync_seconds = sync_seconds
        self.answers: dict[str, str] = {}
        self._lock = outputs.Lock(folder / LOCK, folder).acquire()  # one eval per folder
        try:
            for name in start_over:
                (folder / name).unlink(missing_ok=True)
            good = self._read(model)
            with self.path.open("ab") as fh:
                fh.truncate(good)
            self._fh = self.path.open("ab")
            if good == 0:
                self._write({"model": model, "created": time.time()})
        except OSError as e:
            self._lock.release()
            raise outputs.write_error(self.path, e) from None
        except BaseException:
            self._lock.release()
            raise
        self._synced = time.monotonic()

    def _read(self, model: dict[str, Any]) -> int:
        """Load the answers already given; the byte length of the whole lines."""
        if not self.path.is_file():
            return 0
        good = 0
        with self.path.open("rb") as fh:
            for n, raw in enumerate(fh):
                try:
                    row = json.loads(raw) if raw.endswith(b"\n") else None
                except ValueError:
                    row = None
                if not isinstance(row, dict):
                    break  # torn by a kill: asked again
                if n == 0 and row.get("model") != model:
                    raise RunFolderError(
                        f"{self.path.parent}: holds an eval of another model "
                        f"({_named(row.get('model'))}); choose another -o folder, or pass "
                        "--overwrite to start over"
                    )
                if n:
                    self.answers[row["key"]] = row["text"]
                good += len(raw)
        return good

    def _write(self, row: dict[str, Any]) -> None:
        self._fh.write((jsontext.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))

    def get(self, key: str) -> str | None:
        return self.answers.get(key)

    def add(self, key: str, item: Item, text: str) -> None:
        try:
            self._write({"key": key, "id": item.id, "text": text})
            self.answers[key] = text
            if time.monotonic() - self._synced >= self.sync_seconds:
                self.sync()
        except OSError as e:
            raise outputs.write_error(self.path, e) from None

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._synced = time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.sync()
            self._fh.close()
        self._lock.release()


def _named(model: Any) -> str:
    if not isinstance(model, dict):
        return "unknown"
    return " ".join(str(v) for v in model.values() if v)[:120]
