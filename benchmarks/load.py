"""A crowd on one server: N simulated visitors (one thread and one client each) for S seconds while a run trains
(digits, small settings). Prints one JSON line: calls, failures, p50/p95 per endpoint, the run's images/s under load
against the same run alone just before and just after (the visitors rest meanwhile, so drift in the machine's speed
counts on both sides), a Stop of the training run under load, the CPU cores the server, the trainer and the visitors'
own process used under load, and the server's peak memory.

Each visitor arrives as a browser does (its first call is the default preview: digits, seed 0, what every new
visitor's page asks for), then loops: the run's status (polled as a script should: the first call gets every row,
later ones pass the last step they have and get only the new rows), now and then the run list, a preview
(half the time the default one, else a Re-draw with a fresh seed) and a Stop of an already stopped run (the Stop
endpoint's path without ending the measured run), with a random think time between calls.

Usage: python benchmarks/load.py [--visitors 10] [--seconds 60] [--baseline 30] [--think 1.0] [--in-process]
                                 [--client lean|gradio_client]
The server is ``python app.py`` in its own process unless --in-process (then the visitors share its interpreter).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402

from sslcore.jobs import nice_from_env  # noqa: E402

RUN = {"data": "digits", "image_size": 32, "batch_size": 128, "epochs": 1000, "log_every_steps": 1,
       "encoder": "convnet", "encoder_width": 32}
DEFAULT_PREVIEW = dict(upload=None, images=4, draws=4, image_size=64, seed=0)


class LeanClient:
    """A visitor's calls over Gradio's HTTP API with nothing else: ``POST /gradio_api/call/NAME``, read the event
    stream to its end, then download every file the answer points to (what a browser fetches to show an image).

    The server does the same work as for ``gradio_client`` (the same queue, the same files served), but the visitor
    side costs far less CPU: on one machine the simulated visitors share the cores with the server and the training
    run, which on a real Space they never do (their browsers run elsewhere). ``predict`` takes positional and keyword
    arguments like ``gradio_client.Client.predict``, filling the rest from the endpoint's defaults."""

    def __init__(self, url: str, timeout: float = 300.0):
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)
        self.session = os.urandom(8).hex()
        info = self.http.get(f"{self.url}/gradio_api/info")
        info.raise_for_status()
        self.parameters = {name: endpoint["parameters"] for name, endpoint in info.json()["named_endpoints"].items()}

    def _arguments(self, api_name: str, args: tuple, kwargs: dict) -> list:
        values = []
        for index, parameter in enumerate(self.parameters[api_name]):
            name = parameter["parameter_name"]
            if index < len(args):
                values.append(args[index])
            elif name in kwargs:
                values.append(kwargs[name])
            elif parameter.get("parameter_has_default"):
                values.append(parameter.get("parameter_default"))
            else:
                raise TypeError(f"{api_name}: no value for {name}")
        return values

    def predict(self, *args, api_name: str, **kwargs):
        call = f"{self.url}/gradio_api/call/{api_name.lstrip('/')}"
        answer = self.http.post(call, json={"data": self._arguments(api_name, args, kwargs),
                                            "session_hash": self.session})
        answer.raise_for_status()
        event, data = None, None
        with self.http.stream("GET", f"{call}/{answer.json()['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    data = json.loads(line.split(":", 1)[1])
                    break
        if event != "complete":
            raise RuntimeError(f"{api_name}: {event}: {str(data)[:200]}")
        for value in data:
            if isinstance(value, dict) and value.get("url"):
                self.http.get(value["url"]).raise_for_status()
        return data[0] if len(data) == 1 else tuple(data)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Server:
    """``python app.py`` on a free port with its own runs folder (or the app in this process)."""

    def __init__(self, runs: Path, in_process: bool):
        self.runs, self.in_process, port = runs, in_process, free_port()
        self.url = f"http://127.0.0.1:{port}/"
        if in_process:
            import app
            from sslcore.jobs import JobManager

            self.jobs = JobManager(runs, max_jobs=1)
            self.demo = app.build_app(self.jobs)
            self.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                             **app.launch_options())
            self.pid = os.getpid()
        else:
            env = {**os.environ, "SSLCORE_RUNS": str(runs), "GRADIO_SERVER_PORT": str(port),
                   "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False"}
            self.log = open(runs.parent / "server.log", "w")
            self.process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                                            stdout=self.log, stderr=subprocess.STDOUT)
            self.pid = self.process.pid
            deadline = time.time() + 180
            while time.time() < deadline:
                try:
                    Client(self.url, verbose=False)
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    if self.process.poll() is not None:
                        raise RuntimeError(f"app.py exited: see {runs.parent / 'server.log'}")
                    time.sleep(1)

    def close(self) -> None:
        if self.in_process:
            self.jobs.shutdown(stop_running=True)
            self.demo.close()
        else:
            self.process.terminate()
            self.process.wait(timeout=60)
            self.log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (Linux /proc); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(child) for child in task.read_text().split()]
    return children


