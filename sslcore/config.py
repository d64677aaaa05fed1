"""A training run's configuration: every setting with its default, checked before any work starts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sslcore.augment import augment_config
from sslcore.encoders import ENCODERS, MIN_IMAGE_SIZE
from sslcore.methods import method_params
from sslcore.model import PRECISIONS

OPTIMIZERS = ("adam", "adamw", "sgd")
RECORDED_EXTRAS = ("backend", "class_names")
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    method: str = "simclr"
    method_params: dict[str, Any] = field(default_factory=dict)
    encoder: str = "convnet"
    encoder_width: int | None = None
    data: str = "digits"
    image_size: int = 32
    test_fraction: float = 0.2
    skip_bad_images: bool = False
    tfds_data_dir: str | None = None
    augment: str = "strong"
    augment_params: dict[str, Any] = field(default_factory=dict)
    probe_augment: str = "weak"
    epochs: int = 5
    batch_size: int = 256
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    precision: str = "fp32"
    seed: int = 0
    jit_compile: Any = "auto"
    devices: int = 1
    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_bank_size: int = 10000
    eval_size: int = 10000
    log_every_steps: int = 10
    keep_checkpoints: int = 3

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
        return method_params(self.method, self.method_params, self.batch_size, num_images)

    def full_augment(self):
        config = augment_config(self.augment, **self.augment_params)
        config.validate()
        return config

    def validate(self, num_images: int | None = None) -> None:
        """Raise ValueError naming the setting for anything that cannot work; cheap, runs before data loads."""
        def require(condition, message):
            if not condition:
                raise ValueError(message)

        require(self.encoder in ENCODERS, f"Unknown encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}")
        require(self.precision in PRECISIONS, f"Unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        require(self.optimizer in OPTIMIZERS, f"Unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        require(self.schedule in SCHEDULES, f"Unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        require(self.epochs >= 1, f"epochs must be at least 1; got {self.epochs}")
        require(self.batch_size >= 2, f"batch_size must be at least 2 (contrastive losses need other images); got {self.batch_size}")
        require(self.learning_rate > 0, f"learning_rate must be positive; got {self.learning_rate}")
        require(self.weight_decay >= 0, f"weight_decay must not be negative; got {self.weight_decay}")
        require(0 <= self.warmup_epochs < self.epochs, f"warmup_epochs must be in [0, epochs); got {self.warmup_epochs}")
        require(self.image_size >= MIN_IMAGE_SIZE[self.encoder],
                f"image_size {self.image_size} is too small for {self.encoder} (minimum {MIN_IMAGE_SIZE[self.encoder]})")
        require(self.image_size <= 512, f"image_size {self.image_size} is larger than this tool supports (512)")
        require(0 < self.test_fraction < 1, f"test_fraction must be between 0 and 1; got {self.test_fraction}")
        require(self.knn_k >= 1 and self.knn_temperature > 0, "knn_k must be ≥ 1 and knn_temperature > 0")
        require(self.log_every_steps >= 1, "log_every_steps must be at least 1")
        require(self.devices >= 0, f"devices must be ≥ 0 (0 = all visible); got {self.devices}")
        self.full_method_params(num_images)
        self.full_augment()
        augment_config(self.probe_augment).validate()
        if num_images is not None:
            require(self.batch_size <= num_images,
                    f"batch_size {self.batch_size} is larger than the {num_images} training images; lower it to at most {num_images}")
