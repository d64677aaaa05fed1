"""sslcore.runs: a run folder's rows, read often while a run appends to them."""
import json

from sslcore import runs
from sslcore.runs import RunDir


def steps_of(run: RunDir) -> list[int]:
    return [row["step"] for row in run.steps()]


def make_run(tmp_path) -> RunDir:
    (tmp_path / "run").mkdir()
    return RunDir(tmp_path / "run")


def test_rows_appended_after_a_read_are_seen_by_the_next_read(tmp_path):
    run = make_run(tmp_path)
    assert run.steps() == []
    run.append_rows("steps", [{"step": step} for step in range(3)])
    assert steps_of(run) == [0, 1, 2]
    run.append_rows("steps", [{"step": 3}])
    assert steps_of(run) == [0, 1, 2, 3]


def test_a_line_still_being_written_is_read_once_it_is_whole(tmp_path):
    run = make_run(tmp_path)
    run.append_rows("steps", [{"step": 0}])
    with open(run.steps_path, "a") as handle:
        handle.write('{"step": 1, "loss": 0.')
    assert steps_of(run) == [0]
    with open(run.steps_path, "a") as handle:
        handle.write('5}\n{"step": 2}\n')
    assert steps_of(run) == [0, 1, 2]


def test_a_line_cut_short_by_a_killed_process_ends_the_rows_as_before(tmp_path):
    run = make_run(tmp_path)
    run.steps_path.write_text('{"step": 0}\n{"step": 1, "lo\n{"step": 2}\n')
    assert steps_of(run) == [0]
    assert steps_of(run) == [0]


def test_rows_dropped_on_resume_are_gone_even_when_the_file_grew_back_before_the_next_read(tmp_path):
    run = make_run(tmp_path)
    run.append_rows("steps", [{"step": step, "loss": 1.0} for step in range(6)])
    assert steps_of(run) == [0, 1, 2, 3, 4, 5]
    run.truncate_rows(0, 2)   # resumed from the checkpoint at step 1
    run.append_rows("steps", [{"step": step, "loss": 2.0} for step in range(2, 9)])
    assert steps_of(run) == list(range(9))
    assert [row["loss"] for row in run.steps()] == [1.0, 1.0] + [2.0] * 7


def test_a_removed_and_recreated_file_is_read_afresh(tmp_path):
    run = make_run(tmp_path)
    run.append_rows("steps", [{"step": step} for step in range(4)])
    assert steps_of(run) == [0, 1, 2, 3]
    run.steps_path.unlink()   # a run started over
    assert run.steps() == []
    run.append_rows("steps", [{"step": 10 + step} for step in range(5)])
    assert steps_of(run) == [10, 11, 12, 13, 14]


def test_a_callers_edit_of_a_row_does_not_reach_the_next_reader(tmp_path):
    run = make_run(tmp_path)
    run.append_rows("steps", [{"step": 0}])
    run.steps()[0]["step"] = 99
    assert steps_of(run) == [0]


def test_a_later_read_parses_only_the_rows_appended_since(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    run.append_rows("steps", [{"step": step} for step in range(1000)])
    run.steps()
    parsed = []
    real_loads = json.loads
    monkeypatch.setattr(runs.json, "loads", lambda text: parsed.append(text) or real_loads(text))
    run.append_rows("steps", [{"step": 1000}, {"step": 1001}])
    assert steps_of(run)[-3:] == [999, 1000, 1001]
    assert len(parsed) == 2


def test_a_poller_gets_only_the_rows_after_the_step_it_has_and_copies_no_others(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    run.append_rows("steps", [{"step": step, "loss": 1.0} for step in range(1000)])
    assert [row["step"] for row in run.steps(after_step=996)] == [997, 998, 999]
    assert [row["step"] for row in run.steps(after_step=-1)] == list(range(1000))
    assert run.steps(after_step=999) == []
    copied = []
    monkeypatch.setattr(runs, "dict", lambda row: copied.append(row) or row.copy(), raising=False)
    run.steps(after_step=990)
    assert len(copied) == 9     # a status poll with most rows in hand copies only the new ones
    run.steps(after_step=995)[0]["loss"] = 99.0
    assert run.steps()[996]["loss"] == 1.0
