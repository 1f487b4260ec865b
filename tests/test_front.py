"""The library's front door: `from generator import …`, `agenerate` inside a running event
loop, and errors that name parameters (the CLI shows the same errors as flags)."""

import asyncio
import subprocess
import sys

import pytest
from click.testing import CliRunner

import generator
from generator.cli import main
from tests.conftest import EXAMPLES


def _config(out: str):
    return generator.RunConfig(
        seeds=(str(EXAMPLES),), out=out, scorer="none", probe="none", limit=6, seed=3
    )


def test_every_exported_name_imports_and_is_what_it_says():
    for name in generator.__all__:
        assert getattr(generator, name) is not None, name
    from generator.errors import ConfigError, HedgerowError
    from generator.export import export
    from generator.run import agenerate, generate

    assert generator.generate is generate and generator.agenerate is agenerate
    assert generator.export is export
    assert asyncio.iscoroutinefunction(generator.agenerate)
    assert issubclass(generator.RunningLoopError, HedgerowError)
    assert generator.ConfigError is ConfigError


def test_a_function_keeps_its_name_when_its_module_is_imported_first():
    code = (
        "import generator.export, generator.report, generator.augment, generator.evaluate\n"
        "import generator\n"
        "from generator import export, report, augment, evaluate\n"
        "print(all(callable(f) and not hasattr(f, '__path__') and f.__name__ != 'module'"
        " for f in (export, report, augment, evaluate)), type(generator.export).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "function"]


def test_importing_the_package_imports_no_stage():
    code = (
        "import sys, generator; print(sorted(m for m in sys.modules if m.startswith('generator')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['generator']"


def test_agenerate_inside_a_running_loop_writes_the_bytes_generate_writes():
    blocking = generator.generate(_config("sync"))

    async def notebook_cell():
        # a caller with its own loop, and other work on it while the run goes
        ticks = []

        async def tick():
            while True:
                ticks.append(1)
                await asyncio.sleep(0)

        other = asyncio.ensure_future(tick())
        result = await generator.agenerate(_config("async"))
        other.cancel()
        return result, ticks

    result, ticks = asyncio.run(notebook_cell())
    assert result.status == blocking.status == "complete"
    assert result.seeds == blocking.seeds == 6
    for name in ("dataset.jsonl", "candidates.jsonl"):
        made = (result.path / name).read_bytes()
        assert made and made == (blocking.path / name).read_bytes(), name
    assert ticks  # the caller's loop kept running


def test_generate_inside_a_running_loop_is_a_typed_error_that_points_at_agenerate():
    async def cell():
        generator.generate(_config("never"))

    with pytest.raises(generator.RunningLoopError, match=r"await agenerate\(\.\.\.\)"):
        asyncio.run(cell())


def test_library_errors_name_parameters_and_the_cli_names_flags(tmp_path):
    with pytest.raises(generator.ConfigError) as caught:
        generator.generate(generator.RunConfig(seeds=(str(EXAMPLES),), candidates=0))
    assert str(caught.value) == "candidates must be at least 1"
    assert caught.value.params() == ["candidates"]

    with pytest.raises(generator.ConfigError) as caught:
        generator.generate(generator.RunConfig(seeds=(str(EXAMPLES),), base_urls=("http://x",)))
    assert str(caught.value) == "base_urls is for backend openai; add backend openai"

    out = CliRunner().invoke(main, ["generate", str(EXAMPLES), "--base-url", "http://x"])
    assert out.exit_code == 1
    assert "Error: --base-url is for --backend openai; add --backend openai" in out.output
    assert "\x1f" not in out.output


def test_augment_mix_errors_name_the_parameter_and_the_flag():
    with pytest.raises(generator.ConfigError) as caught:
        generator.augment(generator.RunConfig(seeds=(str(EXAMPLES),)), {"nope": 0.1})
    assert str(caught.value).startswith("mix: unknown behavior 'nope'")
    out = CliRunner().invoke(main, ["augment", str(EXAMPLES), "--mix", "nope=0.1"])
    assert out.exit_code == 1 and "Error: --mix: unknown behavior 'nope'" in out.output
