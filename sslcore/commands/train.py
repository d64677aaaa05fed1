"""``train``: pretrain an encoder into a run folder, with a live progress bar; ``--resume`` continues it."""
from __future__ import annotations

import contextlib
import signal
import sys

from sslcore.commands.options import add_config_flags, config_values


def add_arguments(parser) -> None:
    add_config_flags(parser)
    parser.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--max-seconds", type=float, help="stop cleanly (with a checkpoint) before this many seconds")
    parser.add_argument("--max-steps", type=int, help="stop cleanly (with a checkpoint) after this many steps in this call")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--token", help="Hugging Face token for a private --init hf:// model (default: HF_TOKEN, then "
                                        "`hf auth login`); never printed or written to the run folder")


def run(args) -> dict:
    from sslcore import hub

    try:
        return _train(args)
    except hub.HubError as error:   # --init from the Hub: an unknown or private repo, no connection
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None


def _train(args) -> dict:
    from sslcore import pretrained
    from sslcore.config import TrainConfig
    from sslcore.distribute import join_hosts
    from sslcore.runs import RunDir
    from sslcore.trainer import Trainer

    several_hosts = join_hosts()   # a no-op unless the launcher set KERAS_DISTRIBUTION_NUM_PROCESSES above 1
    given = config_values(args)
    if args.epochs is not None and given.get("budget_minutes") is not None:
        # Both would set the run's length: refuse rather than let one silently win.
        raise ValueError("--budget sets the number of epochs itself (as many as fit the minutes); give --budget or "
                         "--epochs, not both")
    if several_hosts and given.get("budget_minutes") is not None and not args.resume:
        # Each host would time itself and could plan another number of steps: the hosts would then wait on each other
        # for ever. (A resumed budget run reads its recorded plan, the same on every host.)
        raise ValueError("--budget cannot plan a run on several hosts (each would time itself); give --epochs")
    run_dir = RunDir(args.out)
    if args.resume:
        if not run_dir.exists():
            raise ValueError(f"--resume: {args.out} is not a run folder (no config.json); start it without --resume")
        config = TrainConfig.from_run_config(run_dir.config())
        differing = {k: (v, getattr(config, k)) for k, v in given.items() if getattr(config, k) != v}
        if differing:
            detail = ", ".join(f"{k}={v[0]!r} (run has {v[1]!r})" for k, v in differing.items())
            raise ValueError(f"--resume continues a run with its own settings; these differ: {detail}")
    else:
        if run_dir.exists() and run_dir.epochs():
            raise ValueError(f"{args.out} already holds a run; use --resume to continue it or choose another --out")
        config = TrainConfig.from_dict(given)
    source = None
    if (config.init or "").strip() and not args.resume:
        # Before any data loads: a bad source fails at once, and settings not given become the source's.
        source = pretrained.resolve(config.init, token=args.token)
        config = pretrained.adopt(config, source, given={name for name, value in given.items() if value is not None})
    callbacks = [] if args.no_progress else [ProgressBar()]
    trainer = Trainer(config, args.out, callbacks=callbacks, loading_progress=not args.no_progress,
                      init_source=source)
    with stop_on_sigterm(run_dir):
        return trainer.fit(resume=args.resume, max_seconds=args.max_seconds, max_steps=args.max_steps)


@contextlib.contextmanager
def stop_on_sigterm(run_dir):
    """SIGTERM (``kill PID``, a scheduler's notice before its time limit) stops the run as the app's Stop does: after
    the current step, with a checkpoint and the models exported. A second SIGTERM kills at once."""
    def request_stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        run_dir.request_stop()

    try:
        previous = signal.signal(signal.SIGTERM, request_stop)
    except ValueError:   # not the main thread (the CLI called from a thread): keep the default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ProgressBar:
    """tqdm bar on stderr with live loss / accuracy; one line per epoch; stdout stays for the JSON summary."""

    def on_train_begin(self, info):
        from tqdm import tqdm

        self.bar = tqdm(total=info["total_steps"], initial=info["start_step"], unit="step", file=sys.stderr,
                        dynamic_ncols=True, desc=f"training on {info['backend']}")
        if info.get("budget_seconds"):
            self.bar.write(f"budget of {info['budget_seconds'] / 60:g} min: {info['epochs']} epochs, "
                           f"{info['total_steps']} steps planned", file=sys.stderr)

    def on_step_end(self, row):
        if row.get("total_steps") and row["total_steps"] != self.bar.total:   # a budget run re-planned its length
            self.bar.total = row["total_steps"]
        self.bar.update(row["step"] - self.bar.n)
        shown = {"loss": row["loss"], "acc": row["contrastive_accuracy"], "img/s": row["images_per_second"]}
        if "train_probe_accuracy" in row:
            shown["probe"] = row["train_probe_accuracy"]
        shown = {k: f"{v:.3g}" for k, v in shown.items()}
        if row.get("budget_left_seconds") is not None:   # a budget run: time left against its budget, not the ETA
            left = max(0, round(row["budget_left_seconds"]))
            shown["budget left"] = f"{left // 60}:{left % 60:02d}"
        self.bar.set_postfix(shown, refresh=False)

    def on_epoch_end(self, row):
        fmt = lambda v: "—" if v is None else f"{v:.3f}"
        self.bar.write(f"epoch {row['epoch']}: loss {row['loss']:.4f}  contrastive acc {fmt(row['contrastive_accuracy'])}  "
                       f"probe acc {fmt(row.get('probe_accuracy'))}  kNN acc {fmt(row.get('knn_accuracy'))}  "
                       f"{row['images_per_second']:.0f} img/s", file=sys.stderr)

    def on_train_end(self, summary):
        self.bar.close()
