"""``python -m sslcore train | eval | bench``: headless training, evaluation and benchmarks."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_BAD_INPUT, EXIT_FAILED = 2, 1

# Training settings that map one-to-one from --flag to TrainConfig field.
_CONFIG_FLAGS: list[tuple[str, str, type, str]] = [
    ("--method", "method", str, "self-supervised method (simclr, moco, barlow_twins)"),
    ("--encoder", "encoder", str, "convnet, resnet18 or resnet50"),
    ("--encoder-width", "encoder_width", int, "channels of the encoder (convnet 128, resnet18 64)"),
    ("--data", "data", str, "digits | tfds:cifar10 | tfds:stl10 | folder:PATH"),
    ("--image-size", "image_size", int, "images are resized to this square size"),
    ("--test-fraction", "test_fraction", float, "labelled share held out for kNN/probe evaluation"),
    ("--tfds-data-dir", "tfds_data_dir", str, "where tensorflow-datasets keeps prepared data sets"),
    ("--augment", "augment", str, "augmentation preset: weak, strong or simclr"),
    ("--epochs", "epochs", int, "passes over the training images"),
    ("--batch-size", "batch_size", int, "images per step (each gives two views)"),
    ("--optimizer", "optimizer", str, "adam, adamw or sgd"),
    ("--lr", "learning_rate", float, "peak learning rate"),
    ("--weight-decay", "weight_decay", float, "weight decay (adamw, sgd)"),
    ("--schedule", "schedule", str, "cosine or constant"),
    ("--warmup-epochs", "warmup_epochs", float, "linear warm-up length"),
    ("--precision", "precision", str, "fp32, bf16 (mixed bfloat16) or fp16"),
    ("--seed", "seed", int, "seed for weights, augmentation and data order"),
    ("--knn-k", "knn_k", int, "neighbours in the kNN evaluation"),
    ("--keep-checkpoints", "keep_checkpoints", int, "checkpoints kept (0 keeps all)"),
    ("--log-every", "log_every_steps", int, "steps between metric reads (host syncs)"),
]


def _key_values(pairs: list[str] | None, flag: str) -> dict[str, str]:
    result = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"{flag} takes NAME=VALUE; got {pair!r}")
        key, value = pair.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for flag, field, kind, help_text in _CONFIG_FLAGS:
        parser.add_argument(flag, dest=field, type=kind, default=None, help=help_text)
    parser.add_argument("--param", action="append", metavar="NAME=VALUE", help="a method hyperparameter, e.g. temperature=0.2")
    parser.add_argument("--temperature", type=float, help="shortcut for --param temperature=T")
    parser.add_argument("--augment-param", action="append", metavar="NAME=VALUE", help="override one augmentation setting")
    parser.add_argument("--skip-bad-images", action="store_true", default=None, help="skip unreadable images instead of stopping")
    parser.add_argument("--jit", choices=("auto", "true", "false"), default=None, help="XLA-compile the train step")


def _config_values(args) -> dict[str, Any]:
    values = {field: getattr(args, field) for _, field, _, _ in _CONFIG_FLAGS if getattr(args, field) is not None}
    method_values = _key_values(args.param, "--param")
    if args.temperature is not None:
        method_values["temperature"] = args.temperature
    if method_values:
        values["method_params"] = method_values
    augment_values = _key_values(args.augment_param, "--augment-param")
    if augment_values:
        values["augment_params"] = {k: json.loads(v) if v[:1] in "[0123456789.-tf" else v for k, v in augment_values.items()}
    if args.skip_bad_images:
        values["skip_bad_images"] = True
    if args.jit is not None:
        values["jit_compile"] = {"auto": "auto", "true": True, "false": False}[args.jit]
    return values


def build_parser() -> argparse.ArgumentParser:
    # --backend is read by __main__ before Keras is imported; it is declared here so it may stand
    # before or after the command.
    backend_flag = argparse.ArgumentParser(add_help=False)
    backend_flag.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=argparse.SUPPRESS,
                              help="Keras backend (default: the fastest measured for this device)")
    parser = argparse.ArgumentParser(prog="python -m sslcore", description=__doc__, parents=[backend_flag])
    commands = parser.add_subparsers(dest="command", required=True)
    add_command = lambda name, **kw: commands.add_parser(name, parents=[backend_flag], **kw)

    train = add_command("train", help="pretrain an encoder; writes a run folder")
    _add_config_flags(train)
    train.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--max-seconds", type=float, help="stop cleanly (with a checkpoint) before this many seconds")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = add_command("eval", help="kNN and linear accuracy of a run's encoder on labelled images")
    evaluate.add_argument("--run", required=True)
    evaluate.add_argument("--train", help="labelled images for the kNN bank / logistic regression (default: the run's data)")
    evaluate.add_argument("--test", help="labelled images to evaluate on (default: the run's held-out split)")
    evaluate.add_argument("--knn-k", type=int, default=200)

    bench = add_command("bench", help="images/s of the full train step after compiling")
    _add_config_flags(bench)
    bench.add_argument("--steps", type=int, default=50)
    bench.add_argument("--warmup-steps", type=int, default=3)
    return parser


def _train(args) -> dict:
    from sslcore.config import TrainConfig
    from sslcore.runs import RunDir
    from sslcore.trainer import Trainer

    given = _config_values(args)
    run = RunDir(args.out)
    if args.resume:
        if not run.exists():
            raise ValueError(f"--resume: {args.out} is not a run folder (no config.json); start it without --resume")
        saved = run.config()
        saved.pop("backend", None)
        config = TrainConfig.from_dict(saved)
        differing = {k: (v, getattr(config, k)) for k, v in given.items() if getattr(config, k) != v}
        if differing:
            detail = ", ".join(f"{k}={v[0]!r} (run has {v[1]!r})" for k, v in differing.items())
            raise ValueError(f"--resume continues a run with its own settings; these differ: {detail}")
    else:
        if run.exists() and run.epochs():
            raise ValueError(f"{args.out} already holds a run; use --resume to continue it or choose another --out")
        config = TrainConfig.from_dict(given)
    callbacks = [] if args.no_progress else [ProgressBar()]
    return Trainer(config, args.out, callbacks=callbacks).fit(resume=args.resume, max_seconds=args.max_seconds)


def _evaluate(args) -> dict:
    import keras
    import numpy as np

    from sslcore import evaluate
    from sslcore.data import load
    from sslcore.runs import RunDir

    run = RunDir(args.run)
    config = run.config()
    if not run.encoder_path.exists():
        raise FileNotFoundError(f"{args.run} has no encoder.keras: the run has not finished (resume it first)")
    encoder = keras.saving.load_model(run.encoder_path)
    size = config["image_size"]
    if args.train or args.test:
        if not (args.train and args.test):
            raise ValueError("give both --train and --test (labelled image folders), or neither to use the run's data")
        train, test = load(args.train, size, test_fraction=0.5), load(args.test, size, test_fraction=0.5)
        train_x, train_y = _all_labelled(train, args.train)
        test_x, test_y = _all_labelled(test, args.test)
        if train.class_names != test.class_names:
            raise ValueError(f"--train classes {train.class_names} differ from --test classes {test.class_names}")
    else:
        data = load(config["data"], size, test_fraction=config["test_fraction"], seed=config["seed"])
        if data.test_images is None:
            raise ValueError(f"{config['data']} has no labels: give labelled --train and --test folders")
        train_x, train_y, test_x, test_y = data.labelled_images, data.labelled_labels, data.test_images, data.test_labels
    embed = lambda x: np.asarray(encoder.predict(x.astype("float32"), batch_size=512, verbose=0), dtype="float32")
    train_f, test_f = embed(train_x), embed(test_x)
    return {"knn_accuracy": evaluate.knn_accuracy(train_f, train_y, test_f, test_y, k=args.knn_k),
            "linear_accuracy": evaluate.linear_accuracy(train_f, train_y, test_f, test_y),
            "train_images": int(len(train_x)), "test_images": int(len(test_x)), "run": str(run.path)}


def _all_labelled(dataset, source):
    """Every labelled image of a source used whole (eval folders are not split again)."""
    import numpy as np

    if dataset.train_labels is None:
        raise ValueError(f"{source} has no class subfolders: eval needs labelled images")
    images = [dataset.train_images] + ([dataset.test_images] if dataset.test_images is not None else [])
    labels = [dataset.train_labels] + ([dataset.test_labels] if dataset.test_labels is not None else [])
    return np.concatenate(images), np.concatenate(labels)


def _bench(args) -> dict:
    from sslcore.bench import run_benchmark
    from sslcore.config import TrainConfig

    return run_benchmark(TrainConfig.from_dict(_config_values(args)), steps=args.steps, warmup_steps=args.warmup_steps)


class ProgressBar:
    """tqdm bar on stderr with live loss / accuracy; one line per epoch; stdout stays for the JSON summary."""

    def on_train_begin(self, info):
        from tqdm import tqdm

        self.bar = tqdm(total=info["total_steps"], initial=info["start_step"], unit="step", file=sys.stderr,
                        dynamic_ncols=True, desc=f"training on {info['backend']}")

    def on_step_end(self, row):
        self.bar.update(row["step"] - self.bar.n)
        shown = {"loss": row["loss"], "acc": row["contrastive_accuracy"], "img/s": row["images_per_second"]}
        if "train_probe_accuracy" in row:
            shown["probe"] = row["train_probe_accuracy"]
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)

    def on_epoch_end(self, row):
        fmt = lambda v: "—" if v is None else f"{v:.3f}"
        self.bar.write(f"epoch {row['epoch']}: loss {row['loss']:.4f}  contrastive acc {fmt(row['contrastive_accuracy'])}  "
                       f"probe acc {fmt(row.get('probe_accuracy'))}  kNN acc {fmt(row.get('knn_accuracy'))}  "
                       f"{row['images_per_second']:.0f} img/s", file=sys.stderr)

    def on_train_end(self, summary):
        self.bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sslcore.data import DataError
    from sslcore.trainer import TrainingDiverged

    handlers = {"train": _train, "eval": _evaluate, "bench": _bench}
    try:
        result = handlers[args.command](args)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, DataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result, default=float), flush=True)
    return 0
