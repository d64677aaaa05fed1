"""Training for a time budget (``--budget MINUTES``): time the first steps, then give the run the length that fits.

A learning-rate schedule (warm-up, then cosine decay to zero) needs the run's length before its first step, and a
run cut off by a clock never reaches the schedule's end. So a budget run first times itself, on the machine it runs
on: a few training steps after the first (the first one compiles), an epoch-end evaluation (the second of two: the
first compiles too) and one checkpoint's serialisation. It then puts the weights back as they were, and plans the number of steps whose schedule ends at the
deadline:

    budget = spent (loading, building, measuring) + compiling the real step again
             + steps × step time + epochs × (evaluation + checkpoint)

The last epoch may be partial, so the deadline is met to within a step rather than an epoch. The plan is written
into the run's ``config.json`` (``budget_plan``, and ``epochs``), and a resumed run takes it from there: it continues
the same schedule exactly instead of timing itself again. The measuring steps are thrown away, so a budget run that
plans N steps trains exactly as a run of N steps would.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

# Long enough for a steady step time (a GPU step is milliseconds; a CPU one up to a second), short next to a budget
# of minutes.
MEASURE_SECONDS = 2.0
MEASURE_MIN_STEPS = 3
MEASURE_MAX_STEPS = 50


@dataclass(frozen=True)
class Throughput:
    """What the run measured of itself, in seconds."""
    compile_seconds: float       # the first step beyond a timed one: tracing or XLA, paid again by the real step
    step_seconds: float          # one training step, metrics read every few steps as in training
    eval_seconds: float          # one epoch-end evaluation (kNN and probe on the held-out subset)
    checkpoint_seconds: float    # serialising one checkpoint


@dataclass(frozen=True)
class BudgetPlan:
    """The run's length chosen for its budget; ``config.json`` keeps it as ``budget_plan``."""
    budget_seconds: float
    steps: int
    epochs: int
    images: int                  # images trained on: steps × batch size
    steps_per_epoch: int
    spent_seconds: float         # before the first real step: loading, building and measuring
    expected_seconds: float      # what the plan should take in all, by the measurements (at most the budget)
    throughput: Throughput

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BudgetPlan":
        return cls(**{**values, "throughput": Throughput(**values["throughput"])})

    def row(self) -> dict[str, int]:
        """What a budget run's metrics rows record of the plan."""
        return {"planned_epochs": self.epochs, "planned_steps": self.steps, "planned_images": self.images}


def measure(train_step: Callable[[int], Any], read_metrics: Callable[[Any], Any], evaluate: Callable[[], Any],
            checkpoint: Callable[[], Any] | None, clock: Callable[[], float], read_every: int = 1,
            min_seconds: float = MEASURE_SECONDS) -> Throughput:
    """Time ``train_step(i)`` (i = 0, 1, ...), ``evaluate()`` and ``checkpoint()`` on ``clock``.

    ``read_metrics`` waits for the step's results (a device → host copy), every ``read_every`` steps as the trainer
    does: accelerators run asynchronously, so only a read says the work is done.
    """
    started = clock()
    read_metrics(train_step(0))
    compiled = clock()
    steps = 0
    while True:
        for _ in range(max(1, read_every)):
            steps += 1
            metrics = train_step(steps)
        read_metrics(metrics)
        now = clock()
        if steps >= MEASURE_MAX_STEPS or (steps >= MEASURE_MIN_STEPS and now - compiled >= min_seconds):
            break
    step_seconds = (now - compiled) / steps
    # Twice: the first evaluation also compiles the encoder's inference (0.46 s against 0.18 s for the tiny convnet
    # on digits), which later epochs do not pay again; it is counted in the time spent before the plan instead.
    evaluate()
    warmed = clock()
    evaluate()
    evaluated = clock()
    if checkpoint is not None:
        checkpoint()
    saved = clock()
    return Throughput(compile_seconds=max(0.0, compiled - started - step_seconds), step_seconds=step_seconds,
                      eval_seconds=evaluated - warmed, checkpoint_seconds=saved - evaluated)


def plan(budget_seconds: float, spent_seconds: float, throughput: Throughput, *, steps_per_epoch: int,
         batch_size: int, warmup_steps: int = 0) -> BudgetPlan:
    """The most steps whose training, with an evaluation and a checkpoint at each epoch's end (the last, partial one
    included), ends by ``budget_seconds``; ValueError when not one step fits, or the warm-up does not."""
    measured = throughput
    per_epoch = measured.eval_seconds + measured.checkpoint_seconds
    available = budget_seconds - spent_seconds - measured.compile_seconds
    full_epoch = steps_per_epoch * measured.step_seconds + per_epoch
    full = max(0, math.floor(available / full_epoch)) if available > 0 else 0
    # A partial last epoch pays its own evaluation and checkpoint.
    left = available - full * full_epoch - per_epoch
    extra = min(steps_per_epoch - 1, math.floor(left / measured.step_seconds)) if left > 0 else 0
    steps = full * steps_per_epoch + max(0, extra)
    if steps < 1:
        needed = spent_seconds + measured.compile_seconds + measured.step_seconds + per_epoch
        raise ValueError(
            f"budget_minutes={budget_seconds / 60:g} does not leave time for one training step: loading and measuring "
            f"took {spent_seconds:.0f} s, compiling takes {measured.compile_seconds:.0f} s, a step "
            f"{measured.step_seconds:.2f} s and an evaluation with its checkpoint {per_epoch:.1f} s. "
            f"Give at least {math.ceil(needed / 6) / 10:g} minutes")
    if warmup_steps >= steps:
        raise ValueError(f"the warm-up ({warmup_steps} steps) does not fit the {steps} steps that "
                         f"budget_minutes={budget_seconds / 60:g} allows at {batch_size / measured.step_seconds:,.0f} "
                         "images/s: lower warmup_epochs or raise the budget")
    epochs = math.ceil(steps / steps_per_epoch)
    expected = (spent_seconds + measured.compile_seconds + steps * measured.step_seconds + epochs * per_epoch)
    return BudgetPlan(budget_seconds=budget_seconds, steps=steps, epochs=epochs, images=steps * batch_size,
                      steps_per_epoch=steps_per_epoch, spent_seconds=spent_seconds, expected_seconds=expected,
                      throughput=measured)


def recorded_plan(saved_config: dict[str, Any], where: str) -> BudgetPlan:
    """The plan a budget run made when it began (its config.json), which a resumed run continues exactly."""
    if "budget_plan" not in saved_config:
        raise ValueError(f"{where} has a time budget but no plan recorded (it stopped while timing itself, before "
                         "its first step): start it again rather than resume it")
    return BudgetPlan.from_dict(saved_config["budget_plan"])
