"""Backends: where candidates come from. Both serve generators through `produce`.

- `offline`: no model; templates and phrase banks render examples from the seed.
- `openai`: any OpenAI-compatible chat endpoint, asked through the behaviors' request
  templates, with concurrency, retries, a response cache and resume.
"""

from __future__ import annotations

from generator.errors import ConfigError, param

BACKENDS = ("offline", "openai")


def kind(name: str):
    """The backend class called `name` (its `templates()` are known before it is made)."""
    if name == "offline":
        from generator.backends.offline import OfflineBackend

        return OfflineBackend
    if name == "openai":
        from generator.backends.openai import OpenAIBackend

        return OpenAIBackend
    raise ConfigError(f"{param('backend')} {name}: unknown backend; use offline or openai")


def get(name: str, **options):
    """The backend called `name`, made with `options` (its cache and the input's
    vocabulary among them: a backend is whole when it is made)."""
    return kind(name)(**options)
