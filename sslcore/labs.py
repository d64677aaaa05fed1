"""One lab per visitor on a public Space: whose runs and uploads are whose, what data a visitor may name, and how
much disk each may fill.

On a Hugging Face Space (``SPACE_ID`` set) strangers share one server, so every run the app starts records its
owner (a hash of the visitor's key, ``owner`` in the run folder) and a visitor sees, stops, resumes and pushes only
their own; runs without an owner are the Space owner's examples, which everyone may view but nobody may stop,
resume or push from the page. Data comes from the visitor's uploads (``upload:NAME``), the built-in sets and the Hub
(``hf:``); a ``folder:`` path is honoured only inside the visitor's own uploads, so no endpoint reads a server path.
Locally (no ``SPACE_ID``) every caller is the one visitor ``local`` and nothing is filtered.

The settings are environment variables, read when the app starts:
``SSLCORE_VISITOR_QUOTA_MB`` (uploads + runs per visitor, default 2048), ``SSLCORE_VISITOR_TTL_HOURS`` (a visitor
unseen this long loses their finished runs and uploads, default 24) and ``SSLCORE_VISITOR_MAX_JOBS`` (runs one
visitor may have queued or training at once, default 1, so nobody queues many runs ahead of others) and
``SSLCORE_VISITOR_RUN_MINUTES`` (training minutes one start or resume may take, default 60: the run then stops with
its checkpoint and models saved, and Resume queues it again behind the others). Since a stranger can be a new
visitor on every request, the whole Space has caps too: ``SSLCORE_SPACE_MAX_RUNS`` (runs queued or training, default
8) and ``SSLCORE_SPACE_QUOTA_MB`` (all labs' uploads and runs, default 20480).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslcore import credentials
from sslcore.data import archives
from sslcore.jobs import LIVE_STATES, JobManager
from sslcore.runs import RunDir, list_runs

LOCAL = "local"
UPLOADS_DIR = ".uploads"       # under the runs root: .uploads/<visitor>/<upload name>/
SEEN_DIR = ".visitors"         # under the runs root: one file per visitor, its mtime the last time they were seen
UPLOAD_PREFIX = "upload:"
OUTPUTS_DIR = ".outputs"       # under a visitor's uploads: files the pages wrote for download (not an upload)
_UPLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_KEPT_CHECKPOINTS = 3      # on a public Space: the default; 0 would keep every epoch's
# On a public Space, the largest sizes one visitor's run may ask for: memory is shared, and a run over it can take
# the app down with it. Method settings by the kind of size their name says.
SPACE_MAXIMUMS = {"image_size": 256, "batch_size": 1024, "encoder_width": 512, "knn_bank_size": 50_000,
                  "eval_size": 10_000}
SPACE_METHOD_MAXIMUMS = {"_dim": 4096, "_layers": 4, "queue_size": 65_536}
_SEEN_EVERY_SECONDS = 60.0
_COLLECT_EVERY_SECONDS = 600.0


class AccessError(ValueError):
    """A visitor asked for something that is not theirs (or not there): a user error, shown as it is."""


on_public_space = credentials.on_public_server


def visitor_id(key: str) -> str:
    """The name a visitor's runs and uploads are filed under: a hash, so the key itself is never written down."""
    return "v" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]


@dataclass(frozen=True)
class LabSettings:
    quota_bytes: int = 2048 * 1024 ** 2
    idle_seconds: float = 24 * 3600.0
    max_jobs_per_visitor: int = 1
    run_minutes: float = 60.0
    # For the whole Space: a stranger can be a new visitor on every request, so per-visitor limits alone bound nothing.
    space_max_runs: int = 8
    space_quota_bytes: int = 20 * 1024 ** 3

    @classmethod
    def from_env(cls) -> "LabSettings":
        return cls(quota_bytes=int(credentials.positive_setting("SSLCORE_VISITOR_QUOTA_MB", 2048) * 1024 ** 2),
                   idle_seconds=credentials.positive_setting("SSLCORE_VISITOR_TTL_HOURS", 24) * 3600.0,
                   max_jobs_per_visitor=max(1, int(credentials.positive_setting("SSLCORE_VISITOR_MAX_JOBS", 1))),
                   run_minutes=credentials.positive_setting("SSLCORE_VISITOR_RUN_MINUTES", 60),
                   space_max_runs=max(1, int(credentials.positive_setting("SSLCORE_SPACE_MAX_RUNS", 8))),
                   space_quota_bytes=int(credentials.positive_setting("SSLCORE_SPACE_QUOTA_MB", 20480) * 1024 ** 2))


