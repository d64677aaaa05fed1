"""A time budget (--budget): the plan from measured times, on a fake clock; a budget run trains exactly the steps it
planned, as a plain run of that length would, and a resumed one continues the same plan."""
import json

import keras
import numpy as np
import pytest

from sslcore import budget
from sslcore.config import TrainConfig
from sslcore.runs import RunDir
from sslcore.trainer import Trainer
from tests.test_trainer import small_config, small_dataset, weights, without_timing

pytestmark = pytest.mark.core


class FakeClock:
    """Time passes only when the stubs below say so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Ticks:
    """A clock that moves ``seconds`` each time it is read: a trainer's plan then depends only on its code."""

    def __init__(self, seconds=1.0):
        self.now, self.seconds = 0.0, seconds

    def __call__(self):
        self.now += self.seconds
        return self.now


def measured_on_fake_clock():
    clock = FakeClock()

    def train_step(i):   # the first step compiles for 9.5 s; every step takes 0.5 s
        clock.now += 0.5 + (9.5 if i == 0 else 0.0)

    def evaluate():
        clock.now += 3.0

    def checkpoint():
        clock.now += 1.0

    return budget.measure(train_step, lambda metrics: None, evaluate, checkpoint, clock=clock, min_seconds=2.0)


def test_the_plan_follows_the_measured_throughput():
    measured = measured_on_fake_clock()
    assert measured == budget.Throughput(compile_seconds=9.5, step_seconds=0.5, eval_seconds=3.0, checkpoint_seconds=1.0)
    # 125 s, 20 spent: 95.5 s for compiling again (9.5) and epochs of 10 steps (5 s) + evaluation and checkpoint (4 s):
    # 10 whole epochs (90 s), then 1.5 s for a partial 11th epoch after its own 4 s: 3 steps.
    plan = budget.plan(125.0, 20.0, measured, steps_per_epoch=10, batch_size=8)
    assert (plan.steps, plan.epochs, plan.images) == (103, 11, 824)
    assert plan.expected_seconds == pytest.approx(125.0), "ends at the deadline"
    assert budget.plan(125.5, 20.0, measured, steps_per_epoch=10, batch_size=8).steps == 104, "not before it"
    assert budget.plan(124.9, 20.0, measured, steps_per_epoch=10, batch_size=8).steps == 102, "nor after it"
    assert budget.BudgetPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_a_budget_too_short_or_a_warm_up_too_long_is_a_clear_error():
    measured = measured_on_fake_clock()
    with pytest.raises(ValueError, match=r"budget_minutes=0.5 does not leave time for one training step.*at least 0.6 minutes"):
        budget.plan(30.0, 20.0, measured, steps_per_epoch=10, batch_size=8)
    with pytest.raises(ValueError, match=r"warm-up \(110 steps\) does not fit the 103 steps"):
        budget.plan(125.0, 20.0, measured, steps_per_epoch=10, batch_size=8, warmup_steps=110)
    with pytest.raises(ValueError, match="budget_minutes must be positive"):
        TrainConfig(budget_minutes=0).validate()
    TrainConfig(budget_minutes=1, epochs=1, warmup_epochs=2).validate()   # the plan checks the warm-up instead


def test_budget_and_epochs_flags_together_are_refused(tmp_path, capsys):
    from sslcore.cli import main

    assert main(["train", "--budget", "5", "--epochs", "3", "--out", str(tmp_path / "run")]) == 2
    assert "give --budget or --epochs, not both" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["train", "--budget", "-1", "--out", str(tmp_path / "run")]) == 2
    assert "budget_minutes must be positive" in capsys.readouterr().err


def test_a_budget_on_several_hosts_is_refused(tmp_path, capsys, monkeypatch):
    from sslcore.cli import main

    monkeypatch.setattr("sslcore.distribute.join_hosts", lambda: True)   # as if the launcher started two hosts
    assert main(["train", "--budget", "5", "--out", str(tmp_path / "run")]) == 2
    assert "cannot plan a run on several hosts" in capsys.readouterr().err


