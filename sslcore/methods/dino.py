"""DINO (Caron et al. 2021): self-distillation with no labels.

A student network learns to output the same distribution over ``output_dim`` prototypes as a teacher, an
exponential moving average of the student, gives for the *other* view. Two tricks keep the teacher from
collapsing, and they pull in opposite directions: centring (subtract a running mean of its outputs, so no
prototype dominates) and sharpening (a low teacher temperature, so its distribution is never uniform).

The head: an MLP down to a bottleneck, L2-normalised, then cosine similarity to ``output_dim`` unit
prototypes (the paper's weight-normalised last layer with its norm fixed at 1). The teacher's momentum
follows BYOL's cosine schedule to 1 (see ``sslcore.methods.byol`` for how the schedule knows the step).
The paper also warms the teacher temperature up from 0.04 to 0.07 over 30 epochs; short runs keep 0.04,
as lightly's default does. Multi-crop (extra small local views) is not used: every method here sees the
same two views.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from sslcore import losses
from sslcore.heads import mlp_head
from sslcore.methods.base import Method, MethodOutput, MethodParams, hyperparameter
from sslcore.methods.momentum import momentum_copy, scheduled_ema_update


@keras.saving.register_keras_serializable(package="sslcore")
class Prototypes(keras.layers.Layer):
    """Cosine similarity of the L2-normalised input to ``count`` learnt prototypes, each kept at unit norm."""

    def __init__(self, count: int, **kwargs):
        super().__init__(**kwargs)
        self.count = count

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.count), initializer="glorot_uniform", name="kernel")

    def call(self, inputs):
        return ops.matmul(losses.l2_normalize(inputs), losses.l2_normalize(self.kernel, axis=0))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.count)

    def get_config(self):
        return {**super().get_config(), "count": self.count}


@dataclass
class DINOParams(MethodParams):
    momentum: float = hyperparameter(0.99, "base EMA momentum of the teacher, raised to 1 by a cosine schedule over the run "
                                           "(paper: 0.996 on ImageNet; 0.99 suits short runs on small data)")
    teacher_temperature: float = hyperparameter(0.04, "teacher softmax temperature: lower sharpens its targets (paper: 0.04, warmed up to 0.07 in long runs)")
    student_temperature: float = hyperparameter(0.1, "student softmax temperature (paper: 0.1)")
    center_momentum: float = hyperparameter(0.9, "EMA momentum of the centre subtracted from the teacher's outputs (paper: 0.9)")
    output_dim: int = hyperparameter(256, "number of prototypes the distributions are over (paper: 65,536 on ImageNet; "
                                          "short runs on small data do better with fewer)")
    bottleneck_dim: int = hyperparameter(128, "size of the L2-normalised bottleneck before the prototypes (paper: 256)")
    hidden_dim: int = hyperparameter(512, "hidden size of the head MLP (paper: 2048)")
    hidden_layers: int = hyperparameter(2, "hidden layers of the head MLP (paper: 2)")
    head_batch_norm: bool = hyperparameter(True, "batch norm inside the head MLP (as lightly's CIFAR-10 set-up; without it the "
                                                 "convnet's outputs differ too little between images and training collapses to uniform)")

    def validate(self, batch_size=None):
        super().validate(batch_size)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if not 0 <= self.center_momentum < 1:
            raise ValueError(f"center_momentum must be in [0, 1); got {self.center_momentum}")


class DINO(Method):
    Params = DINOParams
    description = "Cross-entropy from a momentum teacher's centred, sharpened distribution to the student's, across views."

    def __init__(self, params: DINOParams, feature_dim: int, encoder: keras.Model, **kwargs):
        super().__init__(params, feature_dim, encoder, **kwargs)
        self.teacher_encoder = momentum_copy(encoder, "teacher_encoder")
        self.teacher_head = momentum_copy(self.projection_head, "teacher_head")
        self.center = self.add_weight(shape=(params.output_dim,), name="center", trainable=False, initializer="zeros")
        self.steps_done = self.add_weight(shape=(), name="steps_done", trainable=False, initializer="zeros")

    def build_projection_head(self, feature_dim: int) -> keras.Model:
        p = self.params
        mlp = mlp_head(feature_dim, [p.hidden_dim] * p.hidden_layers, p.bottleneck_dim,
                       batch_norm=p.head_batch_norm, name="dino_mlp")
        return keras.Sequential([keras.Input((feature_dim,)), mlp, Prototypes(p.output_dim, name="prototypes")],
                                name="projection_head")

    def teacher(self, view, training):
        return ops.stop_gradient(self.teacher_head(self.teacher_encoder(view, training=training), training=training))

    def compute(self, encoder, view1, view2, training=True):
        p = self.params
        scheduled_ema_update([(self.teacher_encoder, encoder), (self.teacher_head, self.projection_head)],
                             p.momentum, self.steps_done, self.total_steps)
        features1 = encoder(view1, training=training)
        student1 = self.projection_head(features1, training=training)
        student2 = self.projection_head(encoder(view2, training=training), training=training)
        teacher1, teacher2 = self.teacher(view1, training), self.teacher(view2, training)
        center = ops.stop_gradient(ops.convert_to_tensor(self.center))
        loss = (losses.dino(student1, teacher2, center, p.student_temperature, p.teacher_temperature)
                + losses.dino(student2, teacher1, center, p.student_temperature, p.teacher_temperature)) / 2
        self.update_center(ops.concatenate([teacher1, teacher2], axis=0))
        return MethodOutput(loss, student1, teacher2, features1)

    def update_center(self, teacher_outputs) -> None:
        """centre ← m·centre + (1 − m)·(mean teacher output over the batch and both views), after the loss used it."""
        m = self.params.center_momentum
        batch_center = ops.mean(ops.cast(teacher_outputs, "float32"), axis=0)
        self.center.assign(m * ops.convert_to_tensor(self.center) + (1.0 - m) * batch_center)
