"""Generators: one behavior each, turning one seed into candidate examples.

A generator is declarative: `name`, the templates it renders, and three pure functions:

- `offline(seed, ctx, k)`: up to `k` candidates per output slot, rendered from templates;
- `requests(seed, rng)`: what to ask a model (`Ask`: chat messages from the behavior's
  `system.j2`/`user.j2` and the JSON schema of the reply);
- `parse(seed, ask, reply, sample, model)`: the examples in one validated reply, or a
  `ReplyError` saying what to fix (it goes back to the model).

Each returns a `Skip` with its reason when the seed does not suit the behavior. Built-ins
register through `register`, the same hook a plugin uses (entry point group
`hedgerow.generators`).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from generator import jsontext
from generator.errors import ConfigError
from generator.templates import Prompts
from generator.values import Example, Seed, Skip, short_hash

_REGISTRY: dict[str, type[Generator]] = {}


@dataclass
class Context:
    """What a generator may use besides the seed: templates, randomness, the corpus."""

    prompts: Prompts
    rng: random.Random
    corpus: Any = None  # generator.corpus.CorpusWords, when a generator needs it


class ReplyError(ValueError):
    """A model's reply that parsed as JSON but cannot be used; the text says what to fix."""


@dataclass(frozen=True)
class Ask:
    """One request a generator wants answered: chat messages and the reply's JSON schema."""

    name: str  # names the schema (response_format's json_schema name)
    messages: tuple[dict[str, str], ...]
    schema: dict[str, Any]
    choices: dict[str, Any] = field(default_factory=dict)  # what the generator chose


class Generator:
    """Base of every behavior generator."""

    name: ClassVar[str]
    template: ClassVar[str]  # the offline output template
    bank: ClassVar[str]  # the phrase bank
    reply_model: ClassVar[Any]  # the pydantic model of the reply's JSON
    # Attributes that mark a part of the response ({"start", "end", ...}): whatever edits
    # a response after the generator (generator.annotations) moves them with the text.
    spans: ClassVar[tuple[str, ...]] = ()

    def __init__(self, prompts: Prompts):
        self.prompts = prompts

    def offline(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        raise NotImplementedError

    def requests(self, seed: Seed, rng: random.Random) -> list[Ask] | Skip:
        raise NotImplementedError

    def parse(self, seed: Seed, ask: Ask, reply: Any, sample: int, model: str) -> list[Example]:
        raise NotImplementedError

    def rows_per_seed(self) -> int:
        """The most dataset rows one seed can give this behavior (a pair counts two)."""
        return 1

    def templates(self) -> list[str]:
        """Every template file the offline path reads, for hashing into the manifest."""
        return [self.template, self.bank]

    def llm_templates(self) -> list[str]:
        """Every template file the model path reads."""
        return [f"{self.name}/system.j2", f"{self.name}/user.j2"]

    def ask(self, seed: Seed, **choices: Any) -> Ask:
        """Render this behavior's system and user templates into one request."""
        schema = _schema(self.reply_model)
        variables = {
            "prompt": seed.prompt,
            "reference": seed.response or "",
            "schema": jsontext.dumps(schema, indent=2),
            **choices,
        }
        system = self.prompts.render(f"{self.name}/system.j2", **variables)
        user = self.prompts.render(f"{self.name}/user.j2", **variables)
        return Ask(
            name=self.name,
            messages=({"role": "system", "content": system}, {"role": "user", "content": user}),
            schema=schema,
            choices=choices,
        )

    def model_example(
        self,
        seed: Seed,
        slot: str,
        sample: int,
        prompt: str,
        response: str,
        attributes: dict[str, Any],
        model: str,
        **kwargs: Any,
    ) -> Example:
        """A candidate made by a model from this behavior's request templates."""
        return self.example(
            seed,
            slot,
            sample,
            prompt,
            response,
            attributes,
            template=f"{self.name}/user.j2",
            system_template=f"{self.name}/system.j2",
            backend="openai",
            model=model,
            **kwargs,
        )

    def skip(self, seed: Seed, reason: str, detail: str = "") -> Skip:
        return Skip(seed.id, self.name, reason, detail)

    def example(
        self,
        seed: Seed,
        slot: str,
        index: int,
        prompt: str,
        response: str,
        attributes: dict[str, Any],
        *,
        behavior: str | None = None,
        pair_id: str | None = None,
        template: str | None = None,
        backend: str = "offline",
        model: str | None = None,
        system_template: str | None = None,
    ) -> Example:
        """A candidate with a stable id and its provenance filled in."""
        behavior = behavior or self.name
        template = self.template if template is None else template
        return Example(
            id=short_hash(seed.id, str(seed.index), behavior, slot, str(index)),
            seed_id=seed.id,
            behavior=behavior,
            prompt=prompt,
            response=response,
            attributes=attributes,
            pair_id=pair_id,
            slot=slot,
            provenance={
                "backend": backend,
                "template": template or None,
                "template_sha256": self.prompts.sha256(template) if template else None,
                "model": model,
                **(
                    {
                        "system_template": system_template,
                        "system_template_sha256": self.prompts.sha256(system_template),
                    }
                    if system_template
                    else {}
                ),
            },
        )


@functools.cache
def _schema(model: Any) -> dict[str, Any]:
    """A reply model's JSON schema, built once per class (it is the same every time)."""
    return model.model_json_schema()


def pick(rng: random.Random, options: Sequence[Any], k: int) -> list[Any]:
    """k choices, distinct while the options last, then cycling (deterministic per rng)."""
    order = rng.sample(list(options), len(options))
    return [order[i % len(order)] for i in range(k)]


def starts_with_any(text: str, phrases) -> bool:
    """True when lower-cased `text` opens with one of `phrases` as whole words."""
    head = text.strip().lower()
    return any(re.match(rf"{re.escape(p.lower())}\b", head) for p in phrases)


def register(cls: type[Generator]) -> type[Generator]:
    """Add a generator class to the registry (a decorator)."""
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Generator]]:
    """Every registered generator: built-ins first, then installed plugins."""
    from importlib.metadata import entry_points

    from generator.generators import hedge, near_miss, refusal  # noqa: F401  (they register)

    for ep in entry_points(group="hedgerow.generators"):
        if ep.name not in _REGISTRY:
            register(ep.load())
    return dict(_REGISTRY)


def get(names: Sequence[str], prompts: Prompts) -> list[Generator]:
    """Instances of the named generators, in the order given."""
    known = registry()
    if not names:
        raise ConfigError(f"--behaviors is empty; choose from {', '.join(known)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--behaviors names {', '.join(repeated)} twice; list each once")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"--behaviors: unknown behavior {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return [known[n](prompts) for n in names]
