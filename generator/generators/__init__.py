"""Generators: one behavior each, turning one seed into candidate examples.

A generator is declarative: `name`, the templates it renders, and three pure functions:

- `offline(seed, ctx, k)`: up to `k` candidates per output slot, rendered from templates;
- `requests(seed, rng)`: what to ask a model (`Ask`: chat messages from the behavior's
  `system.j2`/`user.j2` and the JSON schema of the reply);
- `parse(seed, ask, reply, sample, model)`: the examples in one validated reply, or a
  `ReplyError` saying what to fix (it goes back to the model).

Each returns a `Skip` with its reason when the seed does not suit the behavior.

A behavior owns its policy, so the rest of hedgerow asks the registry instead of naming
behaviors: its checks (`check`, with cues from `prompts/<name>/checks.toml` or the shared
`prompts/checks.toml`), its pairing (`partner`: the behavior of the row made 1:1 with each
of its own, as a refusal's contrast), its default share of an augment mix and whether it
runs by default, its rows per seed, the line its samples get in the report and its
preference pairs for `export --format dpo`.

Every generator comes in through one door, the entry point group `hedgerow.generators`:
the built-ins are declared there in hedgerow's own `pyproject.toml` (the value names this
package, and every module in it is imported, each registering its classes with
`@register`), and a plugin declares its class or its module the same way.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from generator import jsontext
from generator.errors import ConfigError, param
from generator.templates import Prompts
from generator.values import Example, Seed, Skip, short_hash

GROUP = "hedgerow.generators"  # the entry point group every generator comes in through
SHARED_CHECKS = "checks.toml"  # cues every behavior may use (and `hedgerow eval` uses)
_REGISTRY: dict[str, type[Generator]] = {}
_loaded = False
_owners: dict[str, type[Generator]] | None = None  # row behavior -> its generator, cached


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
    # The behavior of a row made 1:1 with each of this behavior's rows, sharing its
    # `pair_id` (a refusal's contrast); pairs are checked, scored, kept and dropped whole.
    partner: ClassVar[str | None] = None
    share: ClassVar[float] = 0.1  # its share of `hedgerow augment`'s default --mix
    default: ClassVar[bool] = True  # in the default --behaviors and --mix
    order: ClassVar[int] = 100  # where it sorts in listings and defaults (built-ins first)
    needs_reference: ClassVar[bool] = True  # a seed without an answer is skipped
    # Its row stands in for the seed's own response instead of adding a row (a rewrite
    # of the reference): `hedgerow augment` writes it over the input row it came from,
    # which the row's provenance names (`seed_source`).
    replaces: ClassVar[bool] = False
    uses_corpus: ClassVar[bool] = False  # reads Context.corpus: the input's vocabulary
    # Folder of a plugin's own templates, searched after the user's and the shipped ones.
    prompts_dir: ClassVar[Path | None] = None
    # Schemas (generator.banks.Bank classes) of the banks this behavior adds, by name.
    schemas: ClassVar[dict[str, Any]] = {}

    def __init__(self, prompts: Prompts):
        self.prompts = prompts
        self._cues: dict[str, tuple[re.Pattern, ...]] = {}

    @classmethod
    def behaviors(cls) -> tuple[str, ...]:
        """The row behaviors this generator makes: its own, and its partner's."""
        return (cls.name, cls.partner) if cls.partner else (cls.name,)

    def unsuitable(self, seed: Seed) -> Skip | None:
        """A skip for a seed this behavior cannot use at all, before any work (backends
        ask it first); the base rule: a behavior that needs a reference answer skips a
        seed without one."""
        if self.needs_reference and not (seed.response or "").strip():
            return self.skip(seed, "no_reference_answer")
        return None

    # ----------------------------------------------------------------- its policy

    @property
    def checks_bank(self) -> str:
        return f"{self.name}/checks.toml"

    def check(self, example: Example, reference: str | None) -> list[str]:
        """The failure reasons of one of this behavior's rows (its partner's included)
        beyond the checks every row gets (generator.checks); empty when it passes."""
        return []

    def _bank_with(self, key: str) -> str | None:
        """This behavior's checks.toml if it holds `key`, else the shared one if it does."""
        for bank in (self.checks_bank, SHARED_CHECKS):
            if self.prompts.has(bank) and key in self.prompts.bank(bank):
                return bank
        return None

    def setting(self, key: str, default: Any = None) -> Any:
        """A value from this behavior's checks.toml, else the shared one, else `default`."""
        bank = self._bank_with(key)
        return default if bank is None else self.prompts.bank(bank)[key]

    def cues(self, key: str) -> tuple[re.Pattern, ...]:
        """The compiled patterns under `key` in this behavior's checks.toml, else in the
        shared one (matched ignoring case, `^`/`$` at line ends)."""
        if key not in self._cues:
            from generator.errors import TemplateError

            bank = self._bank_with(key)
            if bank is None:
                raise TemplateError(
                    f"{self.name}: no {key!r} cues in {self.checks_bank} or {SHARED_CHECKS}; "
                    "add the list"
                )
            self._cues[key] = self.prompts.bank_patterns(bank, key)
        return self._cues[key]

    def cue_keys(self) -> tuple[str, ...]:
        """The cue lists `check` reads, compiled when the run starts so a bad pattern
        fails before any work."""
        return ()

    @classmethod
    def sample_note(cls, row: dict[str, Any]) -> str | None:
        """What the report says above one of this behavior's sampled rows."""
        if cls.partner and row.get("behavior") == cls.partner:
            return f"{cls.partner} partner of the {cls.name} above"
        return None

    @classmethod
    def preference_pairs(
        cls, rows: list[dict[str, Any]], wrong: list[str]
    ) -> list[tuple[str, str, str, str]]:
        """DPO pairs from one seed's selected rows of this behavior: (kind, prompt,
        chosen, rejected). `wrong` holds confidently wrong answers to the seed's own
        prompt that other behaviors offered (`wrong_answers`)."""
        return []

    def fallback(self, seed: Seed, reference: str | None, verdicts: list) -> Example | None:
        """The row kept for `seed` when none of this behavior's candidates made the
        dataset: `verdicts` holds each candidate's `select.Decision` (its check failures,
        why it was dropped) or the `Skip` of a reply that could not be used; `reference`
        is the seed's answer under the run's annotation policy. None, the default, keeps
        nothing."""
        return None

    @classmethod
    def wrong_answers(cls, rows: list[dict[str, Any]]) -> list[str]:
        """Confidently wrong answers to the seed's prompt that this behavior's rows hold,
        for other behaviors' preference pairs (a near-miss cut before its recovery)."""
        return []

    def offline(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        raise NotImplementedError

    def requests(self, seed: Seed, rng: random.Random) -> list[Ask] | Skip:
        raise NotImplementedError

    def parse(self, seed: Seed, ask: Ask, reply: Any, sample: int, model: str) -> list[Example]:
        raise NotImplementedError

    def rows_per_seed(self) -> int:
        """The most dataset rows one seed can give this behavior (a pair counts two)."""
        return 2 if self.partner else 1

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
            "schema": _schema_text(self.reply_model),
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
                **({"seed_source": seed.source} if self.replaces else {}),
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


@functools.cache
def _schema_text(model: Any) -> str:
    """The schema as the request templates show it, written once per class."""
    return jsontext.dumps(_schema(model), indent=2)


def pick(rng: random.Random, options: Sequence[Any], k: int) -> list[Any]:
    """k choices, distinct while the options last, then cycling (deterministic per rng)."""
    order = rng.sample(list(options), len(options))
    return [order[i % len(order)] for i in range(k)]


def starts_with_any(text: str, phrases) -> bool:
    """True when lower-cased `text` opens with one of `phrases` as whole words."""
    return _opening(tuple(phrases)).match(text.strip().lower()) is not None


@functools.lru_cache(maxsize=64)
def _opening(phrases: tuple[str, ...]) -> re.Pattern:
    """One pattern for "opens with any of `phrases`, then a word boundary" (an alternation
    backtracks into the next phrase when one fails the boundary, as separate tries would);
    it matches nothing when there are no phrases."""
    if not phrases:
        return re.compile(r"(?!)")
    return re.compile("(?:" + "|".join(re.escape(p.lower()) for p in phrases) + r")\b")


def check_model_path(generators: Sequence[Generator]) -> None:
    """Render one request of each generator now, before any work: a behavior without a
    model path, or a request template that does not render, fails first."""
    probe = Seed.make("What is 2 + 3?", "2 + 3 = 5\n#### 5", id="probe")
    for generator in generators:
        try:
            generator.requests(probe, random.Random(0))
        except NotImplementedError:
            raise ConfigError(
                f"behavior {generator.name} has no model requests (no requests/parse); "
                f"run it with {param('backend')} offline"
            ) from None


def register(cls: type[Generator]) -> type[Generator]:
    """Add a generator class to the registry (a decorator)."""
    name = getattr(cls, "name", None)
    if not (isinstance(name, str) and name.isidentifier()):
        raise ConfigError(f"{cls.__qualname__}: a generator's name must be an identifier")
    global _owners
    _REGISTRY[name] = cls
    _owners = None  # asked for per row: rebuilt once after the registry changes
    return cls


def _add(obj: Any, where: str) -> None:
    """What an entry point names: a generator class, or a module (a package: each of its
    modules) whose classes register themselves."""
    if isinstance(obj, type) and issubclass(obj, Generator):
        if obj.name not in _REGISTRY:
            register(obj)
    elif isinstance(obj, ModuleType):
        for info in pkgutil.iter_modules(getattr(obj, "__path__", [])):
            importlib.import_module(f"{obj.__name__}.{info.name}")
    else:
        raise ConfigError(f"plugin {where}: names {obj!r}, not a Generator class or a module")


def _load() -> None:
    """Load every generator from the entry point group, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    found = list(entry_points(group=GROUP))
    # A source tree run without installing has no entry points: the built-ins come
    # through the same loader all the same.
    if not any(ep.value == __name__ for ep in found):
        _add(importlib.import_module(__name__), __name__)
    for ep in found:
        where = f"{ep.name} = {ep.value!r} ({GROUP})"
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin is the user's to fix or uninstall
            raise ConfigError(f"plugin {where} failed to load: {e}; fix or uninstall it") from None
        _add(obj, where)


def registry() -> dict[str, type[Generator]]:
    """Every registered generator, built-ins first (by `order`, then name)."""
    _load()
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))


def owner(behavior: str) -> type[Generator] | None:
    """The generator that makes rows of `behavior` (its own or its partner's)."""
    global _owners
    if _owners is None:
        _owners = {}
        for cls in reversed(registry().values()):  # the first in order wins a clash
            _owners.update(dict.fromkeys(cls.behaviors(), cls))
    return _owners.get(behavior)


def quota_key(behavior: str) -> str:
    """The behavior a row counts toward: a partner row counts toward its owner's."""
    cls = owner(behavior)
    return cls.name if cls is not None else behavior


def defaults() -> tuple[str, ...]:
    """The behaviors a run makes when none are named."""
    return tuple(name for name, cls in registry().items() if cls.default)


def default_mix() -> str:
    """`hedgerow augment`'s default --mix: every default behavior at its share."""
    return ",".join(f"{name}={registry()[name].share:g}" for name in defaults())


def template_dirs() -> list[Path]:
    """Plugins' own template folders, in registry order."""
    return [cls.prompts_dir for cls in registry().values() if cls.prompts_dir is not None]


def schemas() -> dict[str, Any]:
    """The bank schemas the registered behaviors declare."""
    return {name: schema for cls in registry().values() for name, schema in cls.schemas.items()}


def row_behaviors(generators: Iterable[Generator]) -> list[str]:
    """Every row behavior the generators make, in order (each owner, then its partner)."""
    return [b for g in generators for b in g.behaviors()]


def get(names: Sequence[str], prompts: Prompts) -> list[Generator]:
    """Instances of the named generators, in the order given."""
    known = registry()
    if not names:
        raise ConfigError(f"{param('behaviors')} is empty; choose from {', '.join(known)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{param('behaviors')} names {', '.join(repeated)} twice; list each once")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"{param('behaviors')}: unknown behavior {', '.join(unknown)}; "
            f"choose from {', '.join(known)}"
        )
    return [known[n](prompts) for n in names]
