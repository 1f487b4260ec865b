"""hedgerow: behavioral fine-tuning data that keeps a model honest about what it knows.

The library's front door. Each name below is imported on first use (PEP 562), so
`import generator` stays as light as `hedgerow --help`:

    from generator import RunConfig, generate
    result = generate(RunConfig(seeds=("seeds.jsonl",)))   # or: await agenerate(...)

Errors are `HedgerowError`s whose messages name these functions' parameters; the CLI
shows the same errors with its flags. Everything else is a stage of the data flow, one
module each (see README).

Four functions share a name with the module that defines them (`augment`, `export`,
`report`, `evaluate`): `generator.export` is the function. A module's other names come
with `from generator.export import openai_row`, as everywhere in this package.
"""

import sys
from importlib import import_module
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS = {
    "generate": ("generator.run", "generate"),
    "agenerate": ("generator.run", "agenerate"),
    "RunConfig": ("generator.config", "RunConfig"),
    "RunResult": ("generator.config", "RunResult"),
    "augment": ("generator.augment", "augment"),
    "AugmentResult": ("generator.augment", "AugmentResult"),
    "export": ("generator.export", "export"),
    "ExportResult": ("generator.export", "ExportResult"),
    "score": ("generator.scoring.dataset", "score_dataset"),
    "ScoreResult": ("generator.scoring.dataset", "ScoreResult"),
    "report": ("generator.report", "write_report"),
    "Report": ("generator.report", "Report"),
    "evaluate": ("generator.evaluate", "evaluate"),
    "EvalConfig": ("generator.evaluate", "EvalConfig"),
    "Generator": ("generator.generators", "Generator"),
    "register": ("generator.generators", "register"),
    "Seed": ("generator.values", "Seed"),
    "Example": ("generator.values", "Example"),
    "Skip": ("generator.values", "Skip"),
    "Fit": ("generator.values", "Fit"),
    "Knowledge": ("generator.values", "Knowledge"),
    **{
        name: ("generator.errors", name)
        for name in (
            "HedgerowError",
            "InputError",
            "TemplateError",
            "ConfigError",
            "NotAvailableError",
            "RunFolderError",
            "ScorerError",
            "EndpointError",
            "ExportError",
            "JSONValueError",
            "RunningLoopError",
        )
    },
}

__all__ = [*_EXPORTS, "__version__"]


class _Front(ModuleType):
    """The package module, keeping its exported functions where the import system would
    bind a submodule of the same name (`import generator.export` sets `generator.export`
    to the module on first import)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, ModuleType):
            return  # the module stays in sys.modules; the attribute stays the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Front


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'generator' has no attribute {name!r}") from None
    value = getattr(import_module(module), attribute)
    globals()[name] = value  # the next look-up does not come here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