class CpuShares:
    """Where the machine's CPU went between ``start`` and ``stop``: the server, its trainer and the visitors'
    process (this one), in cores (CPU seconds per wall second), so the reader sees what the visitors' own clients
    cost, which on a real Space runs on their machines instead."""

    def __init__(self, server_pid: int):
        self.pids = {"server": server_pid, "trainer": max(child_pids(server_pid), default=0)}

    def _now(self) -> dict:
        return {**{name: cpu_seconds(pid) for name, pid in self.pids.items()},
                "visitors": sum(os.times()[:2]), "wall": time.perf_counter()}

    def start(self) -> None:
        self.before = self._now()

    def stop(self) -> dict:
        after = self._now()
        wall = after.pop("wall") - self.before["wall"]
        return {name: round((after[name] - self.before[name]) / wall, 2) for name in after}


def steps_done(runs: Path, run_id: str) -> int:
    from sslcore.runs import RunDir

    rows = RunDir(runs / run_id).steps()
    return rows[-1]["step"] if rows else 0


def images_per_second(runs: Path, run_id: str, seconds: float) -> float:
    first, started = steps_done(runs, run_id), time.perf_counter()
    time.sleep(seconds)
    return (steps_done(runs, run_id) - first) * RUN["batch_size"] / (time.perf_counter() - started)


def wait_for(client: Client, run_id: str, states: tuple, timeout: float = 300.0, steps: bool = False) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.predict(run_id, api_name="/training_status")
        if status["state"] in states and (not steps or status["step_rows"]):
            return status
        time.sleep(0.5)
    raise TimeoutError(f"{run_id}: {status['state']} {status['message']}")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))], 3)


