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

That first plan is only as good as the two seconds it times: on a shared machine the load changes (docs/benchmarks.md
measured runs ending 38 % late and 35 % early). So the run re-plans as it goes (``replan``): every few steps and at
each epoch's end it measures its step time in the real run (an average over the last windows, evaluation, checkpoint
and start-up time taken out), and sets the run's length again from the time left before the deadline. Whatever a
re-plan depends on (the length, the estimates, the timing window, the budget time spent) is a ``BudgetState`` saved in
every checkpoint, so a resumed or chunked run re-plans as an uninterrupted one would. ``BudgetSchedule`` is the
learning-rate schedule whose length a re-plan changes without a jump in the rate.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import keras
import numpy as np

# Long enough for a steady step time (a GPU step is milliseconds; a CPU one up to a second), short next to a budget
# of minutes.
MEASURE_SECONDS = 2.0
MEASURE_MIN_STEPS = 3
MEASURE_MAX_STEPS = 50
# A run re-plans about this many times over its first plan's length (and at every epoch's end): often enough to follow
# a machine whose load changes within a minute, with windows of many steps on a long run (each re-plan reads the
# metrics, a device → host sync).
REPLANS_PER_RUN = 50
# How much a window's step time moves the estimate: half, so a changed machine is followed within a few windows while
# one noisy window (another process's burst) moves the plan only half as much.
STEP_TIME_WEIGHT = 0.5
# The ``cooldown`` schedule's decay: the last fifth of the steps, linear to zero. A constant rate trains ten minutes of
# SimCLR on CIFAR-10 better than a cosine (docs/benchmarks.md), and a short decay at the end gives a run a schedule that
# ends where the budget does; Hägele et al. 2024 ("Scaling laws and compute-optimal training beyond fixed training
# durations") found a 20 % linear cooldown matching cosine.
COOLDOWN_FRACTION = 0.2
SHAPES = ("cosine", "cooldown")


