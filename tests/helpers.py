"""Small shared pieces for the tests: a tiny, fast training configuration on digits."""
from sslcore.config import TrainConfig


def tiny_config(**overrides) -> TrainConfig:
    """Digits at 32 px with a narrow convnet: a whole epoch takes about a second on 2 CPU cores."""
    settings = dict(data="digits", image_size=32, encoder="convnet", encoder_width=32, epochs=2, batch_size=128,
                    log_every_steps=3, seed=0)
    settings.update(overrides)
    return TrainConfig(**settings)


class StopAfter:
    """A stop signal that fires after ``n`` checks: stops a run mid-epoch at a known step."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def is_set(self):
        self.calls += 1
        return self.calls > self.n
