"""A behavior is a plugin: a package installed with a `hedgerow.generators` entry point
reaches the dataset, the exports and the report with no hedgerow file changed; and the
built-ins come in through the same entry point."""

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from generator import generators

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "seeds.jsonl"

# A throwaway package: one module and one template folder, with an entry point, laid out
# on disk as an installer lays out an installed distribution (a .dist-info beside it).
PLUGIN = '''
from pathlib import Path

from generator import banks
from generator.generators import Generator, register


class ConfirmChecks(banks.Bank):
    confirmation: list[str]


@register
class Confirm(Generator):
    """Restates the answer behind a confirmation (a toy behavior)."""

    name = "confirm"
    template = "confirm/offline.j2"
    bank = "confirm/checks.toml"
    share = 0.5
    order = 50
    prompts_dir = Path(__file__).parent / "prompts"
    schemas = {"confirm/checks.toml": ConfirmChecks}

    def offline(self, seed, ctx, k):
        if skip := self.unsuitable(seed):
            return skip
        text = self.prompts.render(self.template, answer=seed.response.strip())
        return [self.example(seed, "confirm", 0, seed.prompt, text, {"style": "toy"})]

    def cue_keys(self):
        return ("confirmation",)

    def check(self, example, reference):
        ok = any(p.search(example.response) for p in self.cues("confirmation"))
        return [] if ok else ["confirm_without_confirmation"]

    @classmethod
    def sample_note(cls, row):
        return "a toy confirmation, style " + str(row["attributes"].get("style"))

    @classmethod
    def preference_pairs(cls, rows, wrong):
        prompt = rows[0]["messages"][0]["content"]
        return [("confirm", prompt, rows[0]["messages"][-1]["content"], "No idea.")]
'''


@pytest.fixture
def site(tmp_path):
    """A folder holding the installed toy plugin, for PYTHONPATH."""
    site = tmp_path / "site"
    package = site / "toyplug"
    (package / "prompts" / "confirm").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    (package / "prompts" / "confirm" / "offline.j2").write_text("To confirm: {{ answer }}\n")
    (package / "prompts" / "confirm" / "checks.toml").write_text(
        'confirmation = ["^to confirm:"]\n'
    )
    info = site / "toyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hedgerow.generators]\nconfirm = toyplug:Confirm\n")
    return site


def hedgerow(site: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "generator.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_an_installed_plugin_reaches_the_dataset_the_exports_and_the_report(site, tmp_path):
    run = tmp_path / "run"
    done = hedgerow(site, "generate", EXAMPLES, "-o", run)  # no --behaviors: the defaults
    assert done.returncode == 0, done.stderr
    written = rows(run / "dataset.jsonl")
    confirms = [r for r in written if r["behavior"] == "confirm"]
    assert confirms and {"hedge", "refusal", "near_miss"} <= {r["behavior"] for r in written}
    assert all(r["messages"][-1]["content"].startswith("To confirm: ") for r in confirms)
    assert confirms[0]["provenance"]["template"] == "confirm/offline.j2"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["behaviors"][-1] == "confirm"
    assert "confirm/checks.toml" in manifest["templates"]

    dpo = tmp_path / "dpo.jsonl"
    done = hedgerow(site, "export", run, "--format", "dpo", "-o", dpo)
    assert done.returncode == 0, done.stderr
    toy = [p for p in rows(dpo) if p["rejected"] == "No idea."]
    assert len(toy) == len(confirms)
    sft = tmp_path / "sft.jsonl"
    assert hedgerow(site, "export", run, "--format", "openai", "-o", sft).returncode == 0
    assert len(rows(sft)) == len(written)

    done = hedgerow(site, "report", run)
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    assert "a toy confirmation, style toy" in page


def test_a_plugin_s_checks_and_share_come_with_it(site, tmp_path):
    # its checks: a cue it does not find fails its rows
    (site / "toyplug" / "prompts" / "confirm" / "checks.toml").write_text(
        'confirmation = ["^never$"]\n'
    )
    run = tmp_path / "run"
    done = hedgerow(site, "generate", EXAMPLES, "--behaviors", "confirm", "-o", run)
    assert done.returncode == 0, done.stderr
    candidates = [c for c in rows(run / "candidates.jsonl") if c.get("checks")]
    assert candidates
    assert all(c["checks"]["failures"] == ["confirm_without_confirmation"] for c in candidates)
    assert all(c["status"] == "dropped" for c in candidates)
    assert not rows(run / "dataset.jsonl")
    # its default share is in augment's default mix
    done = hedgerow(site, "augment", "--help")
    assert "installed plugins" in done.stdout


def test_the_built_ins_come_through_the_entry_point():
    declared = [ep for ep in entry_points(group=generators.GROUP) if ep.name == "builtins"]
    assert [ep.value for ep in declared] == ["generator.generators"]
    known = generators.registry()
    assert list(known)[:3] == ["hedge", "refusal", "near_miss"]
    assert generators.owner("contrast") is known["refusal"]
    assert generators.quota_key("contrast") == "refusal"
    assert generators.default_mix().startswith("hedge=0.2,refusal=0.1,near_miss=0.1")
