"""The OpenAI-compatible protocol, as pure functions: the body of a request (in the
strongest response format a server accepts), what the cache keeps of a reply, and how a
request goes wrong, in words that stay the same from one request to the next (a run's
summary counts failures by them).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from generator.backends.wire import StatusError, Timeout, Unreachable, one_line

if TYPE_CHECKING:
    from generator.generators import Ask

# response_format, strongest first: a server that refuses one is asked in the next
FORMATS = ("json_schema", "json_object_schema", "json_object", "none")


class BadResponse(Exception):
    """The server answered 200 with something that is not a chat completion."""


class RequestFailed(Exception):
    """A request that used up its transport budget, or that the server refused; its text
    says why in a few words that are the same for every request failing the same way."""


def request(
    model: str, messages: list[dict] | str, params: dict, form: str, ask: Ask | None
) -> tuple[str, dict[str, Any]]:
    """The route and body of one request: a chat completion (in the response format `form`
    when it answers an `ask`), or a plain completion of a prompt string."""
    if isinstance(messages, str):
        return "/completions", {"model": model, "prompt": messages, **params}
    body = {"model": model, "messages": messages, **params}
    if ask is not None:
        body.update(response_format(form, ask))
    return "/chat/completions", body


def response_format(form: str, ask: Ask) -> dict[str, Any]:
    """The body's response_format in the form `form` (one of FORMATS)."""
    if form == "json_schema":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": ask.name, "schema": ask.schema},
            }
        }
    if form == "json_object_schema":  # llama.cpp's server: a grammar from the schema
        return {"response_format": {"type": "json_object", "schema": ask.schema}}
    if form == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


def about_format(error: BaseException) -> bool:
    """A refusal of the response format (a server without this form of structured output)."""
    text = str(getattr(error, "body", "") or "") + " " + str(error)
    return getattr(error, "status_code", None) in (400, 422, 500) and bool(
        re.search(r"response_format|json_schema", text, re.I)
    )


def cause(error: BaseException, timeout: float) -> str:
    """Why a request failed, in words that do not vary from one request to the next (the
    summary counts failures by them)."""
    if isinstance(error, Timeout):
        return f"no reply within {timeout:g} s (--timeout)"
    if isinstance(error, Unreachable | StatusError):  # "HTTP 500: what it said", short
        return str(error)
    return one_line(error)


def bad_body(error: BaseException) -> str:
    """A 200 whose body is not a chat completion, described."""
    if isinstance(error, json.JSONDecodeError):
        if not error.doc.strip():
            return "an empty body instead of a chat completion"
        return "a body that is not JSON (cut off or garbled) instead of a chat completion"
    return one_line(error)


def reply_value(response: Any) -> dict[str, Any]:
    """What the cache keeps of a completion: its text, why it stopped, its token usage."""
    if isinstance(response, str):  # a 200 whose body is not JSON comes back as its text
        what = "an HTML page" if response.lstrip().startswith("<") else "text"
        raise BadResponse(f"{what} instead of a chat completion ({response.strip()[:40]!r})")
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise BadResponse(f"not a chat completion: {str(response)[:80]!r}")
    message = choices[0].get("message")
    # a plain completion (/completions) has its text on the choice
    content = message.get("content") if isinstance(message, dict) else choices[0].get("text")
    if not isinstance(content, str):
        raise BadResponse("a completion without message content")
    usage = response.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return {
        "content": content,
        "finish_reason": choices[0].get("finish_reason"),
        "prompt_tokens": _count(usage.get("prompt_tokens")),
        "completion_tokens": _count(usage.get("completion_tokens")),
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
