"""One in-process llama.cpp model on a thread of its own, shared by the stages that read
it: the fit scorer and the knowledge probe (one copy in memory when they name the same
model)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class LocalModel:
    """A GGUF file, loaded on first use with as many sequences as its callers need."""

    def __init__(self, path: Path, context: int, flag: str):
        from generator.scoring.llama import check_gguf

        check_gguf(path, flag)
        self.path = path
        self.context = context
        self.engine = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="hedgerow-model")
        self._closed = False

    def load(self, sequences: int = 0):
        """The engine, (re)made when it has fewer sequences than asked (on the thread)."""
        from generator.scoring.llama import SEQUENCES, LlamaEngine

        wanted = max(sequences, SEQUENCES)
        if self.engine is not None and self.engine.sequences < wanted:
            self.engine.close()
            self.engine = None
        if self.engine is None:
            self.engine = LlamaEngine(self.path, self.context, sequences=wanted)
            self.context = self.engine.context
        return self.engine

    async def call(self, fn: Callable[[Any], T], sequences: int = 0) -> T:
        """`fn(engine)` on the model's thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, lambda: fn(self.load(sequences))
        )

    async def aclose(self) -> None:
        """Free the engine on its own thread, after the call in hand (a cancelled scorer
        call ends at its next decode): the event loop never blocks on llama.cpp."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._release)
        finally:
            self._thread.shutdown(wait=False)

    def _release(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
