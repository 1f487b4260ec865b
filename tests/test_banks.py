"""Every phrase bank's shape is declared once (generator/banks.py) and checked at load."""

import copy
import tomllib
from pathlib import Path

import pytest

from generator import banks
from generator.errors import TemplateError
from generator.templates import default_prompts_dir

SHIPPED = sorted(
    p.relative_to(default_prompts_dir()).as_posix() for p in default_prompts_dir().rglob("*.toml")
)


def shipped(name: str) -> dict:
    return tomllib.loads((default_prompts_dir() / name).read_text(encoding="utf-8"))


def test_every_shipped_bank_has_a_schema_and_passes_it():
    assert set(SHIPPED) == set(banks.SCHEMAS), "declare the new bank in generator/banks.py"
    for name in SHIPPED:
        data = shipped(name)
        checked = banks.check(name, data, Path(name))
        assert {k: checked[k] for k in data} == data  # read as written, defaults added


def _wrong(value):
    """A value of another type than `value`."""
    return {} if isinstance(value, str | int | float | bool | list) else 5


def _mutations(data, where=()):
    """(where, bank) with one field or list element given the wrong type, or removed."""
    pairs = data.items() if isinstance(data, dict) else enumerate(data[:1])
    for key, value in pairs:
        yield (*where, key), "wrong", _set(data, key, _wrong(value))
        if isinstance(data, dict):
            yield (*where, key), "missing", {k: v for k, v in data.items() if k != key}
        if isinstance(value, list) and value:
            yield (*where, key), "wrong", _set(data, key, [*value, _wrong(value[0])])
        if isinstance(value, dict | list):
            for inner_where, how, inner in _mutations(value, (*where, key)):
                yield inner_where, how, _set(data, key, inner)


def _set(data, key, value):
    out = copy.copy(data)
    out[key] = value
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_every_field_of_every_shipped_bank_is_typed_and_required_or_defaulted(name):
    data = shipped(name)
    cases = list(_mutations(data))
    assert cases
    for where, how, bank in cases:
        top = str(where[0])
        try:
            checked = banks.check(name, bank, Path("over") / name)
        except TemplateError as e:
            message = str(e)
            assert message.startswith(f"{name}: {top}") and message.endswith(f"over/{name}")
            assert ("is missing" if how == "missing" else " must be ") in message, message
            assert "\n" not in message
            continue
        # only leaving out a field with a default (or a key of a free table) loads
        assert how == "missing", f"{name}: {where} accepted a value of the wrong type"
        if len(where) == 1:
            assert checked[top] == banks.SCHEMAS[name].model_fields[top].default
