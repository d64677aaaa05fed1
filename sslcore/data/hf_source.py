"""The ``hf:OWNER/NAME[@REVISION][:CONFIG]`` source: an image-classification dataset on the Hugging Face Hub.

Most image datasets on the Hub (uoft-cs/cifar10 among them) are stored as parquet files in the repo itself, one
or more per split (``plain_text/train-00000-of-00001.parquet``, ``data/test-*.parquet``), written by the
`datasets` library: the image is a struct of encoded PNG/JPEG bytes, the label an integer, and the schema's
``huggingface`` metadata says which column is the Image and which the ClassLabel (with its class names). So
huggingface_hub fetches the files (token, HF_ENDPOINT, the Hub cache and HF_HUB_OFFLINE all behave as in any
other Hub download; on a Space public datasets only, ``sslcore.credentials``) and pyarrow reads them. The `datasets`
package is not used: it reads these same files with pyarrow, yet `import datasets` (5.2.0) took 1.1-1.9 s here against 0.3-0.5 s for pyarrow.parquet plus
huggingface_hub (3 runs each, 2026-12-03), and it adds four packages (datasets, dill, multiprocess, xxhash; 11 MB
installed) to this environment.

Images are decoded batch by batch into one preallocated uint8 array at the run's size, so the full-size
images never sit in memory together, and the decoded arrays are cached on disk (``$SSLCORE_CACHE/hf``), keyed
by the commit they came from, so the next run of the same dataset starts from the cache.

Splits follow ``tfds:``: ``train`` pretrains, ``test`` (else ``validation``) evaluates, and without either a
stratified part of ``train`` is held out; with an ``unlabelled`` split (STL-10) that is the pretraining pool,
``train`` the labelled probe set and ``test`` the test set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from sslcore import credentials, download_limit
from sslcore.data.cache import CACHE_FORMAT_VERSION, mark_used, write_cache_file
from sslcore.data.dataset import DataError, Dataset, _labelled_dataset, check_decoded_size
from sslcore.data.decode import decode_image

log = logging.getLogger(__name__)

# Bump when what this module makes of a parquet row changes (column choice, label handling), so caches stop matching.
HF_DECODE_VERSION = 1
_BATCH_ROWS = 512
_SPLIT_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test", "validation": "validation",
                "valid": "validation", "val": "validation", "dev": "validation", "unlabelled": "unlabelled",
                "unlabeled": "unlabelled"}
_SPLIT_RE = re.compile(r"^(%s)(?:[-_.].*)?$" % "|".join(sorted(_SPLIT_NAMES, key=len, reverse=True)))
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SPEC_FORMS = "'hf:OWNER/NAME', optionally with '@REVISION' and/or ':CONFIG' (e.g. 'hf:uoft-cs/cifar10')"


@dataclass
class _Spec:
    repo_id: str
    revision: str | None
    config: str | None


@dataclass
class _Located:
    """Where the chosen parquet files are (or will be): the commit and the repo paths of each split."""
    spec: _Spec
    sha: str
    splits: dict[str, list[str]]       # split -> repo paths, sorted
    local: dict[str, str] | None       # repo path -> local file, when already known (offline / from the Hub cache)


def load_hf(source: str, spec: str, image_size: int, *, test_fraction: float, seed: int, progress: bool = False,
            cache_dir: str | None = None) -> Dataset:
    """Load a Hub dataset repo's parquet image dataset as a `Dataset` (decoded once, then from the sslcore cache)."""
    parsed = _parse_spec(spec)
    located = _locate(parsed)
    cache_file = _cache_file(located, image_size, cache_dir)
    decoded = _read_cache(cache_file, image_size)
    if decoded is None:
        local = located.local or _download(located, progress)
        decoded = _decode_splits(located, local, image_size, progress)
        _write_cache(cache_file, decoded)
    else:
        log.info("Loaded hf:%s from cache %s", parsed.repo_id, cache_file)
    return _dataset(source, decoded, test_fraction=test_fraction, seed=seed)


# ---------------------------------------------------------------------------------------------- spec

