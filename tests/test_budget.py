"""A time budget (--budget): the plan from measured times, on a fake clock; a budget run trains exactly the steps it
planned, as a plain run of that length would, and a resumed one continues the same plan."""
import dataclasses
import json
import math

import keras
import numpy as np
import pytest

from sslcore import budget
from sslcore.config import TrainConfig
from sslcore.runs import RunDir
from sslcore.trainer import Trainer
from tests.helpers import FakeClock
from tests.test_trainer import small_config, small_dataset, weights, without_timing

# Marked one by one: `core` (run again on JAX and PyTorch) only where the Keras backend computes something.


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


class Machine:
    """A fake machine for a budget run: its clock moves only when the run works, by what the work costs here.

    Steps (the first of each compiled step also pays ``compile``), evaluations, checkpoints and exports cost their
    seconds, times ``factor`` once the clock has passed ``change_at``: a machine that slows down (factor 2) or speeds
    up (0.5) as other processes start or end. Everything else (loading, building) costs nothing."""

    def __init__(self, step=1.0, evaluation=1.0, checkpoint=0.0, export=0.0, compile=0.0, change_at=None, factor=1.0):
        self.now = 0.0
        self.costs = {"step": step, "evaluation": evaluation, "checkpoint": checkpoint, "export": export,
                      "compile": compile}
        self.change_at, self.factor = change_at, factor

    def __call__(self):
        return self.now

    def work(self, kind):
        changed = self.change_at is not None and self.now >= self.change_at
        self.now += self.costs[kind] * (self.factor if changed else 1.0)

    def install(self, monkeypatch):
        import sslcore.trainer as trainer_module

        machine, make_step = self, trainer_module.make_train_step

        class TimedStep:
            def __init__(self, step):
                self.step, self.compiled = step, False

            def __call__(self, *args):
                if not self.compiled:
                    machine.work("compile")
                    self.compiled = True
                machine.work("step")
                return self.step(*args)

            def __getattr__(self, name):   # sync, reload, assign
                return getattr(self.step, name)

        def timed(method, kind):
            def run(*args, **kwargs):
                machine.work(kind)
                return method(*args, **kwargs)
            return run

        monkeypatch.setattr(trainer_module, "make_train_step", lambda *a, **k: TimedStep(make_step(*a, **k)))
        monkeypatch.setattr(Trainer, "evaluate", timed(Trainer.evaluate, "evaluation"))
        monkeypatch.setattr(Trainer, "save_models", timed(Trainer.save_models, "export"))
        monkeypatch.setattr(RunDir, "save_checkpoint", timed(RunDir.save_checkpoint, "checkpoint"))
        return self


