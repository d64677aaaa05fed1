"""Seconds from the Train page's Start to its first live metrics point, for a digits run with the page's
defaults, through the app's own job manager (a fresh training process: imports, data, compile included).
Prints one JSON line. Usage: app_first_point.py [REPEATS]"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sslcore.config import TrainConfig  # noqa: E402
from sslcore.jobs import JobManager  # noqa: E402


def first_point_seconds(root: str) -> dict:
    manager = JobManager(root, poll_seconds=0.1)
    settings = {**TrainConfig().to_dict(), "log_every_steps": 5}  # the Train page's defaults
    clicked = time.perf_counter()
    run_id = manager.start(settings)
    first_step = first_epoch = None
    while first_epoch is None and time.perf_counter() - clicked < 300:
        history = manager.history(run_id)
        if first_step is None and history["steps"]:
            first_step = time.perf_counter() - clicked
        if history["epochs"]:
            first_epoch = time.perf_counter() - clicked
        time.sleep(0.05)
    manager.stop(run_id)
    manager.wait(run_id)
    manager.shutdown()
    return {"first_step_point_seconds": round(first_step, 1), "first_epoch_point_seconds": round(first_epoch, 1)}


if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with tempfile.TemporaryDirectory() as root:
        results = [first_point_seconds(os.path.join(root, str(i))) for i in range(repeats)]
    print(json.dumps({"script": "app_first_point.py", "data": "digits", "runs": results,
                      "cpu_cores": os.cpu_count(), "backend": os.environ.get("KERAS_BACKEND", "default")}))
