"""Backends: where candidates come from. Both serve generators through `produce`.

- `offline`: no model; templates and phrase banks render examples from the seed.
- `openai`: any OpenAI-compatible endpoint (planned; see the README's roadmap).
"""

from __future__ import annotations

from generator.errors import NotAvailableError

BACKENDS = ("offline", "openai")


def get(name: str, **options):
    """The backend called `name`, configured with `options`."""
    if name == "offline":
        from generator.backends.offline import OfflineBackend

        return OfflineBackend(**options)
    if name == "openai":
        raise NotAvailableError(
            "--backend openai is not available in this version yet; use --backend offline"
        )
    raise NotAvailableError(f"--backend {name}: unknown backend; use offline")
