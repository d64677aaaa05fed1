"""The one training loop, for every method and backend.

Data stays resident on the device; each epoch's order is a permutation drawn from (seed, epoch), so the
position in the data is just (epoch, step) and a run resumed from any checkpoint continues exactly.
Metrics come back to the host every ``log_every_steps`` steps, never once per step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import keras
import numpy as np

from sslcore import budget, evaluate, pretrained
from sslcore.config import TrainConfig
from sslcore.data import Dataset
from sslcore.run import load_run_data
from sslcore.distribute import check_batch_size, check_hosts_agree, data_parallel
from sslcore.model import SSLModel, float32_copy
from sslcore.runs import RunDir, process_started_at, write_json_atomic
from sslcore.steps import DeviceData, make_train_step, to_host


# What a time stop that exports keeps free for saving encoder.keras and classifier.keras (about 0.5 s for the tiny
# convnet on 2 CPU cores; a resnet50 takes longer, so a tight --max-seconds may overrun by its difference).
EXPORT_MARGIN_SECONDS = 2.0
# Why fit stops before the end: the stop signal (the app's Stop, SIGTERM in the CLI), max_seconds, max_steps.
STOP_REASONS = ("requested", "time", "steps")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the likely cause."""


class Callback:
    """Subscribe to a run: the CLI's progress bar and the app's live charts both do."""

    def on_train_begin(self, info: dict) -> None: ...
    def on_step_end(self, row: dict) -> None: ...
    def on_epoch_end(self, row: dict) -> None: ...
    def on_train_end(self, summary: dict) -> None: ...


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class Position:
    """Where a run is: enough, with the weights, to continue it exactly."""
    epoch: int = 0               # epochs completed
    step_in_epoch: int = 0       # steps done in the current epoch
    global_step: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_seconds: float = 0.0
    elapsed_seconds: float = 0.0