def _parse_spec(spec: str) -> _Spec:
    """'owner/name', 'owner/name@rev', 'owner/name:config', either order of both; a revision may hold '/'."""
    match = (re.fullmatch(r"(?P<repo>[^@:\s]+)(?:@(?P<rev>[^@:\s]+))?(?::(?P<config>[^@:/\s]+))?", spec or "")
             or re.fullmatch(r"(?P<repo>[^@:\s]+):(?P<config>[^@:/\s]+)@(?P<rev>[^@:\s]+)", spec or ""))
    repo = match and match.group("repo")
    # A revision names a branch, tag or commit; ".." in it would climb out of the Hub cache's refs/ when offline.
    if (not match or not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo) or ".." in repo
            or ".." in (match.group("rev") or "")):
        raise DataError(f"'hf:{spec}' is not a Hub dataset: write {_SPEC_FORMS}.")
    return _Spec(repo, match.group("rev"), match.group("config"))


# ---------------------------------------------------------------------------------------------- finding the files

def _locate(spec: _Spec) -> _Located:
    """The commit and split files, from the Hub, or from the local Hub cache when offline or unreachable."""
    from huggingface_hub import constants

    if _offline():
        located = _locate_in_hub_cache_or_converted(spec)
        if located is None:
            raise DataError(
                f"hf:{_spec_text(spec)} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                "HF_HUB_OFFLINE is set, so it cannot be downloaded. Load it once with internet access (or copy a "
                "Hub cache that has it and point HF_HUB_CACHE / HF_HOME at it), or unset HF_HUB_OFFLINE.")
        return located
    try:
        return _locate_on_hub(spec)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - every failure becomes a DataError that says what to do
        if _is_network_error(error):
            located = _locate_in_hub_cache_or_converted(spec)
            if located is not None:
                log.warning("The Hub at %s is unreachable (%s); using hf:%s from the local Hub cache.",
                            constants.ENDPOINT, type(error).__name__, spec.repo_id)
                return located
        raise _explain(error, spec) from None


def _locate_on_hub(spec: _Spec) -> _Located:
    from huggingface_hub import HfApi

    api = HfApi(token=credentials.read_token())
    sized = download_limit.limit_bytes() is not None   # a public server: the files' sizes, to refuse a huge dataset
    info = api.dataset_info(spec.repo_id, revision=spec.revision, files_metadata=sized)
    files = [sibling.rfilename for sibling in (info.siblings or [])] or api.list_repo_files(
        spec.repo_id, repo_type="dataset", revision=info.sha)
    splits = _choose_files(files, spec, required=spec.revision is not None)
    if splits is None:
        # Datasets stored in another format have a parquet copy that the Hub's converter made on this branch.
        converted = _Spec(spec.repo_id, "refs/convert/parquet", spec.config)
        try:
            info = api.dataset_info(spec.repo_id, revision=converted.revision, files_metadata=sized)
        except Exception as error:  # noqa: BLE001 - no converted branch: report the repo's own files
            log.debug("no refs/convert/parquet for %s: %s", spec.repo_id, error)
            raise DataError(_no_parquet_message(spec, files)) from None
        converted_files = [sibling.rfilename for sibling in (info.siblings or [])]
        splits = _choose_files(converted_files, converted, required=True)
        spec = converted
    sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or []}
    problem = download_limit.over_limit(f"hf:{_spec_text(spec)}", [sizes.get(path) for paths in splits.values()
                                                                   for path in paths])
    if problem:
        raise DataError(problem)
    return _Located(spec, info.sha, splits, None)


def _locate_in_hub_cache_or_converted(spec: _Spec) -> _Located | None:
    located = _locate_in_hub_cache(spec)
    if located is None and spec.revision is None:
        located = _locate_in_hub_cache(_Spec(spec.repo_id, "refs/convert/parquet", spec.config))
    return located


