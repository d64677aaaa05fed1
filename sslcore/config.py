"""A training run's configuration: every setting with its default, checked before any work starts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sslcore.augment import DEFAULT_PRESET, PRESETS, augment_config
from sslcore.backend import default_precision
from sslcore.encoders import ENCODERS, MIN_IMAGE_SIZE
from sslcore.methods import METHODS, method_params
from sslcore.model import PRECISIONS

OPTIMIZERS = ("adam", "adamw", "sgd")
RECORDED_EXTRAS = ("backend", "class_names", "budget_plan", "init_source")
SCHEDULES = ("cosine", "constant", "cooldown")


def setting(default: Any = dataclasses.MISSING, help: str = "", *, kind: type = str, flag: str | None = None,
            choices: Sequence[str] | None = None, minimum: float | None = None, maximum: float | None = None,
            factory: Callable[[], Any] | None = None) -> Any:
    """A TrainConfig field that says what it is once: the CLI flags, the Train page's form, ``--config`` JSON and the
    app's ``/start_training`` settings are all read from this (``TrainConfig.describe``)."""
    metadata = {"help": help, "kind": kind, "flag": flag, "choices": tuple(choices) if choices else None,
                "minimum": minimum, "maximum": maximum}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


PRECISION_CHOICES = ("auto", *PRECISIONS)
# The measured best at a 10-minute budget on CIFAR-10 (docs/benchmarks.md); a small training set gets a smaller batch
# so that an epoch still has a few steps and a 300-image folder trains without a setting changed.
AUTO_BATCH_SIZE = 512