def build_optimizer(config: TrainConfig, total_steps: int, steps_per_epoch: int, *,
                    replannable: bool = False) -> keras.optimizers.Optimizer:
    """``replannable``: a budget run's schedule, whose length re-plans change (``budget.BudgetSchedule``: the same
    rates as ``CosineDecay`` until then; its variables are the optimizer's, so checkpoints keep them). ``cooldown``
    has no keras schedule of its own, so it is a ``BudgetSchedule`` either way."""
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    if config.schedule in budget.SHAPES and (replannable or config.schedule == "cooldown"):
        learning_rate = budget.BudgetSchedule(config.learning_rate, warmup_steps, total_steps, shape=config.schedule)
    elif config.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else config.learning_rate,
            decay_steps=max(1, total_steps - warmup_steps), alpha=0.0,
            warmup_target=config.learning_rate if warmup_steps else None, warmup_steps=warmup_steps)
    else:
        learning_rate = config.learning_rate
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate)
    elif config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay)
    else:
        optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9, weight_decay=config.weight_decay or None)
    if isinstance(learning_rate, budget.BudgetSchedule):
        for variable in learning_rate.variables:
            optimizer._track_variable(variable)
    return optimizer


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed``, without importing TensorFlow only to seed it.

    Keras seeds TensorFlow whenever it is installed, and so imports it: 1.7 s of every chunk's start-up on
    torch or JAX on a machine that has TensorFlow (``benchmarks/chunk_startup.py``). TensorFlow that is
    neither the backend nor imported yet (tfds data is loaded before this) runs nothing in this training.
    """
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    from types import SimpleNamespace

    from keras.src.utils import rng_utils

    tensorflow, rng_utils.tf = rng_utils.tf, SimpleNamespace(available=False)
    try:
        keras.utils.set_random_seed(seed)
    finally:
        rng_utils.tf = tensorflow


def _likely_cause(config: TrainConfig) -> str:
    hints = [f"the learning rate ({config.learning_rate:g}) may be too high for {config.optimizer}: try 10× smaller"]
    if config.precision != "fp32":
        hints.append("or train in fp32 precision")
    if config.method in ("simclr", "moco") and config.full_method_params().temperature < 0.05:
        hints.append("or raise the temperature")
    return "; ".join(hints)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: str | Path | None = None, *,
                 callbacks: list[Callback] | tuple = (), dataset: Dataset | None = None, loading_progress: bool = False,
                 clock: Callable[[], float] = time.perf_counter, init_source: pretrained.InitSource | None = None):
        """``clock``: what a time budget is planned on (tests give a fake one). ``init_source``: ``config.init`` already
        resolved (the CLI resolves it to take the source's architecture), so it is not fetched twice."""
        config.validate()
        self.loading_progress = loading_progress   # a bar while a large source decodes (the CLI's, not the app's jobs)
        self.config = config
        self.run = RunDir(run_dir) if run_dir else None
        self.callbacks = list(callbacks)
        self.dataset = dataset
        self.model: SSLModel | None = None
        self.clock = clock
        self.plan: budget.BudgetPlan | None = None   # a budget run's first plan (config.json's budget_plan)
        self.budget_state: budget.BudgetState | None = None   # its length now and what re-plans depend on
        self._budget_offset, self._budget_call_started = 0.0, 0.0   # budget time of earlier calls; this call's start
        self.init_source = init_source

    # -- set-up ---------------------------------------------------------------------------------------
    def prepare(self, *, init: bool = True) -> None:
        """Load the data and build the model; with ``init`` (not when resuming: the checkpoint holds every weight) the
        encoder starts from ``config.init``'s, which is resolved first so that a bad source fails before any work."""
        source = self._resolve_init() if init and (self.config.init or "").strip() else None
        config = self.config
        if self.dataset is None:
            self.dataset = load_run_data(config.to_dict(), progress=self.loading_progress)
        data = self.dataset
        config.resolve_for(len(data.train_images), keras.backend.backend())
        config.validate(len(data.train_images))
        self.steps_per_epoch = len(data.train_images) // config.batch_size
        self.total_steps = self.steps_per_epoch * config.epochs
        set_random_seed(config.seed)
        self.distribution = data_parallel(config.devices)
        check_batch_size(self.distribution, config.batch_size)
        if self.distribution is not None:
            check_hosts_agree(config.to_dict(), data.train_images)
        with self.distribution.scope() if self.distribution else contextlib.nullcontext():
            self._build(config, data)
            if source is not None:
                pretrained.copy_weights(source, self.model.encoder)
        self.position = Position()
        self._eval_subsets()

    def _resolve_init(self) -> pretrained.InitSource:
        """The run's start, and its architecture taken into the config (settings left as None become the source's)."""
        if self.init_source is None:
            self.init_source = pretrained.resolve(self.config.init)
        self.config = pretrained.adopt(self.config, self.init_source)
        self.config.validate()
        return self.init_source

    def _build(self, config: TrainConfig, data: Dataset) -> None:
        self.model = SSLModel(method=config.method, method_params=config.full_method_params(len(data.train_images)), encoder=config.encoder,
                              image_size=config.image_size, encoder_width=config.encoder_width,
                              augment=config.full_augment(), probe_augment=config.probe_augment if data.probe_images is not None else None,
                              num_classes=data.num_classes, seed=config.seed, precision=config.precision)
        self.model.method.total_steps = self.total_steps   # for schedules over the run (BYOL/DINO momentum)
        self.optimizer = build_optimizer(config, self.total_steps, self.steps_per_epoch)
        self.optimizer.build(self.model.trainable_variables)

    def _eval_subsets(self) -> None:
        """Fixed subsets for the per-epoch kNN, so each epoch's figure is measured the same way."""
        data, config = self.dataset, self.config
        rng = np.random.default_rng(config.seed)
        pick = lambda n, cap: np.sort(rng.permutation(n)[:cap]) if n > cap else np.arange(n)
        self.bank_index = pick(len(data.labelled_images), config.knn_bank_size) if data.labelled_images is not None else None
        self.eval_index = pick(len(data.test_images), config.eval_size) if data.test_images is not None else None

    # -- a time budget (sslcore.budget) --------------------------------------------------------------------
    def _plan_budget(self, device_data: DeviceData, started: float) -> None:
        """Time a few steps, one evaluation and one checkpoint on a throwaway step, put every weight back, and give
        the run the length its budget allows (recorded in config.json before the first real step)."""
        config = self.config
        self._status("running", f"timing the first steps to fit the run into {config.budget_minutes:g} minutes")
        snapshot = [keras.ops.convert_to_numpy(v) for v in self.model.variables]
        trial = make_train_step(self.model, self.optimizer, device_data, config.jit_compile, self.distribution)
        order, probe_rng = self._epoch_order(0)

        def train_step(i: int):
            return trial(*self._batch(order, probe_rng, i % self.steps_per_epoch))

        def evaluate_once():
            trial.sync()
            self.evaluate()

        def checkpoint_once():   # what _checkpoint writes, where it writes it, then thrown away
            optimizer_values = [keras.ops.convert_to_numpy(v) for v in self.optimizer.variables]
            with tempfile.TemporaryFile(dir=self.run.path) as handle:
                np.savez(handle, *snapshot, *optimizer_values)

        def export_once():   # what _finish saves at the end, into a folder thrown away
            trial.sync()
            with tempfile.TemporaryDirectory(dir=self.run.path) as folder:
                self.save_models(Path(folder))

        measured = budget.measure(train_step, to_host, evaluate_once, checkpoint_once if self.run else None,
                                  clock=self.clock, read_every=config.log_every_steps,
                                  export=export_once if self.run else None)
        trial.sync()   # JAX: the variables hold live buffers again before they are overwritten
        for variable, value in zip(self.model.variables, snapshot):
            variable.assign(value)
        warmup_steps = self._warmup_steps()
        plan = budget.plan(config.budget_minutes * 60, self.clock() - started, measured,
                           steps_per_epoch=self.steps_per_epoch, batch_size=config.batch_size, warmup_steps=warmup_steps)
        self._apply_plan(plan, budget.BudgetState.start(plan, config.log_every_steps, self._budget_elapsed(),
                                                        warmup_steps))
        if self.run:
            write_json_atomic(self.run.config_path, {**self.run.config(), "epochs": plan.epochs,
                                                     "budget_plan": plan.to_dict()})

    def _apply_plan(self, plan: budget.BudgetPlan, state: budget.BudgetState) -> None:
        """The run's length becomes the plan's: epochs, the schedules over the run, and a fresh optimizer for them
        (its state is all zeros before the first step, and a resumed run restores it and ``state`` next).

        BYOL's and DINO's momentum schedule keeps the first plan's length (compiled steps bake it in; past it the
        momentum stays at 1): only the learning rate's schedule follows re-plans."""
        self.plan = plan
        self.model.method.total_steps = plan.steps
        with self.distribution.scope() if self.distribution else contextlib.nullcontext():
            self.optimizer = build_optimizer(self.config, state.total_steps, self.steps_per_epoch, replannable=True)
            self.optimizer.build(self.model.trainable_variables)
        self._set_budget_state(state)

    def _set_budget_state(self, state: budget.BudgetState) -> None:
        self.budget_state = state
        self.total_steps = state.total_steps
        self.config = dataclasses.replace(self.config, epochs=max(1, math.ceil(state.total_steps / self.steps_per_epoch)))

    def _warmup_steps(self) -> int:
        return int(round(self.config.warmup_epochs * self.steps_per_epoch))

    def _budget_elapsed(self) -> float:
        """Budget time spent: earlier calls' (to their last checkpoint) and this call's, on the budget's clock."""
        return self._budget_offset + self.clock() - self._budget_call_started

    def _replan(self) -> None:
        """Set the run's length again from its measured speed and the time left (``budget.replan``); a changed
        length goes into the schedule's variables, in the step's own copy too (JAX's)."""
        position, state = self.position, self.budget_state
        new = budget.replan(state, budget_seconds=self.plan.budget_seconds, elapsed=self._budget_elapsed(),
                            global_step=position.global_step, step_in_epoch=position.step_in_epoch,
                            steps_per_epoch=self.steps_per_epoch, warmup_steps=self._warmup_steps())
        schedule = self.optimizer._learning_rate
        if new.total_steps != state.total_steps and isinstance(schedule, budget.BudgetSchedule):
            self._train_step.assign(schedule.values(new))
        self._set_budget_state(new)

    def _epoch_order(self, epoch: int) -> tuple[np.ndarray, np.random.Generator]:
        """The epoch's image order and the generator of its probe batches, both from the seed and the epoch alone, so
        a resumed run draws the same batches as an uninterrupted one."""
        seed = self.config.seed
        return (np.random.default_rng([seed, epoch]).permutation(len(self.dataset.train_images)),
                np.random.default_rng([seed, epoch, 1]))

    def _batch(self, order: np.ndarray, probe_rng: np.random.Generator, step_in_epoch: int):
        """(image indices, probe indices or None) of one step: the next slice of the order, a random probe batch."""
        batch_size, probe_images = self.config.batch_size, self.dataset.probe_images
        begin = step_in_epoch * batch_size
        probe_indices = None
        if probe_images is not None:
            probe_indices = probe_rng.integers(0, len(probe_images), batch_size).astype("int32")
        return order[begin: begin + batch_size].astype("int32"), probe_indices

    def _epoch_steps(self, epoch: int) -> int:
        """Steps in ``epoch`` (0-based): all of them but in a budget run's last epoch, which may be partial."""
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    def restore(self, checkpoint: Path) -> None:
        model_values, optimizer_values, state = RunDir.load_checkpoint(checkpoint)
        variables = self.model.variables
        if len(model_values) != len(variables) or len(optimizer_values) != len(self.optimizer.variables):
            raise ValueError(f"{checkpoint} does not match this run's model: was the config changed?")
        for variable, value in zip(variables, model_values):
            variable.assign(value)
        for variable, value in zip(self.optimizer.variables, optimizer_values):
            variable.assign(value)
        self.position = Position(**state["position"])
        if self.plan is not None and "budget" in state:   # the length and re-plan state when it was written
            self._set_budget_state(budget.BudgetState.from_dict(state["budget"]))
            self._budget_offset = self.budget_state.elapsed_seconds
        if self.run:
            self.run.truncate_rows(state["epoch_rows"], state["step_rows"])

    # -- the loop -------------------------------------------------------------------------------------
    def fit(self, *, resume: bool = False, stop: StopSignal | None = None, max_seconds: float | None = None,
            max_steps: int | None = None, export_on_stop: tuple[str, ...] = STOP_REASONS) -> dict:
        """Train to the configured epochs, or until ``stop`` is set, ``max_seconds`` nearly run out or this
        call has trained ``max_steps`` steps (a chunk of a longer run; ``resume`` continues it).

        With a run folder and no ``stop`` given, the folder's stop request is the signal. A run stopped for one of
        ``export_on_stop``'s reasons exports its encoder (and classifier) as they are, so it can be explored and
        used before it is resumed; the resumed run replaces them at its end. Any failure is written to the run's
        status with its message before it propagates.
        """
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be at least 1; got {max_steps}")
        try:
            return self._fit(resume, stop, max_seconds, max_steps, export_on_stop)
        except TrainingDiverged:
            raise
        except Exception as error:
            self._status("failed", f"{type(error).__name__}: {error}")
            raise

    def _fit(self, resume, stop, max_seconds, max_steps, export_on_stop) -> dict:
        budget_started = self._budget_call_started = self.clock()
        self._budget_offset = 0.0
        started = time.perf_counter()
        if self.model is None:
            self.prepare(init=not resume)
        config, run, data = self.config, self.run, self.dataset
        if run:
            if stop is None:
                # A request left by a process that died before honouring it is stale; one made while this process
                # was starting up (the app's Stop during "loading the data") is the user's and must be kept.
                run.clear_stale_stop(older_than=process_started_at())
                stop = run
            if resume:
                checkpoint = run.latest_checkpoint()
                if checkpoint is None:
                    raise FileNotFoundError(f"{run.path} has no checkpoint to resume from")
                if config.budget_minutes is not None:   # the plan it made when it began, exactly: no timing again
                    plan = budget.recorded_plan(run.config(), str(run.path))   # and restore() its state now
                    self._apply_plan(plan, budget.BudgetState.start(plan, config.log_every_steps, 0.0,
                                                                    self._warmup_steps()))
                self.restore(checkpoint)
            else:
                started_from = {"init_source": self.init_source.record()} if self.init_source else {}
                run.create({**config.to_dict(), "backend": keras.backend.backend(), "class_names": list(data.class_names),
                            **started_from})
        device_data = DeviceData.from_numpy(data.train_images, data.train_labels, data.probe_images, data.probe_labels)
        if config.budget_minutes is not None and self.plan is None:
            self._plan_budget(device_data, budget_started)
            config = self.config   # with the planned epochs
        step = self._train_step = make_train_step(self.model, self.optimizer, device_data, config.jit_compile,
                                                  self.distribution)
        position = self.position
        if resume and self.budget_state is not None:
            # This call's start-up (loading, building) and its step's compilation are budget time, not step time.
            state = self.budget_state
            self.budget_state = dataclasses.replace(state, window_overhead=state.window_overhead + self._budget_elapsed()
                                                    - state.elapsed_seconds + self.plan.throughput.compile_seconds)
        # A step budget cuts a run at a known step, where a time budget cuts it wherever the clock says.
        last_step = None if max_steps is None else position.global_step + max_steps
        info = {"total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch, "epochs": config.epochs,
                "start_step": position.global_step, "backend": keras.backend.backend(), "images": len(data.train_images),
                "budget_seconds": self.plan.budget_seconds if self.plan else None}
        offset_elapsed = position.elapsed_seconds
        self._elapsed = lambda: offset_elapsed + time.perf_counter() - started   # this run's training time, all calls
        for callback in self.callbacks:
            callback.on_train_begin(info)
        self._status("running", "training")

        pending: list[tuple[int, dict]] = []
        stop_reason, step_seconds = None, None
        # A time stop leaves room for the export too when this stop exports (a chunk's time slice does not).
        save_margin = 1.0 + (EXPORT_MARGIN_SECONDS if "time" in export_on_stop else 0.0)
        while position.epoch < self.config.epochs and stop_reason is None:   # re-plans change the epochs
            order, probe_rng = self._epoch_order(position.epoch)
            epoch_started = time.perf_counter() - position.epoch_seconds
            epoch_steps = self._epoch_steps(position.epoch)
            while position.step_in_epoch < epoch_steps:
                stop_reason = self._stop_reason(stop, max_seconds, started, step_seconds, position.global_step == last_step,
                                                save_margin)
                if stop_reason is not None:
                    break
                step_started = time.perf_counter()
                metrics = step(*self._batch(order, probe_rng, position.step_in_epoch))
                position.step_in_epoch += 1
                position.global_step += 1
                pending.append((position.global_step, metrics))
                # A budget run re-plans every few steps (at fixed steps, so a resumed run re-plans at the same ones),
                # after reading the metrics: only a read says the device has done the steps being timed.
                replan = (self.budget_state is not None and position.step_in_epoch < epoch_steps
                          and position.global_step % self.budget_state.replan_every == 0)
                if len(pending) >= config.log_every_steps or position.step_in_epoch == epoch_steps or replan:
                    self._flush(pending, epoch_started)
                    pending = []
                if replan:
                    self._replan()
                    epoch_steps = self._epoch_steps(position.epoch)
                step_seconds = time.perf_counter() - step_started
            self._flush(pending, epoch_started)
            pending = []
            position.epoch_seconds = time.perf_counter() - epoch_started
            position.elapsed_seconds = offset_elapsed + time.perf_counter() - started
            step.sync()
            if position.step_in_epoch == epoch_steps:
                self._end_epoch()
                step.reload()  # evaluation set the probe's feature statistics
            if run:
                self._checkpoint()

        if stop_reason in ("time", "steps") and stop is not None and stop.is_set():
            # Stop pressed during the last step or the checkpoint: the user stopped the run, not just this call.
            stop_reason = "requested"
        if stop_reason == "requested" and isinstance(stop, RunDir):
            stop.clear_stop()   # honoured: a later fit of this run is not stopped by the same request
        summary = self._finish(stop_reason, export=stop_reason in export_on_stop)
        return summary

    @staticmethod
    def _stop_reason(stop, max_seconds, started, step_seconds, step_budget_spent: bool,
                     save_margin: float = 1.0) -> str | None:
        """Why training stops before this step: requested, time or steps (None: it goes on)."""
        if stop is not None and stop.is_set():
            return "requested"
        # Leave room for one more step plus saving: stop while the budget still covers both.
        if (max_seconds is not None and step_seconds is not None
                and time.perf_counter() - started + 2 * step_seconds + save_margin > max_seconds):
            return "time"
        return "steps" if step_budget_spent else None

    def _flush(self, pending: list[tuple[int, dict]], epoch_started: float) -> None:
        if not pending:
            return
        position, rows = self.position, []
        for global_step, metrics in pending:
            values = to_host(metrics)
            if not all(math.isfinite(v) for v in values.values()):
                bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
                saved = self.run.latest_checkpoint() if self.run else None
                kept = (f"The checkpoint of step {int(saved.stem.split('-')[1])} is intact: resume from it with other settings."
                        if saved else "No checkpoint had been written yet: start again with other settings.")
                message = (f"Training stopped: {bad} at step {global_step} (epoch {position.epoch + 1}). "
                           f"Likely cause: {_likely_cause(self.config)}. {kept}")
                self._status("failed", message)
                raise TrainingDiverged(message)
            for name, value in values.items():
                position.epoch_sums[name] = position.epoch_sums.get(name, 0.0) + value
            rows.append({"step": global_step, "epoch": position.epoch + 1, **values})
        seconds = time.perf_counter() - epoch_started
        steps_done = position.step_in_epoch
        images_per_second = steps_done * self.config.batch_size / max(seconds, 1e-9)
        remaining = self.total_steps - position.global_step
        progress = {"step": position.global_step, "total_steps": self.total_steps, "epoch": position.epoch + 1,
                    "epochs": self.config.epochs, "images_per_second": images_per_second,
                    "eta_seconds": remaining * self.config.batch_size / max(images_per_second, 1e-9)}
        if self.plan:   # what the progress bar and the app show against the budget
            progress["budget_left_seconds"] = self.plan.budget_seconds - self._budget_elapsed()
        for row in rows:
            row["learning_rate"] = self._learning_rate(row["step"])
            if self.budget_state is not None:   # the length this step was trained with (re-plans change it)
                row["planned_steps"] = self.total_steps
        if self.run:
            self.run.append_rows("steps", rows)
            self._status("running", "training", **progress)
        for row in rows:
            for callback in self.callbacks:
                callback.on_step_end({**row, **{k: v for k, v in progress.items() if k not in row}})

    def _learning_rate(self, step: int) -> float:
        """The rate the optimizer used at ``step`` (1-based), from the schedule, without touching the device."""
        schedule = self.optimizer._learning_rate
        if isinstance(schedule, budget.BudgetSchedule):   # from the state: JAX's step may hold the variables' buffers
            return schedule.rate(self.budget_state, step - 1)
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            return float(keras.ops.convert_to_numpy(schedule(step - 1)))
        return self.config.learning_rate

    def _end_epoch(self) -> None:
        position, config = self.position, self.config
        steps = position.step_in_epoch   # a budget run's last epoch may be partial
        eval_started, eval_clock = time.perf_counter(), self.clock()
        row = {"epoch": position.epoch + 1, "step": position.global_step}
        row.update({name: total / steps for name, total in position.epoch_sums.items()})
        row.update(self.evaluate())
        if self.budget_state is not None:   # what the next epochs' ends will cost, and not step time
            seconds = self.clock() - eval_clock
            self.budget_state = dataclasses.replace(self.budget_state, eval_seconds=seconds,
                                                    window_overhead=self.budget_state.window_overhead + seconds)
        row["images_per_second"] = steps * config.batch_size / max(position.epoch_seconds, 1e-9)
        row["seconds"] = position.epoch_seconds
        row["eval_seconds"] = time.perf_counter() - eval_started
        row["elapsed_seconds"] = position.elapsed_seconds + row["eval_seconds"]
        position.elapsed_seconds = row["elapsed_seconds"]
        position.epoch += 1
        position.step_in_epoch = 0
        position.epoch_sums = {}
        position.epoch_seconds = 0.0
        if self.budget_state is not None:
            if position.global_step < self.total_steps:   # every epoch's end re-plans, but the last one's
                self._replan()
            # The plan now (re-plans change it) and the first one.
            row.update({"planned_epochs": self.config.epochs, "planned_steps": self.total_steps,
                        "planned_images": self.total_steps * config.batch_size, **self.budget_state.row()})
        self.last_epoch = row
        if self.run:
            self.run.append_rows("epochs", [row])
        for callback in self.callbacks:
            callback.on_epoch_end(row)

    def evaluate(self) -> dict[str, float | None]:
        """kNN top-1 and the online probe's accuracy on the held-out split, from encoder features."""
        data, config = self.dataset, self.config
        if self.eval_index is None or self.bank_index is None:
            return {"knn_accuracy": None, "probe_accuracy": None}
        bank_images = data.labelled_images[self.bank_index]
        test_images = data.test_images[self.eval_index]
        bank, test = self.embed(bank_images), self.embed(test_images)
        test_labels = data.test_labels[self.eval_index]
        knn = evaluate.knn_accuracy(bank, data.labelled_labels[self.bank_index], test, test_labels,
                                    k=config.knn_k, temperature=config.knn_temperature)
        probe = None
        if self.model.linear_probe is not None:
            self._set_probe_statistics(bank)
            logits = self.model.linear_probe.predict(test, batch_size=1024, verbose=0)
            probe = float(np.mean(np.argmax(logits, axis=1) == test_labels))
        return {"knn_accuracy": knn, "probe_accuracy": probe}

    def _set_probe_statistics(self, features: np.ndarray) -> None:
        """Give the probe's input normalisation the exact statistics of clean labelled features.

        In training it standardises with batch statistics; its moving averages lag far behind after a
        short run (25 steps on digits), which left ``classifier.keras`` with nearly flat probabilities.
        """
        standardize = self.model.linear_probe.get_layer("linear_probe_standardize")
        standardize.moving_mean.assign(features.mean(axis=0))
        standardize.moving_variance.assign(features.var(axis=0))

    def embed(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Encoder features (float32) for uint8 images, in inference mode."""
        if not hasattr(self, "_extractor"):
            self._extractor = self.model.feature_extractor()
        return np.asarray(self._extractor.predict(images.astype("float32"), batch_size=batch_size, verbose=0), dtype="float32")

    def _checkpoint(self) -> None:
        position = self.position
        state = {"position": position.__dict__, "epoch_rows": len(self.run.epochs()), "step_rows": len(self.run.steps())}
        if self.budget_state is not None:   # a resumed run re-plans from here as this one goes on to
            state["budget"] = dataclasses.replace(self.budget_state, elapsed_seconds=self._budget_elapsed()).to_dict()
        written = self.clock()
        self.run.save_checkpoint(position.global_step, [keras.ops.convert_to_numpy(v) for v in self.model.variables],
                                 [keras.ops.convert_to_numpy(v) for v in self.optimizer.variables], state,
                                 keep=self.config.keep_checkpoints)
        if self.budget_state is not None:   # the next epochs' checkpoints cost as much, and it was not step time
            seconds = self.clock() - written
            self.budget_state = dataclasses.replace(self.budget_state, checkpoint_seconds=seconds,
                                                    window_overhead=self.budget_state.window_overhead + seconds)

    def _finish(self, stop_reason: str | None, export: bool = False) -> dict:
        stopped_early = stop_reason is not None
        # Nothing trained (stopped before the first step) is nothing worth loading.
        export = export and stopped_early and self.position.global_step > 0 and self.run is not None
        last = getattr(self, "last_epoch", None)
        if last is None and self.run:  # resumed with no epoch left to train: the figures are on disk
            last = (self.run.epochs() or [None])[-1]
        last = last or {}
        summary = {"state": "stopped" if stopped_early else "finished", "stop_reason": stop_reason,
                   "epochs_completed": self.position.epoch, "epochs": self.config.epochs,
                   "global_step": self.position.global_step, "total_steps": self.total_steps,
                   "backend": keras.backend.backend(),
                   **{key: last.get(key) for key in ("loss", "contrastive_accuracy", "probe_accuracy", "knn_accuracy",
                                                     "collapse_std", "images_per_second")}}
        if self.run:
            summary["run"] = str(self.run.path)
            if not stopped_early:
                self.save_models()
            elif export:
                self._export_stopped()
            if export or not stopped_early:   # summary.json says which models the folder holds (RunDir.stopped_at)
                write_json_atomic(self.run.summary_path, summary)
            message = "finished"
            if stopped_early:
                why = " (its time limit)" if stop_reason == "time" else ""
                message = f"stopped{why}: resume to continue from the checkpoint"
                if export:
                    message = (f"stopped at step {self.position.global_step} of {self.total_steps}{why}: encoder.keras "
                               "holds this step's weights; resume to continue from the checkpoint")
            self._status(summary["state"], message, step=self.position.global_step, total_steps=self.total_steps,
                         epoch=self.position.epoch, epochs=self.config.epochs)
        for callback in self.callbacks:
            callback.on_train_end(summary)
        return summary

    def _export_stopped(self) -> None:
        """Save the models of a run stopped mid-way, with the probe's statistics set as at an epoch's end.

        Mid-epoch the probe's moving averages lag (see ``_set_probe_statistics``), so they are set from the kNN bank
        for the export and put back afterwards: the weights in memory stay those of the checkpoint just written.
        """
        probe = self.model.linear_probe
        if probe is None or self.bank_index is None or self.position.step_in_epoch == 0:
            self.save_models()   # no probe, or at an epoch's end, where evaluation has just set them
            return
        standardize = probe.get_layer("linear_probe_standardize")
        kept = [keras.ops.convert_to_numpy(v) for v in (standardize.moving_mean, standardize.moving_variance)]
        self._set_probe_statistics(self.embed(self.dataset.labelled_images[self.bank_index]))
        try:
            self.save_models()
        finally:
            standardize.moving_mean.assign(kept[0])
            standardize.moving_variance.assign(kept[1])

    def save_models(self, folder: Path | None = None) -> None:
        """encoder.keras and classifier.keras into the run folder (or ``folder``, with the same names)."""
        encoder_path, classifier_path = self.run.encoder_path, self.run.classifier_path
        if folder is not None:
            encoder_path, classifier_path = folder / encoder_path.name, folder / classifier_path.name
        # A mixed-precision run exports float32 models (sslcore.model.float32_copy): full precision wherever they load.
        float32_copy(self.model.feature_extractor()).save(encoder_path)
        classifier = self.model.classifier()
        if classifier is not None:
            float32_copy(classifier).save(classifier_path)

    def _status(self, state: str, message: str, **progress) -> None:
        if self.run:
            self.run.write_status(state, message, **progress)
