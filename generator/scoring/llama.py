"""Scoring in-process with llama.cpp: the embedded base model, or any GGUF file.

The engine evaluates a prompt once and scores every response that follows it from that
state: each response gets its own sequence id in llama.cpp's unified KV cache, sharing
the prompt's cells, and the responses of one prompt go through `llama_decode` together.
Logits are asked for only where a response token is predicted — with Gemma's 262k-word
vocabulary the output layer is about half of a scored token's cost, so a prompt token
costs about half of one. A call can be cancelled between `llama_decode` calls (each is at
most BATCH tokens, well under a second): a stopped run does not wait for the rest.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from generator.errors import ScorerError, param

BATCH = 512  # tokens per llama_decode call
OUTPUTS = 256  # logit rows per call: 256 x 262k floats is 256 MiB of llama.cpp's buffer
SEQUENCES = 8  # the prompt's sequence plus up to 7 responses decoded side by side

_log_lock = threading.Lock()
_last_log: list[str] = []


def _quiet(llama_cpp) -> None:
    """Keep llama.cpp's load chatter off the terminal; remember its errors for our message."""

    @llama_cpp.llama_log_callback
    def callback(level, text, user_data):
        if level == 3:  # GGML_LOG_LEVEL_ERROR
            with _log_lock:
                _last_log.append(text.decode("utf-8", "replace").strip())
                del _last_log[:-3]

    _quiet.callback = callback  # a ctypes callback must outlive its registration
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


class Cancelled(Exception):
    """The caller set the cancel flag: the scoring call stopped between decodes."""


def check_gguf(path: Path, flag: str) -> None:
    """A clear error for a path that is not a GGUF model file, before anything loads."""
    if not path.exists():
        raise ScorerError(f"{flag}: {path} does not exist; give the path of a .gguf model file")
    if not path.is_file():
        raise ScorerError(f"{flag}: {path} is a folder; give the path of a .gguf model file")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise ScorerError(f"{flag}: cannot read {path} ({e.strerror})") from None
    if magic != b"GGUF":
        raise ScorerError(
            f"{flag}: {path} is not a GGUF model file (it does not start with 'GGUF'); "
            "convert the model with llama.cpp's convert_hf_to_gguf.py"
        )