class Labs:
    """Every visitor's lab over one job manager; ``lab(visitor)`` is cheap, so pages ask for it on every call."""

    def __init__(self, manager: JobManager, *, public: bool | None = None, settings: LabSettings | None = None,
                 limits: archives.UploadLimits | None = None, received_dir: str | os.PathLike | None = None):
        """``received_dir``: where the web server keeps the files visitors send it (Gradio's upload folder). On a
        public Space ``ingest`` files nothing from anywhere else, whatever path an API caller names."""
        self.manager = manager
        self.public = on_public_space() if public is None else public
        self.received_dir = os.path.realpath(received_dir) if received_dir else None
        self.settings = settings or LabSettings.from_env()
        self.limits = limits or archives.UploadLimits.from_env()
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}
        self._collected = 0.0

    @property
    def root(self) -> Path:
        return self.manager.root

    def lab(self, visitor: str | None) -> "Lab":
        if not self.public:
            return Lab(self, LOCAL)
        if not visitor or visitor == LOCAL:
            raise AccessError("This request carries no visitor session: open the app's page (or a gradio_client "
                              "session) and try again")
        self._mark_seen(visitor)
        return Lab(self, visitor)

    def _mark_seen(self, visitor: str) -> None:
        now = time.time()
        with self._lock:
            if now - self._seen.get(visitor, 0.0) < _SEEN_EVERY_SECONDS:
                return
            self._seen[visitor] = now
            collect = now - self._collected > _COLLECT_EVERY_SECONDS
            if collect:
                self._collected = now
        seen = self.root / SEEN_DIR / visitor
        seen.parent.mkdir(parents=True, exist_ok=True)
        seen.touch()
        if collect:
            self.collect_garbage(now)

    def collect_garbage(self, now: float | None = None) -> list[str]:
        """Remove the finished runs and the uploads of visitors unseen for ``idle_seconds``: a Space's disk is
        small and its visitors rarely come back. Live runs are kept. Returns what was removed."""
        now = time.time() if now is None else now
        removed = []
        seen_dir = self.root / SEEN_DIR
        gone = {path.name for path in seen_dir.iterdir()
                if now - path.stat().st_mtime > self.settings.idle_seconds} if seen_dir.exists() else set()
        for run in list_runs(self.root):
            owner = run_owner(run)
            if owner in gone and self.manager.status(run.name)["state"] not in LIVE_STATES:
                shutil.rmtree(run.path, ignore_errors=True)
                removed.append(run.name)
        for visitor in gone:
            uploads = self.root / UPLOADS_DIR / visitor
            if uploads.exists():
                shutil.rmtree(uploads, ignore_errors=True)
                removed.append(f"{UPLOADS_DIR}/{visitor}")
            if not any(run_owner(run) == visitor for run in list_runs(self.root)):
                (seen_dir / visitor).unlink(missing_ok=True)
        return removed


def run_owner(run: RunDir) -> str | None:
    return run.owner()