@pytest.mark.core
def test_a_budget_run_trains_as_a_plain_run_of_the_planned_length(tmp_path, monkeypatch):
    """The measuring steps are thrown away: on a steady machine the re-plans keep the first plan, and the run trains
    as --epochs 6 trains."""
    # 6.5 s to plan (4 steps of 1 s, two evaluations of 1 s, an export of 0.5 s), then epochs of 2 steps and an
    # evaluation (3 s): 6 of them (18 s) and the export end 0.25 s before the deadline (a 7th epoch does not fit).
    machine = Machine(step=1.0, evaluation=1.0, export=0.5).install(monkeypatch)
    planned = Trainer(small_config(budget_minutes=25.25 / 60), tmp_path / "budget", dataset=small_dataset(),
                      clock=machine)
    summary = planned.fit()
    assert summary["state"] == "finished" and summary["global_step"] == 12 and summary["epochs"] == 6
    assert machine.now == pytest.approx(25.0)
    run = RunDir(tmp_path / "budget")
    assert {row["planned_steps"] for row in run.steps()} == {12} and run.epochs()[-1]["replans"] == 0
    plain = Trainer(small_config(epochs=6), tmp_path / "plain", dataset=small_dataset())
    plain.fit()
    for a, b in zip(weights(plain), weights(planned)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def changing_machine(monkeypatch, factor):
    """Steps of 0.25 s, evaluations of 0.5 s and a compilation of 2 s, until the clock passes 30 s: then ``factor``
    times as long. Budgets of 1 minute: about 150 steps, 50 % more or fewer than the first plan once it changed."""
    return Machine(step=0.25, evaluation=0.5, checkpoint=0.05, export=0.3, compile=2.0, change_at=30.0,
                   factor=factor).install(monkeypatch)


def budget_run(path, machine, budget_seconds=60.0, **overrides):
    # 8 steps an epoch at batch 8: a partial last epoch is likely, and re-plans inside an epoch matter.
    return Trainer(small_config(budget_minutes=budget_seconds / 60, **overrides), path,
                   dataset=small_dataset(count=64), clock=machine)


@pytest.mark.core
@pytest.mark.parametrize("factor,schedule", [(2.0, "cosine"), (0.5, "cosine"), (2.0, "cooldown")],
                         ids=["slows-down", "speeds-up", "slows-down-cooldown"])
def test_the_budget_is_kept_on_a_machine_whose_speed_changes_half_way(tmp_path, monkeypatch, factor, schedule):
    """A machine that becomes twice as slow (or fast) half-way still ends within 3 % of the deadline, the schedule
    done: the run re-plans from the steps it times. (With the length fixed by the first plan, it ended at 92.0 s and
    45.6 s of 60; now at 60.25 s and 59.8 s.)"""
    machine = changing_machine(monkeypatch, factor)
    trainer = budget_run(tmp_path / "run", machine, schedule=schedule)
    summary = trainer.fit()
    assert summary["state"] == "finished"
    assert abs(machine.now - 60.0) <= 0.03 * 60.0, f"ended at {machine.now:.1f} s of 60"
    assert machine.now <= 60.0 + 0.5, "not after the deadline by more than a step or two"
    run = RunDir(tmp_path / "run")
    first = json.loads(run.config_path.read_text())["budget_plan"]["steps"]
    epochs = run.epochs()
    assert epochs[-1]["first_planned_steps"] == first and epochs[-1]["replans"] >= 1
    assert summary["global_step"] == epochs[-1]["planned_steps"] == run.steps()[-1]["planned_steps"]
    assert (summary["global_step"] < 0.8 * first) if factor > 1 else (summary["global_step"] > 1.2 * first)
    rates = [row["learning_rate"] for row in run.steps()]
    peak = trainer.config.learning_rate
    # Continuous across every re-plan: no step changes the rate by more than a decay of the shortest length would.
    shortest = min(first, summary["global_step"])
    steepest = peak * math.pi / 2 / shortest if schedule == "cosine" else peak / (budget.COOLDOWN_FRACTION * shortest)
    # The decay ends with the run: a cosine's last step is nearly 0, a linear cooldown's a step's decrement above it
    # (here 0.07 × peak: the re-plans in the cooldown spread it over fewer steps).
    assert rates[-1] < (0.01 if schedule == "cosine" else 0.1) * peak
    if schedule == "cooldown":   # the peak held until the last fifth, wherever the re-plans moved it
        assert rates[len(rates) // 2] == pytest.approx(peak) and rates[-len(rates) // 10] < peak
    # (A cooldown re-planned within itself steepens by the ratio of the lengths left: 1.6× here. A restarted one would
    # jump by a fifth of the peak or more.)
    assert max(abs(b - a) for a, b in zip(rates, rates[1:])) <= (1.5 if schedule == "cosine" else 2.0) * steepest
    # The compiled step used the schedule the rows report: the optimizer's own rate at the last step is the rows'.
    trainer._train_step.sync()
    iteration = int(keras.ops.convert_to_numpy(trainer.optimizer.iterations))
    assert iteration == summary["global_step"]
    schedule = trainer.optimizer._learning_rate
    assert float(keras.ops.convert_to_numpy(schedule(iteration - 1))) == pytest.approx(rates[-1], abs=1e-7)
    assert float(keras.ops.convert_to_numpy(schedule.total_steps)) == summary["global_step"]


@pytest.mark.core
def test_a_replan_keeps_the_learning_rate_continuous():
    """Re-planning only what is left: the rate at the re-plan's step is unchanged, the rest decays to 0 at the new
    length; a cosine restarted with the new length would jump (0.5 → 0.15 × peak at half-way when it halves)."""
    measured = budget.Throughput(compile_seconds=0.0, step_seconds=1.0, eval_seconds=0.0, checkpoint_seconds=0.0)
    plan = budget.plan(100.0, 0.0, measured, steps_per_epoch=10, batch_size=8, warmup_steps=10)
    state = budget.BudgetState.start(plan, 1, 0.0, warmup_steps=10)
    schedule = budget.BudgetSchedule(1e-3, warmup_steps=10, total_steps=plan.steps)
    device_rate = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))
    assert [schedule.rate(state, s) for s in (0, 5, 10)] == pytest.approx([0.0, 5e-4, 1e-3])
    assert schedule.rate(state, 55) == pytest.approx(5e-4)   # half-way through the decay (10 → 100)
    # The machine slowed down: at step 55 the run has used 80 s of its 100 (steps of 1 s so far), and the last
    # window's steps took 3 s: the estimate moves half-way, to 2 s, and 20 s leave 10 steps.
    slower = budget.replan(dataclasses.replace(state, window_step=45, window_elapsed=50.0), budget_seconds=100.0,
                           elapsed=80.0, global_step=55, step_in_epoch=5, steps_per_epoch=10, warmup_steps=10)
    assert (slower.step_seconds, slower.total_steps, slower.replans) == (2.0, 65, 1)
    assert (slower.anchor_step, slower.anchor_progress) == (55.0, pytest.approx(0.5))
    assert schedule.rate(slower, 55) == pytest.approx(schedule.rate(state, 55), abs=1e-12), "no jump"
    assert schedule.rate(slower, 60) == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 0.75)))
    assert schedule.rate(slower, 65) == pytest.approx(0.0, abs=1e-12)
    restarted = budget.BudgetState.start(dataclasses.replace(plan, steps=65), 1, 0.0, warmup_steps=10)
    assert schedule.rate(restarted, 55) < 0.16e-3, "what a cosine of the new length would give at once"
    for values in (state, slower):   # the compiled schedule (variables) gives the host's rates
        for variable, value in schedule.values(values):
            variable.assign(value)
        for step in (0, 9, 10, 30, 55, 60, 64, 65, 90):
            assert device_rate(step) == pytest.approx(schedule.rate(values, step), abs=1e-8)
    # Before any re-plan, the rates are keras's CosineDecay with the same warm-up, exactly.
    reference = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=plan.steps - 10, alpha=0.0,
                                                       warmup_target=1e-3, warmup_steps=10)
    for step in (0, 3, 10, 47, plan.steps - 1):
        assert schedule.rate(state, step) == pytest.approx(float(keras.ops.convert_to_numpy(reference(step))), abs=1e-8)
    # Re-planned in the warm-up, the decay just gets the new length: it has not begun.
    early = budget.replan(dataclasses.replace(state, window_step=0, window_elapsed=0.0), budget_seconds=100.0,
                          elapsed=7.5, global_step=5, step_in_epoch=5, steps_per_epoch=10, warmup_steps=10)
    assert early.total_steps == 79 and (early.anchor_step, early.anchor_progress) == (10.0, 0.0)