def _locate_in_hub_cache(spec: _Spec) -> _Located | None:
    """The same choice of files, made from what the Hub cache holds for the revision (None when it holds nothing)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    storage = os.path.join(constants.HF_HUB_CACHE, repo_folder_name(repo_id=spec.repo_id, repo_type="dataset"))
    revision = spec.revision or "main"
    sha = revision if _COMMIT_RE.match(revision) else _read_ref(storage, revision)
    snapshot = os.path.join(storage, "snapshots", sha) if sha else None
    if snapshot is None or not os.path.isdir(snapshot):
        return None
    local = {}
    for directory, _, names in os.walk(snapshot):
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith(".parquet") and os.path.exists(path):  # a dangling symlink is a missing blob
                local[os.path.relpath(path, snapshot).replace(os.sep, "/")] = path
    try:
        splits = _choose_files(sorted(local), spec, required=False)
    except DataError:  # e.g. the config asked for was never downloaded: as far as this cache goes, not there
        return None
    if splits is None:
        return None
    return _Located(spec, sha, splits, local)


def _read_ref(storage: str, revision: str) -> str | None:
    try:
        with open(os.path.join(storage, "refs", revision)) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _choose_files(files: list[str], spec: _Spec, *, required: bool) -> dict[str, list[str]] | None:
    """Split -> parquet paths of the chosen config; None when the repo has no parquet files at all.

    A config is a top-level folder (``plain_text/``, the converted branch's ``CONFIG/``); ``data/`` and the root
    are the default config. A file whose name is no split name belongs to ``train``, as in `datasets`.
    """
    parquet = sorted(path for path in files if path.endswith(".parquet"))
    if not parquet:
        if required:
            raise DataError(_no_parquet_message(spec, files))
        return None
    by_config: dict[str | None, list[str]] = {}
    for path in parquet:
        parts = path.split("/")
        config = parts[0] if len(parts) > 1 and parts[0] != "data" else None
        by_config.setdefault(config, []).append(path)
    if spec.config is not None:
        if spec.config not in by_config:
            raise DataError(f"hf:{_spec_text(spec)}: the dataset has no config {spec.config!r}; its parquet files are "
                            f"in {_configs_text(by_config)}. Write hf:{spec.repo_id}:CONFIG with one of those.")
        chosen = by_config[spec.config]
    elif None in by_config:
        chosen = by_config[None]
    elif len(by_config) == 1:
        chosen = next(iter(by_config.values()))
    else:
        raise DataError(f"hf:{_spec_text(spec)} has several configs ({_configs_text(by_config)}); choose one with "
                        f"hf:{spec.repo_id}:CONFIG.")
    splits: dict[str, list[str]] = {}
    for path in chosen:
        splits.setdefault(_split_of(path), []).append(path)
    return splits


def _split_of(path: str) -> str:
    """'train-00000-of-00001.parquet', 'train/0000.parquet' (converted branch) -> 'train'; anything else -> train."""
    parts = path.split("/")
    stem = parts[-1][: -len(".parquet")]
    for candidate in (stem, parts[-2] if len(parts) > 1 else ""):
        match = _SPLIT_RE.match(candidate.lower())
        if match:
            return _SPLIT_NAMES[match.group(1)]
    return "train"


def _configs_text(by_config: dict[str | None, list[str]]) -> str:
    return ", ".join("the default (data/ or top level)" if name is None else f"{name}/" for name in by_config)


def _no_parquet_message(spec: _Spec, files: list[str]) -> str:
    shown = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
    return (f"hf:{_spec_text(spec)} has no parquet files (it has {shown or 'no files'}), and no parquet conversion "
            "on refs/convert/parquet. sslcore reads datasets stored as parquet, the way `datasets`' push_to_hub "
            "writes them; choose such a dataset, or download this one and use 'folder:PATH'.")


def _spec_text(spec: _Spec) -> str:
    return spec.repo_id + (f"@{spec.revision}" if spec.revision else "") + (f":{spec.config}" if spec.config else "")


# ---------------------------------------------------------------------------------------------- downloading

def _download(located: _Located, progress: bool) -> dict[str, str]:
    from huggingface_hub import hf_hub_download

    local = {}
    try:
        for path in sorted(path for paths in located.splits.values() for path in paths):
            # The branch or tag (not the sha) so the Hub cache records it in refs/ for later offline loads.
            local[path] = hf_hub_download(located.spec.repo_id, path, repo_type="dataset",
                                          revision=located.spec.revision or located.sha,
                                          token=credentials.read_token(),
                                          tqdm_class=None if progress else _silent_tqdm())
    except Exception as error:  # noqa: BLE001
        raise _explain(error, located.spec) from None
    if located.spec.revision is None:
        _record_main(located)
    return local


def _record_main(located: _Located) -> None:
    """Write refs/main like a download of 'main' would, so HF_HUB_OFFLINE=1 later finds this commit."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    ref = os.path.join(constants.HF_HUB_CACHE, repo_folder_name(repo_id=located.spec.repo_id, repo_type="dataset"),
                       "refs", "main")
    try:
        os.makedirs(os.path.dirname(ref), exist_ok=True)
        with open(ref, "w") as handle:
            handle.write(located.sha)
    except OSError as error:
        log.warning("Could not record %s in the Hub cache (%s); offline loads may not find it.", ref, error)