class Lab:
    """What one visitor may see and do. Locally (visitor ``local``) that is everything."""

    def __init__(self, labs: Labs, visitor: str):
        self.labs, self.visitor, self.manager = labs, visitor, labs.manager
        self.public = labs.public

    @property
    def root(self) -> Path:
        return self.manager.root

    @property
    def uploads_dir(self) -> Path:
        return self.root / UPLOADS_DIR / self.visitor

    # -- runs ----------------------------------------------------------------------------------------
    def owns(self, run: RunDir) -> bool:
        return not self.public or run_owner(run) == self.visitor

    def can_view(self, run: RunDir) -> bool:
        owner = run_owner(run)
        return not self.public or owner is None or owner == self.visitor

    def existing_run(self, run_id: str) -> RunDir:
        """The run, if this visitor may look at it; another visitor's run reads as absent, not as forbidden, so its
        name cannot be probed."""
        run = self.manager.run_dir(run_id)
        if not run.exists() or not self.can_view(run):
            raise AccessError(f"No run {run_id!r} here: pick one from the run list")
        return run

    def own_run(self, run_id: str) -> RunDir:
        run = self.existing_run(run_id)
        if not self.owns(run):
            raise AccessError(f"{run_id} is an example run of this Space: you can look at it, explore it and classify "
                              "with it, but only its owner can stop, resume or push it. Train a run of your own.")
        return run

    def run_dir(self, run_id: str) -> RunDir:
        return self.existing_run(run_id)

    def runs(self) -> list[dict[str, Any]]:
        rows = self.manager.runs()
        if not self.public:
            return rows
        visible = {run.name for run in list_runs(self.root) if self.can_view(run)}
        return [{**row, "data": self.source_name(row["data"] or "")} for row in rows if row["run_id"] in visible]

    def status(self, run_id: str) -> dict[str, Any]:
        self.existing_run(run_id)
        return self.manager.status(run_id)

    def history(self, run_id: str, after_step: int | None = None) -> dict[str, list[dict]]:
        self.existing_run(run_id)
        return self.manager.history(run_id, after_step)

    def signature(self, run_id: str | None) -> tuple:
        if run_id:
            self.existing_run(run_id)
        return self.manager.signature(run_id)

    def live_run(self) -> str | None:
        live = self.manager.live_run()
        if live is None or not self.public:
            return live
        mine = [row["run_id"] for row in self.runs() if row["state"] in LIVE_STATES and self.owns(self.manager.run_dir(row["run_id"]))]
        return mine[0] if mine else None

    def start(self, settings: dict[str, Any], backend: str | None = None) -> str:
        settings = dict(settings)
        settings["data"] = self.resolve_source(str(settings.get("data") or "digits"))
        settings["init"] = self.resolve_init(settings.get("init"))
        if not self.public:
            return self.manager.start(settings, backend)
        self._check_run_size(settings)   # no disk to read: first
        self._check_fair_share()
        self._check_quota(0)
        return self.manager.start(settings, backend, owner=self.visitor, max_seconds=self._run_seconds())

    def stop(self, run_id: str) -> dict[str, Any]:
        self.own_run(run_id)
        return self.manager.stop(run_id)

    def resume(self, run_id: str, backend: str | None = None) -> str:
        self.own_run(run_id)
        if not self.public:
            return self.manager.resume(run_id, backend)
        self._check_fair_share()
        self._check_quota(0)
        return self.manager.resume(run_id, backend, max_seconds=self._run_seconds())

    def drive(self, run_id: str):
        self.own_run(run_id)
        return self.manager.drive(run_id)

    def _run_seconds(self) -> float:
        return 60.0 * self.labs.settings.run_minutes

    def _check_run_size(self, settings: dict[str, Any]) -> None:
        """What would make one run hold the shared trainer, or fill the visitor's disk, is refused up front."""
        minutes = self.labs.settings.run_minutes
        budget = _number(settings.get("budget_minutes"))
        if budget and budget > minutes:
            raise AccessError(f"This Space trains a run for at most {minutes:g} minutes at a time, so everyone gets "
                              f"a turn: ask for {minutes:g} minutes or fewer (a longer run stops there, and Resume "
                              "continues it), or run the lab on your own machine for longer runs")
        if settings.get("tfds_data_dir"):
            raise AccessError("tfds_data_dir cannot be set on this Space (it names a folder on the server): leave it "
                              "empty for the prepared tfds sets, or use a Hugging Face dataset (hf:OWNER/NAME)")
        asked = [(name, settings.get(name), limit) for name, limit in SPACE_MAXIMUMS.items()]
        asked += [(f"method_params.{name}", value, limit) for name, value in (settings.get("method_params") or {}).items()
                  for ending, limit in SPACE_METHOD_MAXIMUMS.items() if name.endswith(ending)]
        for name, value, limit in asked:
            number = _number(value)
            if number is not None and number > limit:
                raise AccessError(f"{name} must be at most {limit:,} on this Space, whose memory every visitor shares; "
                                  f"got {value}. Run the lab on your own machine for larger runs")
        kept = settings.get("keep_checkpoints")
        if kept is not None and not 1 <= (_number(kept) or 0) <= MAX_KEPT_CHECKPOINTS:
            raise AccessError(f"keep_checkpoints must be 1 to {MAX_KEPT_CHECKPOINTS} on this Space (each checkpoint "
                              f"counts towards your disk quota); got {kept}")

    def _check_fair_share(self) -> None:
        live = [row["run_id"] for row in self.manager.runs() if row["state"] in LIVE_STATES]
        limit = self.labs.settings.space_max_runs
        if len(live) >= limit:
            raise AccessError(f"This Space already has {len(live)} runs queued or training, as many as it takes: try "
                              "again when one has finished, or run the lab on your own machine")
        mine = [run_id for run_id in live if run_owner(self.manager.run_dir(run_id)) == self.visitor]
        limit = self.labs.settings.max_jobs_per_visitor
        if len(mine) >= limit:
            raise AccessError(f"You already have {len(mine)} run(s) queued or training ({', '.join(mine)}); this Space "
                              f"allows {limit} per visitor so everyone gets a turn. Stop it or wait for it to finish.")

    # -- data ----------------------------------------------------------------------------------------
    def uploads(self) -> list[str]:
        """``upload:NAME`` for each of this visitor's uploads, newest first."""
        if not self.uploads_dir.exists():
            return []
        folders = [path for path in self.uploads_dir.iterdir() if path.is_dir() and not path.name.startswith(".")]
        folders.sort(key=lambda path: path.stat().st_mtime, reverse=True)
        return [UPLOAD_PREFIX + path.name for path in folders]

    def resolve_source(self, source: str) -> str:
        """A data source this visitor may use, with ``upload:NAME`` turned into the folder it names."""
        source = source.strip()
        if source.startswith(UPLOAD_PREFIX):
            return "folder:" + str(self.upload_folder(source))
        if source.startswith("folder:"):
            return "folder:" + self.resolve_folder(source[len("folder:"):])
        return source

    def resolve_init(self, source: str | None) -> str | None:
        """The encoder a new run starts from (``--init``): locally anything ``sslcore.pretrained`` reads; on a public
        Space a Hugging Face model (``hf://``) or a run this visitor may look at, by its id, so that no endpoint loads
        a file from the server's disk or from another visitor's run."""
        text = str(source or "").strip()
        if not text or not self.public or text.startswith("hf://"):
            return text or None
        try:
            run = self.existing_run(text)
        except ValueError:   # AccessError included: another visitor's run reads as absent
            raise AccessError("On this Space a run starts from a Hugging Face model (hf://OWNER/NAME) or from one of "
                              "your runs (its id from the run list): files on the server cannot be read.") from None
        if not run.encoder_path.exists():   # said here, by its id: the check behind Start would name the server path
            raise ValueError(f"Run {text} has no encoder yet: start from a run that finished or was stopped")
        return str(run.path)

    def source_name(self, source: str) -> str:
        """A data source as this visitor is shown it: an upload by its ``upload:NAME``, never by the server folder
        ``resolve_source`` turned it into (a run's config.json holds that folder)."""
        path = source[len("folder:"):] if source.startswith("folder:") else None
        if path is None:
            return source
        uploads = os.path.realpath(self.root / UPLOADS_DIR)
        real = os.path.realpath(path)
        if os.path.commonpath([real, uploads]) == uploads:   # any visitor's: runs are only shown to who may view them
            relative = Path(os.path.relpath(real, uploads)).parts
            return UPLOAD_PREFIX + relative[1] if len(relative) > 1 else "an upload"
        return "a folder on the server" if self.public else source

    def upload_folder(self, name: str) -> Path:
        name = name[len(UPLOAD_PREFIX):] if name.startswith(UPLOAD_PREFIX) else name
        folder = self.uploads_dir / name
        if not _UPLOAD_NAME.match(name) or not folder.is_dir():
            raise AccessError(f"No upload {name!r} in your lab: upload images or an archive first "
                              f"(yours: {', '.join(self.uploads()) or 'none yet'})")
        return folder

    def resolve_folder(self, path: str) -> str:
        """A folder the visitor named: ``upload:NAME`` or, locally, any path; on a public Space only paths inside the
        visitor's own uploads, so no endpoint can read the server's disk or another visitor's files."""
        path = (path or "").strip()
        if path.startswith(UPLOAD_PREFIX):
            return str(self.upload_folder(path))
        if path.startswith("folder:"):
            path = path[len("folder:"):]
        if not self.public:
            return path
        real = os.path.realpath(path) if path else ""
        mine = os.path.realpath(self.uploads_dir)
        if not path or os.path.commonpath([real, mine]) != mine:
            raise AccessError("On this Space, data comes from your uploads (upload a zip, a tar or image files), "
                              "the built-in sets or a Hugging Face dataset (hf:OWNER/NAME): folders on the server "
                              "cannot be read.")
        return real

    def ingest(self, paths: list[str], names: list[str] | None = None, label: str | None = None) -> tuple[str, archives.Ingested]:
        """Files uploaded in one go (archives, images) into a new upload folder; returns ``upload:NAME`` and what
        was written or skipped. Refused whole when it would take the visitor over their disk quota."""
        if not paths:
            raise AccessError("Nothing was uploaded: choose image files, a folder, or a .zip / .tar / .tar.gz archive")
        if self.public:
            self._check_received(paths)
        incoming = sum(_size(path) for path in paths)
        if self.public:
            self._check_quota(incoming)
        name = self._new_upload_name(label or _upload_label(paths, names))
        staging = self.uploads_dir / f".incoming-{name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            ingested = archives.ingest_files(list(map(str, paths)), str(staging), names=names, limits=self.labs.limits)
            if self.public:   # what the archives held, now that it is unpacked
                self._check_quota(0)
            final = self.uploads_dir / name
            os.replace(ingested.folder, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        ingested.folder = str(final)
        return UPLOAD_PREFIX + name, ingested

    def _check_received(self, paths: list[str]) -> None:
        """Every path must be a file the server received from a visitor: an API caller can name any path, and a
        server file filed into their lab would be theirs to view. Says nothing of whether a refused path exists."""
        inbox = self.labs.received_dir
        for path in paths:
            real = os.path.realpath(path)
            if inbox is None or os.path.commonpath([real, inbox]) != inbox or real == inbox:
                raise AccessError(f"{os.path.basename(str(path)) or path!r} was not uploaded to this Space: send "
                                  "your files with the upload buttons, or from a script with gradio_client's "
                                  "handle_file(PATH)")

    def output_folder(self, kind: str, keep: int = 3) -> Path:
        """A new folder for what a page writes for download (an audit's CSVs, an export's zip, labels), inside the
        visitor's lab so it counts towards their quota and goes with it; the ``keep`` newest of a kind are kept."""
        outputs = self.uploads_dir / OUTPUTS_DIR
        outputs.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{kind}-{time.time_ns():020d}-", dir=outputs))
        for old in sorted(outputs.glob(f"{kind}-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def delete_upload(self, name: str) -> None:
        shutil.rmtree(self.upload_folder(name))

    def _new_upload_name(self, label: str) -> str:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-._")[:48] or "upload"
        name, number = base, 1
        while (self.uploads_dir / name).exists():
            number += 1
            name = f"{base}-{number}"
        return name

    # -- disk ----------------------------------------------------------------------------------------
    def usage_bytes(self) -> int:
        total = _tree_size(self.uploads_dir)
        for run in list_runs(self.root):
            if run_owner(run) == self.visitor:
                total += _tree_size(run.path)
        return total

    def _check_quota(self, incoming: int) -> None:
        if self.usage_bytes() + incoming > self.labs.settings.quota_bytes:
            raise AccessError(self._over_quota_message(incoming))
        if _tree_size(self.root) + incoming > self.labs.settings.space_quota_bytes:
            raise AccessError("This Space's disk for visitors' uploads and runs is full: try again later (unused labs "
                              "are cleared after a day), or run the lab on your own machine")

    def _over_quota_message(self, incoming: int) -> str:
        quota = self.labs.settings.quota_bytes
        return (f"Your lab would hold {_megabytes(self.usage_bytes() + incoming)} of this Space's "
                f"{_megabytes(quota)} per visitor: delete an upload or an old run first, or use a smaller upload.")


def _upload_label(paths: list[str], names: list[str] | None) -> str:
    first = (names or [None])[0] or os.path.basename(str(paths[0]))
    if len(paths) == 1 and archives.is_archive(first):
        stem = os.path.basename(first)
        for suffix in sorted(archives.ARCHIVE_SUFFIXES, key=len, reverse=True):
            if stem.lower().endswith(suffix):
                return stem[: -len(suffix)]
    top = first.replace("\\", "/").split("/")[0] if names and "/" in first else ""
    return top or f"images-{time.strftime('%Y%m%d-%H%M%S')}"


def _number(value: Any) -> float | None:
    """A setting's value as a number when it is one (a form or an API caller may send "512"), else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _tree_size(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def _megabytes(size: int) -> str:
    return f"{size / 1024 ** 2:,.0f} MB"