def visitor(url: str, client_class, run_id: str, stopped_id: str, think: float, until: threading.Event,
            resting: threading.Event, seed: int, records: list, errors: list) -> None:
    rng = random.Random(seed)

    def call(endpoint, *args, **kwargs):
        started = time.perf_counter()
        try:
            result = client.predict(*args, api_name=endpoint, **kwargs)
            records.append((endpoint, time.perf_counter() - started, True))
            return result
        except Exception as error:  # noqa: BLE001 - a failed call is what this measures
            records.append((endpoint, time.perf_counter() - started, False))
            errors.append(f"{endpoint}: {type(error).__name__}: {str(error)[:200]}")
            return None

    started = time.perf_counter()
    try:
        client = client_class(url)
        records.append(("connect", time.perf_counter() - started, True))
    except Exception as error:  # noqa: BLE001
        records.append(("connect", time.perf_counter() - started, False))
        errors.append(f"connect: {type(error).__name__}: {error}")
        return
    call("/preview", **DEFAULT_PREVIEW)                         # what the page asks for on arrival
    last_step = -1                                              # a poller asks only for the step rows it lacks
    while not until.is_set():
        if resting.is_set():          # the run is being timed alone again
            until.wait(0.2)
            continue
        status = call("/training_status", run_id, last_step)
        if status and status["step_rows"]:
            last_step = status["step_rows"][-1]["step"]
        if rng.random() < 0.3:
            call("/list_runs")
        if rng.random() < 0.5:
            seed_now = 0 if rng.random() < 0.5 else rng.randrange(1, 10_000)
            call("/preview", **{**DEFAULT_PREVIEW, "seed": seed_now})
        if rng.random() < 0.2:
            call("/stop_training", stopped_id)
        until.wait(rng.uniform(0.5, 1.5) * think)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--baseline", type=float, default=30, help="seconds of training timed alone, before and after the load")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds a visitor waits between calls")
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--client", choices=("lean", "gradio_client"), default="lean",
                        help="how visitors call: plain HTTP (default; see LeanClient) or one gradio_client.Client each")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sslcore-load-"))
    runs = work / "runs"
    runs.mkdir()
    load_before = os.getloadavg()[0]
    server = Server(runs, args.in_process)
    try:
        owner = Client(server.url, verbose=False)
        run_id = owner.predict(RUN, api_name="/start_training")
        stopped_id = owner.predict({**RUN, "epochs": 1}, api_name="/start_training")   # queued behind the first
        owner.predict(stopped_id, api_name="/stop_training")                         # leaves the queue: stopped
        wait_for(owner, run_id, ("running",), steps=True)
        time.sleep(5)                                                                # past compilation
        baseline = images_per_second(runs, run_id, args.baseline)

        records, errors, until, resting = [], [], threading.Event(), threading.Event()
        client_class = LeanClient if args.client == "lean" else (lambda url: Client(url, verbose=False))
        threads = [threading.Thread(target=visitor, args=(server.url, client_class, run_id, stopped_id, args.think,
                                                          until, resting, i, records, errors), daemon=True)
                   for i in range(args.visitors)]
        shares = CpuShares(server.pid)
        shares.start()
        first_step, load_started = steps_done(runs, run_id), time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        loaded = (steps_done(runs, run_id) - first_step) * RUN["batch_size"] / (time.perf_counter() - load_started)
        cores_under_load = shares.stop()
        # Alone again, so that a machine whose speed drifted during the load counts on both sides of the ratio.
        resting.set()
        time.sleep(5)                                       # calls in flight end
        after = images_per_second(runs, run_id, args.baseline)
        resting.clear()
        time.sleep(5)                                       # the visitors are calling again
        stop_started = time.perf_counter()
        owner.predict(run_id, api_name="/stop_training")
        stop_call = time.perf_counter() - stop_started
        stopped = wait_for(owner, run_id, ("stopped", "finished", "failed", "interrupted"), timeout=120)
        stop_done = time.perf_counter() - stop_started
        until.set()
        for thread in threads:
            thread.join(timeout=120)
        load_after = os.getloadavg()[0]
        peak = peak_rss_mb(server.pid)
    finally:
        server.close()

    by_endpoint = defaultdict(list)
    for endpoint, seconds, ok in records:
        by_endpoint[endpoint].append((seconds, ok))
    endpoints = {name: {"calls": len(rows), "failed": sum(not ok for _, ok in rows),
                        "p50_s": percentile([s for s, ok in rows if ok], 50),
                        "p95_s": percentile([s for s, ok in rows if ok], 95),
                        "max_s": percentile([s for s, ok in rows if ok], 100)}
                 for name, rows in sorted(by_endpoint.items())}
    print(json.dumps({
        "script": "load.py", "date": time.strftime("%Y-%m-%d"), "server": "in-process" if args.in_process else "python app.py",
        "visitors": args.visitors, "client": args.client, "seconds": args.seconds, "think_s": args.think,
        "calls": sum(len(rows) for name, rows in by_endpoint.items() if name != "connect"),
        "failed": sum(not ok for _, _, ok in records), "errors": sorted(set(errors))[:10], "endpoints": endpoints,
        "run": {**RUN, "images_per_second_alone": [round(baseline, 1), round(after, 1)],
                "images_per_second_under_load": round(loaded, 1),
                "kept": round(2 * loaded / (baseline + after), 3) if baseline + after else None,
                "alone_s": args.baseline},
        "stop_under_load": {"call_s": round(stop_call, 3), "until_stopped_s": round(stop_done, 2),
                            "state": stopped["state"]},
        "cpu_cores_used_under_load": cores_under_load, "server_peak_rss_mb": peak, "cpu_cores": os.cpu_count(), "train_nice": nice_from_env(),
        "load_average_1min": {"before": round(load_before, 2), "after": round(load_after, 2)},
    }))


if __name__ == "__main__":
    main()