def _silent_tqdm():
    from tqdm.auto import tqdm

    class Silent(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


# ---------------------------------------------------------------------------------------------- errors

def _offline() -> bool:
    from huggingface_hub import constants

    checker = getattr(constants, "is_offline_mode", None)
    return bool(checker() if checker else constants.HF_HUB_OFFLINE)


def _is_network_error(error: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(error, HfHubHTTPError):
        return False
    if isinstance(error, (OfflineModeIsEnabled, ConnectionError, TimeoutError)):
        return True
    try:
        import httpx2
        return isinstance(error, httpx2.TransportError)
    except ImportError:
        return any(kind.__name__ in ("TransportError", "ConnectError", "TimeoutException")
                   for kind in type(error).__mro__)


def _explain(error: BaseException, spec: _Spec) -> DataError:
    """A DataError that says what went wrong and what to do; it never quotes the token."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    name = f"hf:{_spec_text(spec)}"
    page = f"{constants.ENDPOINT}/datasets/{spec.repo_id}"
    has_token = _token() is not None and credentials.server_credentials_allowed()
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, GatedRepoError):
        if has_token:
            return DataError(f"{name}: the dataset is gated and your Hugging Face token's account has not been granted "
                             f"access ({status}). Open {page} while logged in as that account, accept its "
                             "conditions (some need the authors' approval), then try again.")
        return DataError(f"{name}: the dataset is gated: it needs a Hugging Face token whose account has accepted its "
                         f"conditions at {page}. Accept them there, then set HF_TOKEN (or run `hf auth login`).")
    if isinstance(error, RepositoryNotFoundError):
        why = ("or it is private and your token cannot read it" if has_token else
               "or it is private and no Hugging Face token was found (set HF_TOKEN or run `hf auth login`)"
               if credentials.server_credentials_allowed() else
               "or it is private: this Space loads public datasets only (its credentials are its owner's); run the "
               "lab on your own machine with your token for a private one")
        return DataError(f"{name}: there is no dataset repo {spec.repo_id!r} on {constants.ENDPOINT}, {why}. Check "
                         "the name (OWNER/NAME, as in the dataset page's URL, e.g. uoft-cs/cifar10).")
    if isinstance(error, RevisionNotFoundError):
        return DataError(f"{name}: the dataset has no revision {spec.revision!r} (branch, tag or commit). Leave out "
                         "'@...' to use main, or check the revision on the dataset page's 'Files' tab.")
    if isinstance(error, HfHubHTTPError) and status == 401:
        return DataError(f"{name}: the Hub rejected your Hugging Face token (401): it is wrong, expired or revoked. "
                         "Set a valid one in HF_TOKEN (or run `hf auth login`), or unset it for a public dataset.")
    if isinstance(error, HfHubHTTPError):
        return DataError(f"{name}: the Hub at {constants.ENDPOINT} answered {status}: "
                         f"{_scrub(_first_line(error))}. Try again later; https://status.huggingface.co shows outages.")
    if isinstance(error, LocalEntryNotFoundError) or _is_network_error(error):
        return DataError(f"{name}: could not reach the Hugging Face Hub at {constants.ENDPOINT} "
                         f"({type(error).__name__}: {_scrub(_first_line(error))[:200]}), and the dataset is not in the "
                         "local Hub cache. Check the network connection, any proxy (HTTPS_PROXY) and HF_ENDPOINT; on a "
                         "machine without internet, copy a Hub cache that has it and set HF_HUB_OFFLINE=1.")
    return DataError(f"{name}: could not load the dataset ({type(error).__name__}: {_scrub(_first_line(error))}).")


def _token() -> str | None:
    try:
        from huggingface_hub import get_token
        return get_token()
    except Exception:  # noqa: BLE001 - an unreadable token file only means "no token"
        return None


def _scrub(text: str) -> str:
    token = _token()
    return text.replace(token, "hf_***") if token else text


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(error).__name__


# ---------------------------------------------------------------------------------------------- decoding

@dataclass
class _Decoded:
    splits: dict[str, tuple[np.ndarray, np.ndarray | None]]
    class_names: list[str]
    labelled: bool


def _splits_to_decode(available: set[str], labelled: bool) -> list[str]:
    if not labelled:
        return [split for split in ("unlabelled", "train") if split in available]
    wanted = ["unlabelled"] if "unlabelled" in available else []
    wanted += [split for split in ("train",) if split in available]
    evaluation = next((split for split in ("test", "validation") if split in available), None)
    return wanted + ([evaluation] if evaluation else [])


def _decode_splits(located: _Located, local: dict[str, str], image_size: int, progress: bool) -> _Decoded:
    import pyarrow.parquet as pq

    name = f"hf:{_spec_text(located.spec)}"
    if "train" not in located.splits:
        raise DataError(f"{name} has no train split (it has {', '.join(sorted(located.splits))}); sslcore pretrains "
                        "on 'train' (or 'unlabelled').")
    first = located.splits["train"][0]
    image_column, label_column, class_names = _columns(pq.read_schema(local[first]), name, first)
    order = _splits_to_decode(set(located.splits), label_column is not None)
    files = {split: [local[path] for path in located.splits[split]] for split in order}
    total = sum(pq.ParquetFile(path).metadata.num_rows for paths in files.values() for path in paths)
    from tqdm.auto import tqdm

    decoded = {}
    workers = min(32, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sslcore-hf-decode") as pool, \
            tqdm(total=total, unit="img", desc=f"decoding {located.spec.repo_id}", file=sys.stderr,
                 disable=not progress, dynamic_ncols=True) as bar:
        for split in order:
            use_labels = label_column if split != "unlabelled" else None
            decoded[split] = _decode_files(files[split], located.splits[split], image_column, use_labels, image_size,
                                           pool, workers, bar)
    return _Decoded(decoded, class_names if label_column else [], label_column is not None)


def _columns(schema, name: str, path: str) -> tuple[str, str | None, list[str]]:
    """(image column, ClassLabel column or None, class names) from the schema's `datasets` features."""
    import pyarrow as pa

    features = {}
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw:
        try:
            features = json.loads(raw).get("info", {}).get("features", {}) or {}
        except (ValueError, AttributeError):
            features = {}
    typed = lambda kind: [column for column, feature in features.items()
                          if isinstance(feature, dict) and feature.get("_type") == kind and column in schema.names]
    images = typed("Image")
    if not images:
        images = [field.name for field in schema if pa.types.is_struct(field.type)
                  and any(child.name == "bytes" and (pa.types.is_binary(child.type) or pa.types.is_large_binary(child.type))
                          for child in field.type)]
    if not images:
        found = ", ".join(f"{field.name} ({field.type})" for field in schema)
        raise DataError(f"{name}: {path} has no image column (columns: {found}). sslcore needs an Image feature: "
                        "encoded image bytes, as `datasets` stores an Image column. Choose an image dataset.")
    labels = typed("ClassLabel")
    if not labels:
        return images[0], None, []
    label = labels[0]
    names = features[label].get("names") or [str(i) for i in range(int(features[label].get("num_classes", 0)))]
    return images[0], label, [str(n) for n in names]


def _decode_files(paths: list[str], repo_paths: list[str], image_column: str, label_column: str | None,
                  image_size: int, pool: ThreadPoolExecutor, workers: int, bar) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode the rows of `paths` straight into one preallocated array; labels < 0 (none given) drop the row."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = [pq.ParquetFile(path, pre_buffer=False) for path in paths]   # pre-buffering only raised the peak
    rows = sum(f.metadata.num_rows for f in files)
    check_decoded_size(rows, image_size, "This split of the Hub dataset")
    images = np.empty((rows, image_size, image_size, 3), np.uint8)
    labels = np.empty(len(images), np.int64) if label_column else None
    at = 0
    for parquet, repo_path in zip(files, repo_paths):
        columns = [image_column] + ([label_column] if label_column else [])
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            column = batch.column(0)
            blobs = column.field("bytes").to_pylist()
            if any(blob is None for blob in blobs):
                refs = column.field("path").to_pylist() if "path" in [f.name for f in column.type] else [None]
                raise DataError(f"{repo_path}: a row of column {image_column!r} has no image bytes (it refers to "
                                f"{next((r for r in refs if r), 'nothing')!r}); sslcore reads only embedded images.")
            _decode_batch(images, at, blobs, repo_path, image_size, pool, workers)
            if labels is not None:
                labels[at:at + len(blobs)] = pc.fill_null(batch.column(1), -1).to_numpy(zero_copy_only=False)
            at += len(blobs)
            bar.update(len(blobs))
    if labels is None:
        return images, None
    keep = labels >= 0
    if not keep.all():
        log.warning("Left out %d rows without a label (-1) of %s", int((~keep).sum()), ", ".join(repo_paths))
        images, labels = images[keep], labels[keep]
    return images, labels.astype(np.int32)


def _decode_batch(images: np.ndarray, start: int, blobs: list[bytes], repo_path: str, image_size: int,
                  pool: ThreadPoolExecutor, workers: int) -> None:
    """Pillow releases the GIL while decoding, so threads pay off; chunks keep the per-future overhead small."""
    chunk = max(1, min(64, len(blobs) // (4 * workers)))

    def decode_range(first: int) -> None:
        for index in range(first, min(first + chunk, len(blobs))):
            images[start + index] = decode_image(blobs[index], image_size, name=f"{repo_path} row {start + index}")

    for _ in pool.map(decode_range, range(0, len(blobs), chunk)):
        pass


# ---------------------------------------------------------------------------------------------- the Dataset

def _dataset(source: str, decoded: _Decoded, *, test_fraction: float, seed: int) -> Dataset:
    splits, names = decoded.splits, decoded.class_names
    if not decoded.labelled:
        pool = np.concatenate([splits[s][0] for s in ("unlabelled", "train") if s in splits])
        return Dataset(name=source, train_images=pool, train_labels=None, test_images=None, test_labels=None,
                       class_names=[])
    evaluation = next((splits[s] for s in ("test", "validation") if s in splits), None)
    train_images, train_labels = splits["train"]
    if "unlabelled" in splits:
        if evaluation is None:
            probe = _labelled_dataset(source, train_images, train_labels, names, test_fraction=test_fraction, seed=seed)
            train_images, train_labels, evaluation = probe.train_images, probe.train_labels, (
                probe.test_images, probe.test_labels)
        return Dataset(name=source, train_images=splits["unlabelled"][0], train_labels=None,
                       test_images=evaluation[0], test_labels=evaluation[1], class_names=names,
                       probe_images=train_images, probe_labels=train_labels)
    if evaluation is None:
        return _labelled_dataset(source, train_images, train_labels, names, test_fraction=test_fraction, seed=seed)
    return Dataset(name=source, train_images=train_images, train_labels=train_labels, test_images=evaluation[0],
                   test_labels=evaluation[1], class_names=names)


# ---------------------------------------------------------------------------------------------- the cache

def default_hf_cache_dir() -> str:
    """$SSLCORE_CACHE/hf if set, else ~/.cache/sslcore/hf (beside the folder cache)."""
    root = os.environ.get("SSLCORE_CACHE") or os.path.join("~", ".cache", "sslcore")
    return os.path.join(os.path.expanduser(root), "hf")


def _cache_file(located: _Located, image_size: int, cache_dir: str | None) -> str:
    spec = located.spec
    key = json.dumps([CACHE_FORMAT_VERSION, HF_DECODE_VERSION, spec.repo_id, located.sha, spec.config,
                      sorted((split, sorted(paths)) for split, paths in located.splits.items()), image_size])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return os.path.join(cache_dir or default_hf_cache_dir(), f"{_cache_prefix(spec, image_size)}{digest}.npz")


def _cache_prefix(spec: _Spec, image_size: int) -> str:
    """Readable, and shared by a dataset's caches at one size, so a new commit's cache replaces the old one."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.repo_id.replace("/", "--"))[:60]
    which = hashlib.sha256(json.dumps([spec.repo_id, spec.revision, spec.config]).encode()).hexdigest()[:8]
    return f"{readable}-{which}-{image_size}px-"


def _read_cache(cache_file: str, image_size: int) -> _Decoded | None:
    if not os.path.exists(cache_file):
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as data:
            labelled = bool(data["labelled"])
            splits = {}
            for split in [str(s) for s in data["splits"]]:
                images = np.ascontiguousarray(data[f"{split}_images"])
                has_labels = labelled and split != "unlabelled"
                splits[split] = (images, data[f"{split}_labels"].astype(np.int32) if has_labels else None)
                if images.shape[1:] != (image_size, image_size, 3) or images.dtype != np.uint8:
                    raise ValueError(f"{split} images have shape {images.shape}")
            decoded = _Decoded(splits, [str(n) for n in data["class_names"]], labelled)
        mark_used(cache_file)
        return decoded
    except Exception as error:  # noqa: BLE001 - a corrupt cache is rebuilt, whatever it raises
        log.warning("Ignoring unreadable cache file %s (%s); decoding again.", cache_file, error)
        return None


def _write_cache(cache_file: str, decoded: _Decoded) -> None:
    arrays = {"labelled": np.array(decoded.labelled), "splits": np.array(list(decoded.splits), dtype=str),
              "class_names": np.array(decoded.class_names, dtype=str)}
    for split, (images, labels) in decoded.splits.items():
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels if labels is not None else np.zeros(0, np.int32)
    write_cache_file(cache_file, arrays)