class LlamaEngine:
    """One llama.cpp model and context; not thread-safe (the scorer gives it one thread)."""

    def __init__(
        self, path: Path, context: int, threads: int | None = None, sequences: int = SEQUENCES
    ):
        try:
            import llama_cpp
        except ImportError:
            raise ScorerError(
                "the llama.cpp scorer needs llama-cpp-python: pip install llama-cpp-python "
                f"(or use {param('scorer')} openai:URL or {param('scorer')} none)"
            ) from None
        import numpy

        self.L, self.np = llama_cpp, numpy
        _quiet(llama_cpp)
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(
            str(path).encode(), llama_cpp.llama_model_default_params()
        )
        if not self.model:
            said = "; ".join(_last_log) or "no reason given"
            raise ScorerError(
                f"{path}: llama.cpp could not load this model ({said}); "
                "check that the file is complete and its architecture is supported"
            )
        self.context = min(context, llama_cpp.llama_model_n_ctx_train(self.model))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.context
        params.n_batch = params.n_ubatch = BATCH
        params.n_seq_max = self.sequences = sequences
        self.batch_size = BATCH
        params.kv_unified = True  # responses share the prompt's cells
        params.swa_full = True  # sliding-window layers keep every cell: sequences can be cut
        # llama.cpp's default is 4 threads whatever the machine; on 2 cores that is ~10% slower
        # HEDGEROW_THREADS: a Ray worker's share of its node (generator.engine)
        threads = (
            threads
            or int(os.environ.get("HEDGEROW_THREADS") or 0)
            or max(1, len(os.sched_getaffinity(0)))
        )
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise ScorerError(f"{path}: llama.cpp could not make a context of {self.context}")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.batch = llama_cpp.llama_batch_init(BATCH, 0, 1)
        self._row = numpy.empty(self.n_vocab, dtype=numpy.float32)

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.L.llama_batch_free(self.batch)
            self.L.llama_free(self.ctx)
            self.L.llama_model_free(self.model)
            self.ctx = None

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """Token ids of `text`, with the model's BOS when `special`."""
        data = text.encode("utf-8", "replace")
        size = len(data) + 8
        while True:
            buf = (self.L.llama_token * size)()
            n = self.L.llama_tokenize(self.vocab, data, len(data), buf, size, special, False)
            if n >= 0:
                return list(buf[:n])
            size = -n

    def decode(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, wants logits) items."""
        b = self.batch
        b.n_tokens = len(items)
        for i, (token, pos, seq, logits) in enumerate(items):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        code = self.L.llama_decode(self.ctx, b)
        if code != 0:
            raise ScorerError(
                f"llama.cpp could not evaluate a batch (llama_decode returned {code})"
            )

    def rows(self, n: int):
        """The last call's `n` output rows of logits (a view of llama.cpp's buffer)."""
        return self.np.ctypeslib.as_array(
            self.L.llama_get_logits(self.ctx), shape=(n, self.n_vocab)
        )

    def normalisers(self, rows):
        """log(sum(exp(row))) of each row: logit - normaliser is a log-probability."""
        np = self.np
        peaks = rows.max(axis=1)
        out = np.empty(len(rows), dtype=np.float64)
        row = self._row  # one row at a time through a buffer that stays in cache
        for i in range(len(rows)):
            np.subtract(rows[i], peaks[i], out=row)
            np.exp(row, out=row)
            out[i] = peaks[i] + np.log(row.sum(dtype=np.float64))
        return out

    def score(
        self,
        prompt: Sequence[int],
        responses: Sequence[Sequence[int]],
        cancel: threading.Event | None = None,
    ) -> list[float]:
        """Summed negative log-likelihood of each response's tokens after `prompt`.

        The caller keeps len(prompt) + len(response) within the context, and the prompt
        non-empty (its last token predicts each response's first). Setting `cancel`
        raises `Cancelled` before the next llama_decode."""
        L, n_prompt = self.L, len(prompt)

        def decode(items) -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            self.decode(items)

        L.llama_memory_clear(self.memory, True)
        for start in range(0, n_prompt, BATCH):
            chunk = prompt[start : start + BATCH]
            decode([(t, start + i, 0, start + i == n_prompt - 1) for i, t in enumerate(chunk)])
        # The prompt's last row predicts every response's first token: one row, read once.
        last = self.rows(1)
        norm = self.normalisers(last)[0]
        totals = [norm - float(last[0, r[0]]) for r in responses]

        waiting = [i for i, r in enumerate(responses) if len(r) > 1]
        while waiting:
            wave, size = [], 0  # responses decoded side by side, each its own sequence
            while waiting and len(wave) < SEQUENCES - 1:
                need = len(responses[waiting[0]]) - 1
                if wave and (size + need > OUTPUTS or n_prompt + size + need > self.context):
                    break
                wave.append(waiting.pop(0))
                size += need
            items, owners, targets = [], [], []
            for seq, i in enumerate(wave, start=1):
                L.llama_memory_seq_cp(self.memory, 0, seq, -1, -1)
                response = responses[i]
                for j in range(len(response) - 1):
                    items.append((response[j], n_prompt + j, seq, True))
                    owners.append(i)
                    targets.append(response[j + 1])
            for start in range(0, len(items), OUTPUTS):
                chunk = items[start : start + OUTPUTS]
                decode(chunk)
                rows = self.rows(len(chunk))
                norms = self.normalisers(rows)
                for k, owner in enumerate(owners[start : start + OUTPUTS]):
                    totals[owner] += norms[k] - float(rows[k, targets[start + k]])
            for seq in range(1, len(wave) + 1):
                L.llama_memory_seq_rm(self.memory, seq, -1, -1)
        return totals
