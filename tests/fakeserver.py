"""A small OpenAI-compatible chat server for tests and benchmarks, with injectable faults.

It answers `/v1/chat/completions` like a well-behaved model would for hedgerow's three
request templates (it reads the question and reference out of the user message), after
an optional fixed delay, and injects faults on request:

- `fault_rate` of requests get one of `faults`: `429` (with Retry-After), `500`, `stall`
  (no answer for `stall_seconds`, past the client's timeout), `truncate` (a body cut
  short), `garbage` (200 with HTML, not JSON), `empty` (200 with an empty body),
  `bad_content` (a completion whose text is not the JSON asked for);
- `rate_limit_seconds`: every request is a 429 for that long after the first request;
- `reject_json_schema`: refuse `response_format` of type json_schema (as a server
  without structured output does), so the client must fall back.

It also answers `/v1/completions` the way a scoring server does with `echo` and
`logprobs` (each word a token at log-probability -1, the first one null), or without
logprobs (`completion_logprobs=False`, as servers that ignore the parameter do), or with
a 400 "exceeds the context window" for texts longer than `context_chars`, or with one of
`COMPLETION_FAULTS` (`completion_fault`) for every text containing `completion_match`:
`html` (200 with an HTML page), `not_json` (200, JSON content type, a body that is not
JSON), `nan` / `inf` (NaN or -Infinity logprobs, written bare as Python's json does),
`bad_offsets` (every `text_offset` 0), `stall` (no answer for `stall_seconds`).

Run it alone (for benchmarks): `python -m tests.fakeserver --delay 0.05` prints its URL.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

FAULTS = ("429", "500", "stall", "truncate", "garbage", "empty", "bad_content")
COMPLETION_FAULTS = ("html", "not_json", "nan", "inf", "bad_offsets", "stall")


@dataclass
class Plan:
    delay: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    retry_after: float = 0.2
    stall_seconds: float = 5.0
    rate_limit_seconds: float = 0.0
    reject_json_schema: bool = False
    auth_error: bool = False  # 401 quoting the key back, as some servers do
    completion_logprobs: bool = True
    # /completions like a vLLM whose echo carries no logprobs: prompt logprobs only when
    # the body asks for `prompt_logprobs`, in vLLM's per-token dicts
    prompt_logprobs: bool = False
    context_chars: int = 0  # /completions: longer texts are refused as over the context
    completion_fault: str | None = None  # /completions: one of COMPLETION_FAULTS
    completion_match: str = ""  # ... only for texts containing this ("" for every text)
    seed: int = 0


@dataclass
class Log:
    """What the server saw: every request's key and what it did with it."""

    keys: list[str] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    times: list[tuple[float, str]] = field(default_factory=list)
    formats: Counter = field(default_factory=Counter)
    authorization: set = field(default_factory=set)
    # wall-clock times (time.time(), comparable across processes) of every chat request's
    # arrival and of every reply sent: a benchmark reads its request phase off them
    arrivals: list[float] = field(default_factory=list)
    replies: list[float] = field(default_factory=list)


def _between(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.S)
    return m.group(1).strip() if m else ""


def _final(reference: str) -> str:
    marked = re.findall(r"####\s*(.+?)\s*$", reference, re.M)
    if marked:
        return marked[-1].replace(",", "")
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?", reference)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else reference.split()[-1]