@pytest.mark.core
def test_the_cooldown_schedule_holds_the_peak_then_falls_to_zero_at_the_end():
    """``cooldown``: warm-up, the peak rate, then linear to 0 over the last fifth of the decay's progress; a re-plan
    in the constant part or in the cooldown moves the cooldown with the new end, without a jump."""
    measured = budget.Throughput(compile_seconds=0.0, step_seconds=1.0, eval_seconds=0.0, checkpoint_seconds=0.0)
    plan = budget.plan(110.0, 0.0, measured, steps_per_epoch=10, batch_size=8, warmup_steps=10)
    assert plan.steps == 110
    state = budget.BudgetState.start(plan, 1, 0.0, warmup_steps=10)
    schedule = budget.BudgetSchedule(1e-3, warmup_steps=10, total_steps=plan.steps, shape="cooldown")
    expected = {0: 0.0, 5: 5e-4, 10: 1e-3, 60: 1e-3, 90: 1e-3, 95: 0.75e-3, 100: 0.5e-3, 110: 0.0}
    assert {step: schedule.rate(state, step) for step in expected} == pytest.approx(expected, abs=1e-12)
    assert {step: schedule.rate(None, step) for step in expected} == pytest.approx(expected, abs=1e-12), \
        "without a budget: the length it was built with"
    # Slower half-way (step 60, 80 s used of 110; the last 10 steps took 3 s each, the estimate moves half-way to
    # 2 s): 30 s leave 15 steps; the progress goes 0.5 → 1 over steps 60 → 75, the peak until 0.8 (step 69), 0 at 75.
    slower = budget.replan(dataclasses.replace(state, window_step=50, window_elapsed=50.0), budget_seconds=110.0,
                           elapsed=80.0, global_step=60, step_in_epoch=0, steps_per_epoch=10, warmup_steps=10)
    assert slower.total_steps == 75
    assert schedule.rate(slower, 60) == schedule.rate(state, 60) == pytest.approx(1e-3)
    assert schedule.rate(slower, 69) == pytest.approx(1e-3) and schedule.rate(slower, 75) == pytest.approx(0.0)
    assert schedule.rate(slower, 72) == pytest.approx(0.5e-3)   # progress 0.9
    # Re-planned inside the cooldown (step 100, half-way down): the rate stays, the rest of the way is re-spread.
    longer = budget.replan(dataclasses.replace(state, window_step=90, window_elapsed=90.0, step_seconds=0.5),
                           budget_seconds=110.0, elapsed=95.0, global_step=100, step_in_epoch=0, steps_per_epoch=10,
                           warmup_steps=10)
    assert longer.total_steps > 110 and schedule.rate(longer, 100) == pytest.approx(0.5e-3)
    assert schedule.rate(longer, longer.total_steps) == pytest.approx(0.0, abs=1e-12)
    for values in (state, slower, longer):   # the compiled schedule (variables) gives the host's rates
        for variable, value in schedule.values(values):
            variable.assign(value)
        for step in (0, 9, 10, 60, 69, 72, 90, 95, 100, 104, 110):
            assert float(keras.ops.convert_to_numpy(schedule(step))) == pytest.approx(schedule.rate(values, step),
                                                                                       abs=1e-8)
    with pytest.raises(ValueError, match="Unknown schedule shape 'linear'"):
        budget.BudgetSchedule(1e-3, 0, 10, shape="linear")


