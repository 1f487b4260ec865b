import json

import pytest

from generator.errors import ConfigError, RunFolderError
from generator.runfolder import CANDIDATES, DATASET, JOURNAL, RunFolder


def test_recovery_cuts_files_back_to_last_checkpoint(tmp_path):
    folder = RunFolder(tmp_path / "run", "fp", checkpoint_seconds=0)
    assert folder.open() == 0
    folder.write([{"id": 1}], [{"c": 1}])
    folder.write([{"id": 2}], [{"c": 2}])
    folder.close()
    with (tmp_path / "run" / DATASET).open("a") as fh:
        fh.write('{"id": 3}\n{"id": 4, "half')  # written after the checkpoint, then killed
    again = RunFolder(tmp_path / "run", "fp")
    assert again.open() == 2
    again.close()
    rows = [json.loads(x) for x in (tmp_path / "run" / DATASET).read_text().splitlines()]
    assert rows == [{"id": 1}, {"id": 2}]
    assert len((tmp_path / "run" / CANDIDATES).read_text().splitlines()) == 2


def test_half_written_journal_line_is_ignored(tmp_path):
    folder = RunFolder(tmp_path / "run", "fp", checkpoint_seconds=0)
    folder.open()
    folder.write([{"id": 1}], [])
    folder.close()
    with (tmp_path / "run" / JOURNAL).open("a") as fh:
        fh.write('{"done": 9, "si')
    assert RunFolder(tmp_path / "run", "fp").open() == 1


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    RunFolder(tmp_path / "run", "fp").open()
    with pytest.raises(RunFolderError, match="other settings.*--overwrite"):
        RunFolder(tmp_path / "run", "other").open()
    assert RunFolder(tmp_path / "run", "other").open(overwrite=True) == 0


def test_foreign_files_are_not_clobbered(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / DATASET).write_text("{}\n")
    with pytest.raises(RunFolderError, match="no journal"):
        RunFolder(tmp_path / "run", "fp").open()


def test_manifest_is_replaced_atomically(tmp_path):
    folder = RunFolder(tmp_path / "run", "fp")
    folder.open()
    path = folder.write_manifest({"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_interrupt_between_the_two_writes_never_journals_half_a_seed(tmp_path):
    folder = RunFolder(tmp_path / "run", "fp", checkpoint_seconds=3600)
    folder.open()
    folder.write([{"id": 1}], [{"c": 1}])
    real = folder._files[DATASET]

    class Interrupted:
        def write(self, blob):
            raise KeyboardInterrupt  # lands after the candidates line, before the dataset line

        def __getattr__(self, name):
            return getattr(real, name)

    folder._files[DATASET] = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        folder.write([{"id": 2}], [{"c": 2}])
    folder._files[DATASET] = real
    folder.checkpoint()  # what run.py's finally does
    folder.close()
    again = RunFolder(tmp_path / "run", "fp")
    assert again.open() == 1
    again.close()
    assert (tmp_path / "run" / CANDIDATES).read_text() == '{"c": 1}\n'
    assert (tmp_path / "run" / DATASET).read_text() == '{"id": 1}\n'


def test_second_writer_is_refused(tmp_path):
    first = RunFolder(tmp_path / "run", "fp")
    first.open()
    with pytest.raises(RunFolderError, match="another hedgerow run"):
        RunFolder(tmp_path / "run", "fp").open()
    first.close()
    RunFolder(tmp_path / "run", "fp").open()


def test_a_resume_redoes_from_the_first_unsettled_seed_and_journals_the_cut(tmp_path):
    folder = RunFolder(tmp_path / "run", "fp", checkpoint_seconds=0)
    folder.open()
    folder.write([{"id": 1}], [{"c": 1}])
    folder.write([], [{"c": 2, "failed": True}], settled=False)  # its requests failed
    folder.write([{"id": 3}], [{"c": 3}])
    folder.close()
    again = RunFolder(tmp_path / "run", "fp")
    assert again.open() == 1 and again.retried == 2
    again.close()
    assert (tmp_path / "run" / DATASET).read_text() == '{"id": 1}\n'
    assert (tmp_path / "run" / CANDIDATES).read_text() == '{"c": 1}\n'
    # the cut is in the journal: the next start resumes from there, and redoes nothing more
    third = RunFolder(tmp_path / "run", "fp")
    assert third.open() == 1 and third.retried == 0
    third.close()


def test_a_run_that_fails_before_its_first_seed_leaves_nothing_behind(tmp_path):
    folder = RunFolder(tmp_path / "a" / "b" / "run", "fp")
    folder.open()
    folder.abandon()  # what generate does when it fails before the first seed
    folder.close()
    assert list(tmp_path.iterdir()) == []  # every folder it made is gone, the lock too


def test_a_resumed_folder_with_work_is_left_as_it_was(tmp_path):
    first = RunFolder(tmp_path / "run", "fp", checkpoint_seconds=0)
    first.open()
    first.write([{"id": 1}], [{"c": 1}])
    first.close()
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    again = RunFolder(tmp_path / "run", "fp")
    assert again.open() == 1
    again.abandon()  # fails before its first new seed
    again.close()
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_a_run_folder_is_never_an_input_nor_inside_another_run(tmp_path):
    seeds = tmp_path / "run" / "seeds.jsonl"
    seeds.parent.mkdir()
    seeds.write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(ConfigError, match="holds the input"):
        RunFolder(tmp_path / "run", "fp", inputs=[seeds]).open(overwrite=True)
    assert seeds.exists()
    RunFolder(tmp_path / "outer", "fp").open()
    with pytest.raises(ConfigError, match="is inside the run folder"):
        RunFolder(tmp_path / "outer" / "inner", "fp").open()
    assert not (tmp_path / "outer" / "inner").exists()