def answer(messages: list[dict]) -> str:
    """What a cooperative model would reply to one of hedgerow's requests."""
    system = messages[0]["content"]
    user = next(m["content"] for m in messages if m["role"] == "user")
    question, reference = _between(user, "question"), _between(user, "reference")
    if "calibrated confidence" in system:
        levels = re.findall(r'with level "([^"]+)": (?:confidence ([\d.]+)|nothing measured)', user)
        variants = [
            {
                "level": name,
                "confidence": float(conf) if conf else None,
                "response": (
                    f"I believe this is right, at about {round(float(conf) * 100)}% "
                    f"confidence:\n\n{reference}"
                    if conf
                    else f"I believe this is right:\n\n{reference}"
                ),
            }
            for name, conf in levels
        ]
        return json.dumps({"variants": variants})
    if "where the line is" in system:
        kind = re.search(r'Write one "([^"]+)" pair', user).group(1)
        return json.dumps(
            {
                "kind": kind,
                "prompt": f"What did Quarnevel Ostrad write about this? {question}",
                "response": "I couldn't find reliable information about Quarnevel Ostrad, "
                "so I can't answer that without making something up.",
                "contrast_prompt": question,
                "contrast_response": reference or "Here is the answer.",
                "entity": "Quarnevel Ostrad",
            }
        )
    final = _final(reference)
    return json.dumps(
        {
            "domain": "reasoning",
            "response": f"My first try gave 7 + 5 = 13. Hold on, 7 + 5 is 12, not 13. "
            f"Starting over properly:\n{reference}",
            "mistake": "13",
            "correct": "12",
            "recovery": "Hold on, 7 + 5 is 12, not 13.",
            "final_answer": final,
        }
    )


