"""Where every command may write (one rule, `outputs.check_target`), one writer at a time
(`outputs.Lock`) and what a failed write says (`outputs.describe`)."""

import errno
import os
import stat

import pytest
from click.testing import CliRunner

from generator import outputs
from generator.cli import main
from generator.errors import ConfigError, RunFolderError

from .conftest import EXAMPLES, read_jsonl


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def run(tmp_path):
    """An augment run folder R (the run the issue's command writes into)."""
    result = invoke("augment", EXAMPLES, "--mix", "hedge=1", "--run", "R", "-o", "first.jsonl")
    assert result.exit_code == 0, result.output
    return tmp_path / "R"


def test_no_command_writes_into_a_run_folder_whatever_the_spelling(run, tmp_path):
    (tmp_path / "L").symlink_to(run)  # the run folder through a symlink
    (tmp_path / "link.jsonl").symlink_to(run / "dataset.jsonl")  # its dataset through one
    before = snapshot(run)
    spellings = ["R/dataset.jsonl", run / "dataset.jsonl", "L/dataset.jsonl", "link.jsonl"]
    spellings += ["R/../R/candidates.jsonl", "R/new.jsonl"]  # and a file it does not own
    for target in spellings:
        for args in (
            ["augment", EXAMPLES, "--mix", "hedge=1", "--run", "R", "-o", target],
            ["score", EXAMPLES, "--scorer", "embedded", "-o", target, "--overwrite"],
            ["export", run, "--format", "openai", "-o", target],
            ["report", run, "-o", target],
        ):
            result = invoke(*args)
            assert result.exit_code == 1, (args, result.output)
            (line,) = result.output.strip().splitlines()
            assert f"is inside the run folder {run}" in line, line
    nested = invoke("generate", EXAMPLES, "-o", "L/sub")  # a run inside another run
    assert nested.exit_code == 1 and f"is inside the run folder {run}" in nested.output
    assert snapshot(run) == before
    # the run still reads, exports and resumes
    assert invoke("export", run, "--format", "openai").exit_code == 0
    assert invoke("report", run).exit_code == 0
    again = invoke("augment", EXAMPLES, "--mix", "hedge=1", "--run", "R", "-o", "first.jsonl")
    assert again.exit_code == 0, again.output


def test_a_run_folder_a_command_is_about_to_create_counts_before_it_exists(tmp_path):
    result = invoke("augment", EXAMPLES, "--mix", "hedge=1", "--run", "new", "-o", "new/x.jsonl")
    assert result.exit_code == 1 and "is inside the run folder" in result.output
    assert not (tmp_path / "new").exists()