def test_a_budget_run_trains_as_a_plain_run_of_the_planned_length(tmp_path):
    """The measuring steps are thrown away: 34 s on the ticking clock plan 6 epochs, trained as --epochs 6 trains."""
    # Ticks of 1 s: 9 s before the plan, steps of 1 s, evaluation 1 s, checkpoint 1 s, compiling 0 s (2 steps an epoch).
    planned = Trainer(small_config(budget_minutes=34 / 60), tmp_path / "budget", dataset=small_dataset(), clock=Ticks())
    summary = planned.fit()
    assert summary["state"] == "finished" and summary["global_step"] == 12 and summary["epochs"] == 6
    plain = Trainer(small_config(epochs=6), tmp_path / "plain", dataset=small_dataset())
    plain.fit()
    for a, b in zip(weights(plain), weights(planned)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_resumed_budget_run_continues_its_plan_exactly(tmp_path):
    config = small_config(budget_minutes=36.5 / 60)   # 27.5 s after the 9 spent: 6 epochs of 4 s, then 1 step
    whole = Trainer(config, tmp_path / "whole", dataset=small_dataset(), clock=Ticks())
    assert whole.fit()["state"] == "finished"
    run = RunDir(tmp_path / "whole")
    saved = json.loads(run.config_path.read_text())
    assert saved["epochs"] == 7 and saved["budget_minutes"] == pytest.approx(36.5 / 60)
    assert {k: saved["budget_plan"][k] for k in ("steps", "epochs", "images")} == {"steps": 13, "epochs": 7, "images": 104}
    assert [row["step"] for row in run.steps()] == list(range(1, 14)), "exactly the planned steps"
    epochs = run.epochs()
    assert [row["step"] for row in epochs] == [2, 4, 6, 8, 10, 12, 13], "the last epoch is partial"
    assert epochs[-1]["planned_steps"] == 13 and epochs[-1]["planned_images"] == 104
    rates = [row["learning_rate"] for row in run.steps()]
    assert rates[0] == pytest.approx(config.learning_rate) and rates[-1] < 0.02 * config.learning_rate, \
        "the cosine schedule ends with the planned steps"

    split = RunDir(tmp_path / "split")
    first = Trainer(config, split.path, dataset=small_dataset(), clock=Ticks())
    assert first.fit(max_steps=3)["state"] == "stopped"
    # A resumed run reads its plan: a clock that would plan another length changes nothing.
    resumed_config = TrainConfig.from_run_config(json.loads(split.config_path.read_text()))
    second = Trainer(resumed_config, split.path, dataset=small_dataset(), clock=Ticks(100.0))
    assert second.fit(resume=True)["global_step"] == 13
    assert json.loads(split.config_path.read_text())["budget_plan"] == saved["budget_plan"]
    for a, b in zip(weights(whole), weights(second)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for expected, got in zip(without_timing(epochs), without_timing(split.epochs()), strict=True):
        assert got == pytest.approx(expected, rel=1e-4)


def test_the_progress_bar_shows_the_time_left_of_the_budget(capsys):
    from sslcore.commands.train import ProgressBar

    bar = ProgressBar()
    bar.on_train_begin({"total_steps": 13, "start_step": 0, "backend": keras.backend.backend(), "epochs": 7,
                        "budget_seconds": 120.0})
    bar.on_step_end({"step": 1, "loss": 1.0, "contrastive_accuracy": 0.5, "images_per_second": 10.0,
                     "budget_left_seconds": 65.2})
    assert bar.bar.postfix.endswith("budget left=1:05")
    bar.on_train_end({})
    assert "budget of 2 min: 7 epochs, 13 steps planned" in capsys.readouterr().err

    from pages.train import describe   # the Train page's progress line
    line = describe({"state": "running", "step": 1, "total_steps": 13, "epoch": 1, "epochs": 7,
                     "images_per_second": 10.0, "eta_seconds": 30, "budget_left_seconds": 65.2})
    assert line.endswith("· 1 min 05 s of the budget left")