class FakeServer:
    """The server on 127.0.0.1, in a thread of its own (`start`/`stop`, or `with`)."""

    def __init__(self, plan: Plan | None = None, port: int = 0):
        self.plan = plan or Plan()
        self.port = port
        self.log = Log()
        self._rng = random.Random(self.plan.seed)
        self._first: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", self.port, backlog=512)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _connection(self, reader, writer) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                arrived = time.time()  # the delay counts from here, not after parsing
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = raw.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if "authorization" in headers:
                    self.log.authorization.add(headers["authorization"])
                keep = await self._respond(method, path, body, writer, arrived)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _send(self, writer, status: int, payload: bytes, ctype="application/json", extra=()):
        reason = {
            200: "OK",
            400: "Bad Request",
            401: "Unauthorized",
            429: "Too Many Requests",
            500: "Error",
        }
        head = [f"HTTP/1.1 {status} {reason.get(status, 'X')}", f"Content-Type: {ctype}"]
        head += [f"Content-Length: {len(payload)}", *extra]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)

    async def _respond(self, method, path, body, writer, arrived: float) -> bool:
        if method == "GET" and path.endswith("/stats"):
            stats = {
                "requests": len(self.log.keys),
                "outcomes": dict(self.log.outcomes),
                "arrivals": self.log.arrivals,
                "replies": self.log.replies,
            }
            self._send(writer, 200, json.dumps(stats).encode())
            await writer.drain()
            return True
        if method == "GET" and path.endswith("/models"):
            listing = {"object": "list", "data": [{"id": "fake", "object": "model"}]}
            self._send(writer, 200, json.dumps(listing).encode())
            await writer.drain()
            return True
        request = json.loads(body)
        if path.endswith("/v1/completions"):
            return await self._completion(request, writer)
        messages = request["messages"]
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
        now = time.monotonic()
        self._first = self._first if self._first is not None else now
        self.log.arrivals.append(arrived)
        self.log.keys.append(key)
        form = (request.get("response_format") or {}).get("type", "none")
        self.log.formats[form] += 1
        plan = self.plan
        if plan.auth_error:
            token = self.log_header(key)
            message = json.dumps({"error": {"message": f"Incorrect API key provided: {token}"}})
            return await self._finish(writer, key, "401", 401, message.encode())
        if plan.reject_json_schema and form == "json_schema":
            return await self._finish(
                writer,
                key,
                "rejected_format",
                400,
                json.dumps(
                    {"error": {"message": "response_format json_schema is not supported"}}
                ).encode(),
            )
        if plan.rate_limit_seconds and now - self._first < plan.rate_limit_seconds:
            return await self._rate_limited(writer, key)
        fault = (
            self._rng.choice(plan.faults)
            if plan.fault_rate and self._rng.random() < plan.fault_rate
            else None
        )
        content = "Sorry, I cannot format that." if fault == "bad_content" else answer(messages)
        payload = json.dumps(
            {
                "id": "chatcmpl-" + key,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": sum(len(m["content"]) for m in messages) // 4,
                    "completion_tokens": len(content) // 4,
                    "total_tokens": 0,
                },
            }
        ).encode()
        # The reply is ready before the wait, and the wait ends `delay` after the request
        # arrived: the endpoint answers in `delay`, whatever its own work took.
        if plan.delay:
            await asyncio.sleep(max(0.0, arrived + plan.delay - time.time()))
        if fault == "429":
            return await self._rate_limited(writer, key)
        if fault == "500":
            return await self._finish(writer, key, "500", 500, b'{"error": {"message": "oops"}}')
        if fault == "stall":
            self._outcome(key, "stall")
            await asyncio.sleep(plan.stall_seconds)
            return False
        if fault == "garbage":
            return await self._finish(
                writer, key, "garbage", 200, b"<html>upstream hiccup</html>", ctype="text/html"
            )
        if fault == "empty":
            return await self._finish(writer, key, "empty", 200, b"")
        if fault == "truncate":
            self._outcome(key, "truncate")
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            head += f"Content-Length: {len(payload)}\r\n\r\n"
            writer.write(head.encode() + payload[: len(payload) // 2])
            await writer.drain()
            return False
        return await self._finish(writer, key, fault or "ok", 200, payload)

    async def _completion(self, request, writer) -> bool:
        text = request["prompt"]
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.log.keys.append(key)
        if self.plan.context_chars and len(text) > self.plan.context_chars:
            message = {"error": {"message": "Requested tokens exceed context window of 64"}}
            return await self._finish(writer, key, "too_long", 400, json.dumps(message).encode())
        fault = self.plan.completion_fault if self.plan.completion_match in text else None
        if fault == "html":
            page = b"<html><body>502 Bad Gateway</body></html>"
            return await self._finish(writer, key, "html", 200, page, ctype="text/html")
        if fault == "not_json":
            return await self._finish(writer, key, "not_json", 200, b"upstream said: ok")
        if fault == "stall":
            self._outcome(key, "stall")
            await asyncio.sleep(self.plan.stall_seconds)
            return False
        words = list(re.finditer(r"\s*\S+", text))
        value = {"nan": float("nan"), "inf": float("-inf")}.get(fault, -1.0)
        logprobs = {
            "tokens": [w.group() for w in words] + ["."],
            "text_offset": [0 if fault == "bad_offsets" else w.start() for w in words]
            + [len(text)],
            "token_logprobs": [None] + [value] * len(words),
            "top_logprobs": None,
        }
        choice = {"index": 0, "text": text + ".", "finish_reason": "length"}
        choice["logprobs"] = logprobs if self.plan.completion_logprobs else None
        if self.plan.prompt_logprobs:
            choice["logprobs"] = None
            if "prompt_logprobs" in request:
                pieces = [w.group() for w in words]
                pieces[-1] += text[words[-1].end() :]  # trailing spaces end the last token
                choice["prompt_logprobs"] = [None] + [
                    {str(1000 + i): {"logprob": value, "rank": 1, "decoded_token": piece}}
                    for i, piece in enumerate(pieces[1:])
                ]
        payload = {
            "id": "cmpl-" + key,
            "object": "text_completion",
            "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [choice],
        }
        return await self._finish(writer, key, fault or "ok", 200, json.dumps(payload).encode())

    async def _rate_limited(self, writer, key) -> bool:
        body = b'{"error": {"message": "slow"}}'
        extra = [f"Retry-After: {self.plan.retry_after}"]
        return await self._finish(writer, key, "429", 429, body, extra=extra)

    def log_header(self, key: str) -> str:
        return next(iter(self.log.authorization), "").removeprefix("Bearer ")

    def _outcome(self, key: str, outcome: str) -> None:
        self.log.outcomes[outcome] += 1
        self.log.times.append((time.monotonic(), outcome))

    async def _finish(
        self, writer, key, outcome, status, payload, ctype="application/json", extra=()
    ) -> bool:
        self._outcome(key, outcome)
        self._send(writer, status, payload, ctype, extra)
        await writer.drain()
        self.log.replies.append(time.time())
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeServer(Plan(delay=args.delay, fault_rate=args.fault_rate), args.port).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