def test_an_output_is_never_an_input_of_the_same_command(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("question,answer\nWhat is 2 + 2?,4\n")
    original = csv.read_bytes()
    (tmp_path / "alias.csv").symlink_to(csv)
    seeds = tmp_path / "s.jsonl"
    seeds.write_bytes(EXAMPLES.read_bytes())
    folder = tmp_path / "data"
    folder.mkdir()
    inside = folder / "s.jsonl"
    inside.write_bytes(EXAMPLES.read_bytes())
    for args, message in (
        (["score", csv, "-o", csv, "--overwrite", "--scorer", "embedded"], "is the input"),
        (["score", csv, "-o", "alias.csv", "--overwrite", "--scorer", "embedded"], "is the input"),
        (["augment", "alias.csv", "-o", csv, "--mix", "hedge=1"], "is the input"),
        (["generate", inside, "-o", folder, "--overwrite"], "holds the input"),
    ):
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        (line,) = result.output.strip().splitlines()
        assert message in line, line
    assert csv.read_bytes() == original
    assert inside.read_bytes() == seeds.read_bytes() == EXAMPLES.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["s.jsonl"]


def _specials(tmp_path):
    fifo = tmp_path / "fifo.jsonl"  # a name augment would write
    os.mkfifo(fifo)
    yield fifo, stat.S_ISFIFO
    if os.geteuid() == 0:  # a null device of our own: never the machine's /dev/null
        null = tmp_path / "null.jsonl"
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        yield null, stat.S_ISCHR


def test_an_output_never_replaces_a_device_or_a_pipe(run, tmp_path):
    for target, kind in _specials(tmp_path):
        for args in (
            ["augment", EXAMPLES, "--mix", "hedge=1", "--run", "R", "-o", target],
            ["score", EXAMPLES, "--scorer", "embedded", "-o", target],
            ["export", run, "--format", "openai", "-o", target],
            ["report", run, "-o", target],
        ):
            result = invoke(*args)
            assert result.exit_code == 1, (args, result.output)
            (line,) = result.output.strip().splitlines()
            assert "is a device, pipe or socket, not a file" in line, line
            assert kind(target.lstat().st_mode)


def test_the_lock_admits_one_writer_and_leaves_no_file(tmp_path):
    target = tmp_path / "x.jsonl"
    with outputs.Lock(outputs.lock_file(target), target):
        assert outputs.lock_file(target).exists()
        with pytest.raises(RunFolderError, match="another hedgerow run is writing to it"):
            outputs.Lock(outputs.lock_file(target), target).acquire()
    assert not outputs.lock_file(target).exists()
    with outputs.Lock(outputs.lock_file(target), target):  # free again
        pass


def test_a_run_folder_and_an_output_share_the_lock(tmp_path):
    from generator.runfolder import RunFolder

    folder = RunFolder(tmp_path / "run", "fp")
    folder.open()
    try:
        with pytest.raises(RunFolderError, match="another hedgerow run is writing to it"):
            outputs.Lock(tmp_path / "run" / ".lock", tmp_path / "run").acquire()
    finally:
        folder.close()


@pytest.mark.parametrize(
    "code,says",
    [
        (errno.ENOSPC, "free some space"),
        (errno.EFBIG, "free some space"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "no permission to write there"),
        (errno.ENOENT, "a folder on its path is missing"),
        (errno.ENOTDIR, "in the way on its path"),
        (errno.ENXIO, "; choose another path"),
    ],
)
def test_a_failed_write_names_its_cause_and_only_space_suggests_space(code, says):
    line = str(outputs.write_error("out.jsonl", OSError(code, os.strerror(code))))
    assert line.startswith("out.jsonl: cannot write it (") and says in line
    assert ("free some space" in line) == (code in (errno.ENOSPC, errno.EFBIG))


def test_writes_that_fail_say_what_went_wrong(tmp_path, run):
    (tmp_path / "afile").write_text("a file where a folder should be")
    for args in (
        ["augment", EXAMPLES, "--mix", "hedge=1", "--run", "R", "-o", "afile/x.jsonl"],
        ["score", EXAMPLES, "--scorer", "embedded", "-o", "afile/x.jsonl"],
        ["export", run, "--format", "openai", "-o", "afile/x.jsonl"],
        ["report", run, "-o", "afile/r.html"],
        ["generate", EXAMPLES, "-o", "afile/run"],
    ):
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        (line,) = result.output.strip().splitlines()
        assert "afile" in line and "in the way on its path" in line, line
        assert "free some space" not in line


@pytest.mark.model
def test_a_missing_folder_is_made_by_every_command_that_writes(tmp_path, run):
    for args, made in (
        (["augment", EXAMPLES, "--mix", "hedge=1", "--run", "R", "-o", "a/b/x.jsonl"], "a/b"),
        (["export", run, "--format", "openai", "-o", "c/d/x.jsonl"], "c/d"),
        (["report", run, "-o", "e/f/r.html"], "e/f"),
        (["generate", EXAMPLES, "-o", "g/h/run"], "g/h/run"),
        (["score", EXAMPLES, "--scorer", "embedded", "-o", "i/j/x.jsonl"], "i/j"),
    ):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
        assert (tmp_path / made).is_dir()
    assert read_jsonl(tmp_path / "c" / "d" / "x.jsonl")


def test_check_target_resolves_before_it_compares(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "journal.jsonl").write_text('{"fingerprint": "x"}\n')
    owned = tmp_path / "r" / "openai.jsonl"
    outputs.check_target("r/./openai.jsonl", owned=[owned])  # its own file, spelled oddly
    with pytest.raises(ConfigError, match="is inside the run folder"):
        outputs.check_target("r/sub/../alpaca.jsonl", owned=[owned])
    assert outputs.check_target(tmp_path / "r", "run")  # a run resumes its own folder
    (tmp_path / "ds").mkdir()  # a save_to_disk input: nothing is written inside it
    with pytest.raises(ConfigError, match="is inside the input"):
        outputs.check_target("ds/../ds/x.jsonl", inputs=[tmp_path / "ds"])