def automatic_batch_size(num_images: int | None) -> int:
    """``AUTO_BATCH_SIZE``, or the largest power of two up to a quarter of ``num_images`` (at least 2)."""
    if num_images is None:
        return AUTO_BATCH_SIZE
    quarter = max(2, num_images // 4)
    return min(AUTO_BATCH_SIZE, 1 << (quarter.bit_length() - 1))


@dataclass
class TrainConfig:
    method: str = setting("simclr", "self-supervised method (see the README table)", flag="--method",
                          choices=METHODS)
    method_params: dict[str, Any] = setting(help="the method's own settings (--param NAME=VALUE)", kind=dict,
                                            factory=dict)
    encoder: str = setting("convnet", "encoder architecture", flag="--encoder", choices=ENCODERS)
    encoder_width: int | None = setting(None, "channels of the encoder (convnet 128, resnet18 64)", kind=int,
                                        flag="--encoder-width", minimum=1)
    init: str | None = setting(None, "start the encoder from a pretrained one: a run folder, an encoder.keras file or "
                               "hf://OWNER/NAME[@REVISION] (its architecture too; heads start fresh), or a timm "
                               "resnet18 such as hf://timm/resnet18.a1_in1k", flag="--init")
    data: str = setting("digits", "digits | tfds:cifar10 | tfds:stl10 | folder:PATH (a folder or a .zip/.tar/.tar.gz "
                        "of one) | hf:OWNER/NAME[@REVISION][:CONFIG]", flag="--data")
    image_size: int = setting(32, "images are resized to this square size (px)", kind=int, flag="--image-size",
                              minimum=8, maximum=512)
    test_fraction: float = setting(0.2, "labelled share held out for kNN/probe evaluation", kind=float,
                                   flag="--test-fraction", minimum=0, maximum=1)
    skip_bad_images: bool = setting(False, "skip unreadable images instead of stopping", kind=bool)
    tfds_data_dir: str | None = setting(None, "where tensorflow-datasets keeps prepared data sets",
                                        flag="--tfds-data-dir")
    augment: str = setting(DEFAULT_PRESET, "augmentation preset", flag="--augment", choices=PRESETS)
    augment_params: dict[str, Any] = setting(help="augmentation settings over the preset (--augment-param NAME=VALUE)",
                                             kind=dict, factory=dict)
    probe_augment: str = setting("weak", "augmentation of the online probe's view", choices=PRESETS)
    epochs: int = setting(5, "passes over the training images (a budget sets them itself)", kind=int, flag="--epochs",
                          minimum=1)
    budget_minutes: float | None = setting(
        None, "train for this many minutes instead of a number of epochs: the run times its first steps and plans "
        "the steps whose schedule ends then (loading and compiling included)", kind=float, flag="--budget")
    batch_size: int | None = setting(
        None, f"images per step (each gives two views); unset: {AUTO_BATCH_SIZE}, or a quarter of a smaller training "
        "set (a power of two)", kind=int, flag="--batch-size", minimum=2)
    optimizer: str = setting("adam", "optimizer", flag="--optimizer", choices=OPTIMIZERS)
    learning_rate: float = setting(1e-3, "peak learning rate", kind=float, flag="--lr", minimum=0)
    weight_decay: float = setting(0.0, "weight decay (adamw, sgd)", kind=float, flag="--weight-decay", minimum=0)
    schedule: str = setting("cooldown", "learning-rate schedule (cooldown: constant, then linear to 0 over the last "
                            "fifth of the steps)", flag="--schedule", choices=SCHEDULES)
    warmup_epochs: float = setting(0.0, "linear warm-up length (epochs)", kind=float, flag="--warmup-epochs", minimum=0)
    precision: str = setting("auto", "auto (bf16 on a CPU with AMX under TensorFlow, where it measured 1.6x faster; "
                             "else fp32), fp32, bf16 (mixed bfloat16) or fp16", flag="--precision",
                             choices=PRECISION_CHOICES)
    seed: int = setting(0, "seed for weights, augmentation and data order", kind=int, flag="--seed")
    jit_compile: Any = setting("auto", "XLA-compile the train step: auto, true or false", kind=object)
    devices: int = setting(1, "devices to split each batch over (JAX; 0 = all visible)", kind=int, flag="--devices",
                           minimum=0)
    knn_k: int = setting(200, "neighbours in the kNN evaluation", kind=int, flag="--knn-k", minimum=1)
    knn_temperature: float = setting(0.1, "temperature of the kNN votes", kind=float, minimum=0)
    # The per-epoch kNN is a monitor, embedded afresh each epoch: at 10,000 + 10,000 images it took 13 % of a
    # 10-minute CPU budget, at these sizes 5 % (``sslcore evaluate`` and a push measure on every image).
    knn_bank_size: int = setting(5000, "training images in the kNN bank during training", kind=int, minimum=1)
    eval_size: int = setting(2000, "held-out images evaluated each epoch during training", kind=int, minimum=1)
    log_every_steps: int = setting(10, "steps between metric reads (each is a device → host sync)", kind=int,
                                   flag="--log-every", minimum=1)
    keep_checkpoints: int = setting(3, "checkpoints kept (0 keeps all)", kind=int, flag="--keep-checkpoints",
                                    minimum=0)

    def __post_init__(self):
        # A form's empty "start from" box means no pretrained start, not a source named "".
        if isinstance(self.init, str):
            self.init = self.init.strip() or None

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Every setting: name, default, kind, help, flag, choices, minimum and maximum (as MethodParams.describe)."""
        rows = []
        for item in dataclasses.fields(cls):
            default = item.default_factory() if item.default is dataclasses.MISSING else item.default
            rows.append({"name": item.name, "default": default, **item.metadata})
        return rows

    @classmethod
    def parse(cls, values: dict[str, Any]) -> "TrainConfig":
        """A TrainConfig from text or JSON values (a form, a client, a flag): each value becomes its setting's kind."""
        kinds = {row["name"]: row["kind"] for row in cls.describe()}
        return cls.from_dict({name: parse_value(value, kinds[name], name) if name in kinds else value
                              for name, value in values.items()})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_run_config(cls, saved: dict[str, Any]) -> "TrainConfig":
        """The settings of a run folder's config.json, without what the trainer records beside them
        (the backend it ran on, the class names)."""
        return cls.from_dict({k: v for k, v in saved.items() if k not in RECORDED_EXTRAS})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def full_method_params(self, num_images: int | None = None):
        return method_params(self.method, self.method_params, self.batch_size_for(num_images), num_images)

    def batch_size_for(self, num_images: int | None) -> int:
        """The batch a run on ``num_images`` training images takes (the setting, or ``automatic_batch_size``)."""
        return self.batch_size if self.batch_size is not None else automatic_batch_size(num_images)

    def resolve_for(self, num_images: int, backend: str) -> None:
        """Fix the settings left to the run (an unset batch size, ``auto`` precision) for this data and device, so
        config.json, resumes and chunks keep what the run took."""
        self.batch_size = self.batch_size_for(num_images)
        if self.precision == "auto":
            self.precision = default_precision(backend)[0]

    def full_augment(self):
        config = augment_config(self.augment, **self.augment_params)
        config.validate()
        return config

    def validate(self, num_images: int | None = None) -> None:
        """Raise ValueError naming the setting for anything that cannot work; cheap, runs before data loads."""
        def require(condition, message):
            if not condition:
                raise ValueError(message)

        require(self.batch_size is None or self.batch_size >= 2,
                f"batch_size must be at least 2 (contrastive losses need other images); got {self.batch_size}")
        # Zero passes the declared minimum of these two but cannot work: say "positive" first.
        require(self.learning_rate > 0, f"learning_rate must be positive; got {self.learning_rate}")
        require(self.knn_temperature > 0, f"knn_temperature must be positive; got {self.knn_temperature}")
        require(self.budget_minutes is None or self.budget_minutes > 0,
                f"budget_minutes must be positive (minutes of training); got {self.budget_minutes}")
        for row in self.describe():   # the ranges each setting declares
            value, low, high = getattr(self, row["name"]), row["minimum"], row["maximum"]
            if row["kind"] in (int, float) and value is not None:
                require(low is None or value >= low, f"{row['name']} must be at least {low}; got {value}")
                require(high is None or value <= high, f"{row['name']} must be at most {high}; got {value}")
        require(self.encoder in ENCODERS, f"Unknown encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}")
        require(self.precision in PRECISION_CHOICES,
                f"Unknown precision {self.precision!r}; choose one of {', '.join(PRECISION_CHOICES)}")
        require(self.optimizer in OPTIMIZERS, f"Unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        require(self.schedule in SCHEDULES, f"Unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        require(self.warmup_epochs >= 0, f"warmup_epochs must be at least 0; got {self.warmup_epochs}")
        # A budget run learns its epochs from its plan, which checks that the warm-up fits (sslcore.budget).
        require(self.budget_minutes is not None or self.warmup_epochs < self.epochs,
                f"warmup_epochs must be in [0, epochs); got {self.warmup_epochs}")
        require(self.image_size >= MIN_IMAGE_SIZE[self.encoder],
                f"image_size {self.image_size} is too small for {self.encoder} (minimum {MIN_IMAGE_SIZE[self.encoder]})")
        require(0 < self.test_fraction < 1, f"test_fraction must be between 0 and 1; got {self.test_fraction}")
        self.full_method_params(num_images)
        self.full_augment()
        augment_config(self.probe_augment).validate()
        if num_images is not None:
            batch_size = self.batch_size_for(num_images)
            require(batch_size <= num_images,
                    f"batch_size {batch_size} is larger than the {num_images} training images; lower it to at most {num_images}")


def parse_value(value: Any, kind: type, name: str) -> Any:
    """One reader from text (a flag, a form, JSON's 32.0 for 32) to a setting's kind, so an error is about the setting
    ("epochs must be a whole number"), not about a float where an int belongs."""
    if value is None or kind in (str, dict, object):
        return value
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return text in ("1", "true", "yes", "on")
        if kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            return float(value)
    except (TypeError, ValueError):
        what = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise ValueError(f"{name} must be {what}; got {value!r}") from None
    return value


def kind_of(default: Any) -> type:
    """The kind of a setting known only by its default (a method's hyperparameter)."""
    for kind in (bool, int, float, str):
        if isinstance(default, kind):
            return kind
    return object