def test_a_cooldown_run_without_a_budget_logs_the_schedule_it_trained_with(tmp_path):
    """``--schedule cooldown`` with ``--epochs``: the peak for four fifths of the steps, then linear to 0."""
    trainer = Trainer(small_config(epochs=5, schedule="cooldown"), tmp_path / "run", dataset=small_dataset())
    assert trainer.fit()["state"] == "finished"
    rates = [row["learning_rate"] for row in RunDir(tmp_path / "run").steps()]
    peak, steps = trainer.config.learning_rate, len(rates)
    # Step i (1-based) trains at the rate of progress (i - 1) / 10: the peak up to 0.8, half of it at 0.9.
    assert steps == 10 and rates == pytest.approx([peak] * 9 + [peak * 0.5])


@pytest.mark.core
def test_a_resumed_budget_run_re_plans_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """The length and what re-plans depend on are checkpointed: chunks of a budget run on a machine that slows down
    make the same plans, at the same steps, and train the same weights as one uninterrupted run."""
    def machine():   # no compilation, checkpoint or export cost: a chunk's extra ones would be time the whole lacks
        return Machine(step=0.25, evaluation=0.5, change_at=30.0, factor=2.0)

    whole_machine = machine().install(monkeypatch)
    whole = budget_run(tmp_path / "whole", whole_machine)
    assert whole.fit()["state"] == "finished"
    run = RunDir(tmp_path / "whole")
    saved = json.loads(run.config_path.read_text())
    assert saved["budget_minutes"] == pytest.approx(1.0)
    plans = [row["planned_steps"] for row in run.steps()]
    assert len(set(plans)) > 2, "the slowdown made it re-plan"
    assert [row["step"] for row in run.steps()] == list(range(1, plans[-1] + 1)), "exactly the steps planned last"
    epochs = run.epochs()
    assert epochs[-1]["planned_steps"] == plans[-1] and epochs[-1]["first_planned_steps"] == saved["budget_plan"]["steps"]

    split = RunDir(tmp_path / "split")
    chunks_machine = machine().install(monkeypatch)
    first = budget_run(split.path, chunks_machine)
    # Chunks cut inside an epoch (13), on an epoch's end (24) and after the slowdown (94).
    summary = first.fit(max_steps=13)
    for steps in (11, 70, None):
        config = TrainConfig.from_run_config(json.loads(split.config_path.read_text()))
        trainer = Trainer(config, split.path, dataset=small_dataset(count=64), clock=chunks_machine)
        summary = trainer.fit(resume=True, max_steps=steps)
    assert summary["state"] == "finished" and summary["global_step"] == plans[-1]
    assert json.loads(split.config_path.read_text())["budget_plan"] == saved["budget_plan"], "the first plan stays"
    assert [row["planned_steps"] for row in split.steps()] == plans, "the same plans at the same steps"
    assert [row["learning_rate"] for row in split.steps()] == pytest.approx([row["learning_rate"] for row in run.steps()])
    for a, b in zip(weights(whole), weights(trainer)):
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