@dataclass(frozen=True)
class Throughput:
    """What the run measured of itself, in seconds."""
    compile_seconds: float       # the first step beyond a timed one: tracing or XLA, paid again by the real step
    step_seconds: float          # one training step, metrics read every few steps as in training
    eval_seconds: float          # one epoch-end evaluation (kNN and probe on the held-out subset)
    checkpoint_seconds: float    # serialising one checkpoint
    export_seconds: float = 0.0  # saving encoder.keras (and classifier.keras) at the end (0 in plans made before it)


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
            min_seconds: float = MEASURE_SECONDS, export: Callable[[], Any] | None = None) -> Throughput:
    """Time ``train_step(i)`` (i = 0, 1, ...), ``evaluate()``, ``checkpoint()`` and ``export()`` on ``clock``.

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
    if export is not None:
        export()
    exported = clock()
    return Throughput(compile_seconds=max(0.0, compiled - started - step_seconds), step_seconds=step_seconds,
                      eval_seconds=evaluated - warmed, checkpoint_seconds=saved - evaluated,
                      export_seconds=exported - saved)


def steps_that_fit(available: float, step_seconds: float, per_epoch: float, steps_per_epoch: int,
                   step_in_epoch: int = 0) -> int:
    """The most steps n that fit ``available`` seconds from ``step_in_epoch`` steps into an epoch, each epoch's end
    (the current one's, and a partial last one's) paying ``per_epoch`` (evaluation and checkpoint): 0 when none does."""
    def cost(n: int) -> float:
        return n * step_seconds + math.ceil((step_in_epoch + n) / steps_per_epoch) * per_epoch

    if available <= 0 or step_seconds <= 0 or cost(1) > available:
        return 0
    low, high = 1, max(2, math.ceil(available / step_seconds) + 1)   # cost(high) > available
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if cost(middle) <= available else (low, middle)
    return low


def plan(budget_seconds: float, spent_seconds: float, throughput: Throughput, *, steps_per_epoch: int,
         batch_size: int, warmup_steps: int = 0) -> BudgetPlan:
    """The most steps whose training, with an evaluation and a checkpoint at each epoch's end (the last, partial one
    included) and the final export, ends by ``budget_seconds``; ValueError when not one step fits, or the warm-up
    does not."""
    measured = throughput
    per_epoch = measured.eval_seconds + measured.checkpoint_seconds
    available = budget_seconds - spent_seconds - measured.compile_seconds - measured.export_seconds
    steps = steps_that_fit(available, measured.step_seconds, per_epoch, steps_per_epoch)
    if steps < 1:
        needed = (spent_seconds + measured.compile_seconds + measured.step_seconds + per_epoch
                  + measured.export_seconds)
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
    expected = (spent_seconds + measured.compile_seconds + steps * measured.step_seconds + epochs * per_epoch
                + measured.export_seconds)
    return BudgetPlan(budget_seconds=budget_seconds, steps=steps, epochs=epochs, images=steps * batch_size,
                      steps_per_epoch=steps_per_epoch, spent_seconds=spent_seconds, expected_seconds=expected,
                      throughput=measured)


@dataclass(frozen=True)
class BudgetState:
    """What the re-plans of a budget run depend on, saved in each checkpoint (``state["budget"]``).

    Times are on the budget's clock, summed over the calls of a resumed or chunked run (the time between two calls
    does not count; each call's start-up does)."""
    total_steps: int             # the run's length now (the schedule ends there)
    first_steps: int             # the first plan's (config.json's ``budget_plan``)
    replan_every: int            # steps between two re-plans inside an epoch (every epoch's end re-plans too)
    step_seconds: float          # one training step, as estimated from the windows so far
    eval_seconds: float          # an epoch's end: the last evaluation measured ...
    checkpoint_seconds: float    # ... and the last checkpoint
    export_seconds: float        # the final export (measured before the first plan)
    elapsed_seconds: float       # budget time spent: at the last re-plan, or when the checkpoint was written
    window_step: int             # the step the current timing window began at ...
    window_elapsed: float        # ... the budget time then ...
    window_overhead: float       # ... and the time inside it that was not training steps (evaluation, start-up)
    anchor_step: float           # the learning-rate schedule's anchor (``BudgetSchedule``): the decay's progress ...
    anchor_progress: float       # ... was this at that step, and goes on to 1 at ``total_steps``
    replans: int = 0             # re-plans that changed the length

    @classmethod
    def start(cls, plan: BudgetPlan, log_every_steps: int, elapsed: float, warmup_steps: int) -> "BudgetState":
        """The state just after the first plan: the real step's compilation falls into the first window."""
        measured = plan.throughput
        return cls(total_steps=plan.steps, first_steps=plan.steps,
                   replan_every=max(1, log_every_steps, math.ceil(plan.steps / REPLANS_PER_RUN)),
                   step_seconds=measured.step_seconds, eval_seconds=measured.eval_seconds,
                   checkpoint_seconds=measured.checkpoint_seconds, export_seconds=measured.export_seconds,
                   elapsed_seconds=elapsed, window_step=0, window_elapsed=elapsed,
                   window_overhead=measured.compile_seconds, anchor_step=float(warmup_steps), anchor_progress=0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BudgetState":
        return cls(**values)

    def row(self) -> dict[str, Any]:
        """What metrics rows record of the re-plans (beside the plan now: planned_steps / epochs / images)."""
        return {"first_planned_steps": self.first_steps, "replans": self.replans,
                "planned_step_seconds": self.step_seconds}


def replan(state: BudgetState, *, budget_seconds: float, elapsed: float, global_step: int, step_in_epoch: int,
           steps_per_epoch: int, warmup_steps: int = 0) -> BudgetState:
    """The run's length again, from what the run measured since the last re-plan and the time left.

    The window since the last re-plan gives a step time (its evaluation and start-up time taken out) that moves the
    estimate by ``STEP_TIME_WEIGHT``; the steps left are then the most that fit before the deadline with an
    evaluation and checkpoint at each epoch's end still to come and the final export. Never fewer than the steps
    done (past the deadline, the run ends where it is). A changed length re-anchors the schedule at ``global_step``
    (the next step's 0-based index), keeping its rate there (``BudgetSchedule``)."""
    steps = global_step - state.window_step
    step_seconds = state.step_seconds
    if steps > 0:
        window = (elapsed - state.window_elapsed - state.window_overhead) / steps
        if window > 0:
            step_seconds = STEP_TIME_WEIGHT * window + (1 - STEP_TIME_WEIGHT) * step_seconds
    available = budget_seconds - elapsed - state.export_seconds
    more = steps_that_fit(available, step_seconds, state.eval_seconds + state.checkpoint_seconds, steps_per_epoch,
                          step_in_epoch)
    total = global_step + more
    anchor_step, anchor_progress = state.anchor_step, state.anchor_progress
    if total != state.total_steps and global_step > warmup_steps:   # in the warm-up the decay has not begun
        anchor_progress = progress(state, global_step)
        anchor_step = float(global_step)
    return replace(state, total_steps=total, step_seconds=step_seconds, elapsed_seconds=elapsed,
                   window_step=global_step, window_elapsed=elapsed, window_overhead=0.0, anchor_step=anchor_step,
                   anchor_progress=anchor_progress, replans=state.replans + (total != state.total_steps))


def progress(state: BudgetState, step: float) -> float:
    """How far the cosine decay is at ``step`` (0-based), in [0, 1]: ``BudgetSchedule``'s formula on the host."""
    span = max(state.total_steps - state.anchor_step, 1.0)
    return float(np.clip(state.anchor_progress + (1 - state.anchor_progress) * (step - state.anchor_step) / span, 0, 1))


def shape_factor(shape: str, progress_value, ops=np):
    """The rate, as a fraction of the peak, at ``progress_value`` in [0, 1] through the decay: a half cosine, or
    ``cooldown``'s constant rate that falls linearly to 0 over the last ``COOLDOWN_FRACTION`` of the progress."""
    if shape == "cosine":
        return 0.5 * (1.0 + ops.cos(math.pi * progress_value))
    return ops.minimum(1.0, (1.0 - progress_value) / COOLDOWN_FRACTION)


class BudgetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then a decay to 0 at ``total_steps`` (``shape``: a cosine, or a constant rate with a
    linear cooldown at the end), over a length a re-plan may change mid-run.

    Why re-plan only what is left, and how: the rate is a cosine of the *progress* p through the decay, and a re-plan
    at step s keeps p(s) and spreads the rest of the decay (p(s) → 1) over the new remaining steps. The rate is then
    continuous at every re-plan (only its slope changes, by the ratio of the remaining lengths), and it is still a
    function of the step alone, so the same steps train the same way on any machine and a resumed run continues
    exactly. Defining it on the fraction of the budget's *time* elapsed would also be continuous, but would make the
    training depend on the machine's load step by step (two runs of the same seed would differ), could not be
    reproduced by a resumed run, and would need the rate fed from the host at every step. Restarting a cosine of the
    new length at step s would jump the rate (at half-way, a slowdown halving the length drops it from 0.5 to 0.15 ×
    peak at once). Without a re-plan, p is (step − warm-up) / (total − warm-up): keras's ``CosineDecay``, exactly.

    The anchor (s, p(s)) and the length are variables the optimizer tracks (so checkpoints keep them and compiled
    steps read them rather than baking them in). A run without a budget never re-plans: the same schedule with a
    fixed length."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, shape: str = "cosine"):
        if shape not in SHAPES:
            raise ValueError(f"Unknown schedule shape {shape!r}; choose one of {', '.join(SHAPES)}")
        self.peak, self.warmup_steps, self.shape = float(peak), int(warmup_steps), shape
        self.initial_total_steps = int(total_steps)
        variable = lambda value, name: keras.Variable(float(value), dtype="float32", trainable=False, name=name)
        self.anchor_step = variable(warmup_steps, "budget_anchor_step")
        self.anchor_progress = variable(0.0, "budget_anchor_progress")
        self.total_steps = variable(total_steps, "budget_total_steps")

    @property
    def variables(self) -> list:
        return [self.anchor_step, self.anchor_progress, self.total_steps]

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        span = keras.ops.maximum(self.total_steps - self.anchor_step, 1.0)
        progress = self.anchor_progress + (1.0 - self.anchor_progress) * (step - self.anchor_step) / span
        progress = keras.ops.clip(progress, 0.0, 1.0)
        rate = self.peak * shape_factor(self.shape, progress, keras.ops)
        if self.warmup_steps:
            rate = keras.ops.where(step < self.warmup_steps, self.peak * step / self.warmup_steps, rate)
        return rate

    def rate(self, state: BudgetState | None, step: int) -> float:
        """The rate at ``step`` (0-based) with ``state``'s length and anchor (None: the length it was built with, never
        re-planned), on the host (what ``__call__`` gives)."""
        if step < self.warmup_steps:
            return self.peak * step / self.warmup_steps
        if state is None:
            span = max(self.initial_total_steps - self.warmup_steps, 1)
            done = float(np.clip((step - self.warmup_steps) / span, 0, 1))
        else:
            done = progress(state, step)
        return float(self.peak * shape_factor(self.shape, done))

    def values(self, state: BudgetState) -> list[tuple[Any, float]]:
        """(variable, value) pairs that give the schedule ``state``'s length and anchor."""
        return list(zip(self.variables, (state.anchor_step, state.anchor_progress, float(state.total_steps))))

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "shape": self.shape,
                "total_steps": float(keras.ops.convert_to_numpy(self.total_steps))}


def recorded_plan(saved_config: dict[str, Any], where: str) -> BudgetPlan:
    """The plan a budget run made when it began (its config.json), which a resumed run continues exactly."""
    if "budget_plan" not in saved_config:
        raise ValueError(f"{where} has a time budget but no plan recorded (it stopped while timing itself, before "
                         "its first step): start it again rather than resume it")
    return BudgetPlan.from_dict(saved_config["budget_plan"])
