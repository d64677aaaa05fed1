"""Image archives and uploads as data: the happy layouts, and every hostile archive refused with
nothing written outside (or even inside) the destination. Archives are built here from tiny images."""

import io
import os
import stat
import subprocess
import sys
import tarfile
import zipfile

import pytest
from PIL import Image

from sslcore.data import DataError, archives, load
from sslcore.data.archives import (
    ARCHIVE_SUFFIXES,
    Ingested,
    UploadLimits,
    archive_folder,
    extract_archive,
    ingest_files,
    is_archive,
)

# An empty cache of each test's own (tests/conftest.py): these tests count what is decoded and cached.
pytestmark = pytest.mark.usefixtures("private_cache")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png(color=(200, 30, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", (6, 6), color).save(buffer, "PNG")
    return buffer.getvalue()


def classes(prefix=""):
    """Two classes of four images each, as {entry name: bytes}."""
    return {f"{prefix}{name}/{i}.png": png((40 * i, 200 if name == "cat" else 0, 90))
            for name in ("cat", "dog") for i in range(4)}


def flat(count=5):
    return {f"img{i}.png": png((30 * i, 10, 10)) for i in range(count)}


def make_zip(path, entries, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, content in entries.items():
            if isinstance(content, zipfile.ZipInfo):
                archive.writestr(content, b"/etc/passwd")
            else:
                info = zipfile.ZipInfo(name)  # kept verbatim: ZipFile.write would clean up hostile names
                info.compress_type = compression
                archive.writestr(info, content)
    return path


def make_tar(path, entries, mode="w"):
    """`entries` values: bytes for a file, or a TarInfo for anything special (link, device, folder)."""
    with tarfile.open(path, mode) as archive:
        for name, content in entries.items():
            if isinstance(content, tarfile.TarInfo):
                archive.addfile(content)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return path


def special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def tree(root):
    """Every path under root, to prove a refused archive wrote nothing anywhere."""
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, subdirs, files in os.walk(root)
                  for n in subdirs + files)


# -------------------------------------------------------------------------------------------- layouts


def test_labelled_zip_loads_as_labelled_folder(tmp_path):
    data = load(f"folder:{make_zip(tmp_path / 'pets.zip', classes())}", 8, test_fraction=0.25)
    assert data.class_names == ["cat", "dog"]
    assert data.train_labels is not None and len(data.train_images) + len(data.test_images) == 8
    assert data.name.endswith("pets.zip")


def test_flat_tar_gz_is_unlabelled(tmp_path):
    data = load(f"folder:{make_tar(tmp_path / 'pool.tar.gz', flat(), 'w:gz')}", 8)
    assert data.train_labels is None and len(data.train_images) == 5 and data.class_names == []


def test_single_wrapping_folder_is_unwrapped(tmp_path):
    entries = {"photos/": b"", **classes("photos/")}
    result = extract_archive(make_zip(tmp_path / "photos.zip", entries), tmp_path / "out")
    assert os.path.basename(result.folder) == "photos" and sorted(os.listdir(result.folder)) == ["cat", "dog"]
    assert result.images == 8 and result.skipped == [] and result.bytes_written > 0
    assert load(f"folder:{tmp_path / 'photos.zip'}", 8).class_names == ["cat", "dog"]


def test_plain_tar_with_folder_entries_and_tgz(tmp_path):
    folders = {name: special(name, tarfile.DIRTYPE) for name in ("./set", "./set/cat", "./set/dog")}
    make_tar(tmp_path / "set.tar", {**folders, **classes("./set/")})
    assert load(f"folder:{tmp_path / 'set.tar'}", 8).class_names == ["cat", "dog"]
    make_tar(tmp_path / "set.tgz", classes(), "w:gz")
    assert load(f"folder:{tmp_path / 'set.tgz'}", 8).num_classes == 2


def test_is_archive_by_name():
    assert ARCHIVE_SUFFIXES == (".zip", ".tar", ".tar.gz", ".tgz")
    assert all(is_archive(f"x{suffix.upper()}") for suffix in ARCHIVE_SUFFIXES)
    assert not is_archive("x.png") and not is_archive("x.gz")


def test_ingest_directory_upload_keeps_classes(tmp_path):
    uploads = tmp_path / "gradio-tmp"
    uploads.mkdir()
    paths, names = [], []
    for index, (name, content) in enumerate(classes("photos/").items()):
        path = uploads / f"upload{index}.png"  # servers store uploads under names of their own
        path.write_bytes(content)
        paths.append(str(path))
        names.append(name)
    (uploads / "notes.txt").write_text("hello")
    result = ingest_files(paths + [str(uploads / "notes.txt")], str(tmp_path / "dest"), names=names + ["photos/notes.txt"])
    assert isinstance(result, Ingested) and result.images == 8
    assert result.skipped == [("photos/notes.txt", "not an image (.txt)")]
    assert load(f"folder:{result.folder}", 8).class_names == ["cat", "dog"]


def test_ingest_mixes_archives_and_images_and_renames_clashes(tmp_path):
    make_zip(tmp_path / "cat.zip", {f"cat/{i}.png": png() for i in range(2)})
    make_tar(tmp_path / "dog.tar.gz", {"dog/0.png": png((0, 0, 200))}, "w:gz")
    (tmp_path / "0.png").write_bytes(png((0, 200, 0)))
    result = ingest_files([tmp_path / "cat.zip", tmp_path / "dog.tar.gz", tmp_path / "0.png"], tmp_path / "dest",
                          names=["cat.zip", "dog.tar.gz", "dog/0.png"])
    assert result.images == 4
    assert sorted(os.listdir(tmp_path / "dest" / "dog")) == ["0-2.png", "0.png"]


def test_skipped_entries_are_listed_not_fatal(tmp_path):
    entries = {**classes(), "README.txt": b"about", "cat/more.zip": b"PK..", ".DS_Store": b"x",
               "__MACOSX/cat/._0.png": b"x", "dog/.hidden.png": png()}
    result = extract_archive(make_zip(tmp_path / "pets.zip", entries), tmp_path / "out")
    assert result.images == 8
    assert dict(result.skipped) == {
        "README.txt": "not an image (.txt)", "cat/more.zip": "nested archive, not extracted",
        ".DS_Store": "hidden file", "__MACOSX/cat/._0.png": "macOS metadata (__MACOSX)", "dog/.hidden.png": "hidden file",
    }
    assert not os.path.exists(tmp_path / "out" / "README.txt")


def test_archive_without_images_says_what_it_skipped(tmp_path):
    make_zip(tmp_path / "docs.zip", {"README.txt": b"hi", "data.csv": b"1,2"})
    with pytest.raises(DataError, match=r"No images in the archive docs.zip; looked for .*\.png.*README.txt \(not an image"):
        extract_archive(tmp_path / "docs.zip", tmp_path / "out")
    assert not os.path.exists(tmp_path / "out")


# -------------------------------------------------------------------------------------------- hostile input

HOSTILE = [
    ("zip", "../evil.png", b"", "entry '../evil.png' points outside the archive"),
    ("zip", "/abs/evil.png", b"", "entry '/abs/evil.png' is an absolute path"),
    ("zip", "..\\evil.png", b"", "points outside the archive"),
    ("zip", "C:/evil.png", b"", "entry 'C:/evil.png' starts with a drive letter"),
    ("tar", "cat/../../evil.png", b"", "entry 'cat/../../evil.png' points outside the archive"),
    ("tar", "/abs/evil.png", b"", "entry '/abs/evil.png' is an absolute path"),
    ("tar", "evil.png", special("evil.png", tarfile.SYMTYPE, "/etc/passwd"), "entry 'evil.png' is a symbolic link (to '/etc/passwd')"),
    ("tar", "evil.png", special("evil.png", tarfile.LNKTYPE, "/etc/passwd"), "entry 'evil.png' is a hard link (to '/etc/passwd')"),
    ("tar", "evil.png", special("evil.png", tarfile.FIFOTYPE), "entry 'evil.png' is a device or fifo"),
    ("tar", "evil.png", special("evil.png", tarfile.CHRTYPE), "entry 'evil.png' is a device or fifo"),
    ("tar", "evil.png", special("evil.png", tarfile.BLKTYPE), "entry 'evil.png' is a device or fifo"),
]


@pytest.mark.parametrize("kind, name, content, message", HOSTILE)
def test_hostile_entries_refused_and_nothing_written(tmp_path, kind, name, content, message):
    work = tmp_path / "work"
    work.mkdir()
    entries = {**classes(), name: content or png()}  # good images first: nothing may be written even so
    archive = make_zip(work / "bad.zip", entries) if kind == "zip" else make_tar(work / "bad.tar.gz", entries, "w:gz")
    before = tree(tmp_path)
    with pytest.raises(DataError, match="refused") as error:
        extract_archive(archive, work / "out" / "dest")
    assert message in str(error.value) and "Nothing was extracted" in str(error.value)
    assert tree(tmp_path) == before
    assert not os.path.lexists("/abs/evil.png") and not os.path.lexists(tmp_path / "evil.png")


def test_zip_symlink_attribute_refused(tmp_path):
    link = zipfile.ZipInfo("cat/link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "links.zip", {**classes(), "cat/link.png": link})
    before = tree(tmp_path)
    with pytest.raises(DataError, match="entry 'cat/link.png' is a symbolic link"):
        extract_archive(archive, tmp_path / "out")
    assert tree(tmp_path) == before


def test_zip_bomb_refused_before_writing(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"cat/0.png": png(), "zeros.png": bytes(50 * 1024**2)})
    assert os.path.getsize(archive) < 200_000  # a few KB that claim 50 MB
    before = tree(tmp_path)
    with pytest.raises(DataError, match=r"more than 10.0 MiB .*SSLCORE_MAX_UPLOAD_BYTES"):
        extract_archive(archive, tmp_path / "out", limits=UploadLimits(max_bytes=10 * 1024**2))
    assert tree(tmp_path) == before


def test_bytes_are_counted_while_writing_too(tmp_path):
    """Declared sizes can lie: the streamed byte count alone must stop the write and clean up."""
    items = [archives._Item(f"{i}.png", [f"{i}.png"], lambda: io.BytesIO(bytes(3000))) for i in range(3)]
    with pytest.raises(DataError, match=r"entry '2.png' .* more than 6.8 KiB \(7,000 bytes\)"):
        archives._write_items(items, str(tmp_path / "out"), UploadLimits(max_bytes=7000))
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_too_many_entries_refused(tmp_path, suffix):
    entries = {f"{i}.png": b"x" for i in range(30)}
    archive = make_zip(tmp_path / f"many{suffix}", entries) if suffix == ".zip" else make_tar(tmp_path / f"many{suffix}", entries, "w:gz")
    with pytest.raises(DataError, match="more than 10 entries .*SSLCORE_MAX_UPLOAD_FILES"):
        extract_archive(archive, tmp_path / "out", limits=UploadLimits(max_files=10))
    assert not os.path.exists(tmp_path / "out")


def test_oversized_upload_refused(tmp_path):
    archive = make_zip(tmp_path / "big.zip", classes(), zipfile.ZIP_STORED)
    with pytest.raises(DataError, match="big.zip is .* allowed for one uploaded file .*SSLCORE_MAX_UPLOAD_FILE_BYTES"):
        extract_archive(archive, tmp_path / "out", limits=UploadLimits(max_upload_bytes=100))


@pytest.mark.parametrize("name, content", [
    ("bad.zip", b"this is not a zip file at all" * 10),
    ("bad.tar.gz", b"\x1f\x8b\x08\x00garbage" * 10),
    ("bad.tar", b""),
])
def test_corrupt_archive_is_named(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=rf"{name} is not a readable (zip|tar) archive"):
        extract_archive(tmp_path / name, tmp_path / "out")


def test_truncated_zip_entry_removes_what_was_written(tmp_path):
    archive = make_zip(tmp_path / "cut.zip", classes(), zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    header = data.index(b"PK\x03\x04", 1)  # corrupt the second entry's data, keep the directory intact
    data[header + 40: header + 60] = bytes(20)
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="Cannot unpack entry"):
        extract_archive(archive, tmp_path / "out")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "photos/../../evil.png"])
def test_ingest_refuses_escaping_names(tmp_path, name):
    (tmp_path / "up.png").write_bytes(png())
    before = tree(tmp_path)
    with pytest.raises(DataError, match="refused: entry"):
        ingest_files([tmp_path / "up.png"], tmp_path / "dest", names=[name])
    assert tree(tmp_path) == before


def test_ingest_limits_apply_to_the_whole_set(tmp_path):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png())
    with pytest.raises(DataError, match="more than 3 entries"):
        ingest_files(paths, tmp_path / "dest", limits=UploadLimits(max_files=3))
    assert not os.path.exists(tmp_path / "dest")


def test_limits_from_env(monkeypatch):
    assert UploadLimits.from_env() == UploadLimits()
    monkeypatch.setenv("SSLCORE_MAX_UPLOAD_FILES", "12")
    monkeypatch.setenv("SSLCORE_MAX_UPLOAD_BYTES", "3000")
    monkeypatch.setenv("SSLCORE_MAX_UPLOAD_FILE_BYTES", "2000")
    assert UploadLimits.from_env() == UploadLimits(max_files=12, max_bytes=3000, max_upload_bytes=2000)
    monkeypatch.setenv("SSLCORE_MAX_UPLOAD_BYTES", "2GB")
    with pytest.raises(ValueError, match="SSLCORE_MAX_UPLOAD_BYTES"):
        UploadLimits.from_env()
    monkeypatch.setenv("SSLCORE_MAX_UPLOAD_BYTES", "0")
    with pytest.raises(ValueError, match="SSLCORE_MAX_UPLOAD_BYTES"):
        UploadLimits.from_env()


# -------------------------------------------------------------------------------------------- the cache


def test_second_load_reuses_the_extraction(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "pets.zip", classes())
    first = archive_folder(archive)
    assert first.startswith(str(tmp_path / "sslcore-cache" / "archives"))

    def refuse(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(archives, "extract_archive", refuse)
    assert archive_folder(archive) == first
    assert load(f"folder:{archive}", 8).class_names == ["cat", "dog"]
    monkeypatch.undo()
    monkeypatch.setenv("SSLCORE_CACHE", str(tmp_path / "sslcore-cache"))

    make_zip(archive, {**classes(), "cat/new.png": png()})  # an edited archive is extracted afresh
    os.utime(archive, ns=(1, 1))
    second = archive_folder(archive)
    assert second != first and not os.path.exists(first)
    assert os.listdir(tmp_path / "sslcore-cache" / "archives") == [os.path.basename(second)]


def test_layout_errors_name_the_archive(tmp_path):
    make_zip(tmp_path / "mixed.zip", {**classes(), "loose.png": png()})
    with pytest.raises(DataError, match="In archive .*mixed.zip: .*mixes loose images"):
        load(f"folder:{tmp_path / 'mixed.zip'}", 8)


# -------------------------------------------------------------------------------------------- processes


@pytest.mark.slow
def test_check_source_accepts_archives(tmp_path):
    from sslcore.data import check_source

    check_source(f"folder:{make_zip(tmp_path / 'pets.zip', classes())}")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="does not exist"):
        check_source(f"folder:{tmp_path / 'notes.txt'}")


@pytest.mark.slow
def test_cli_refuses_hostile_archive_without_traceback(tmp_path):
    make_zip(tmp_path / "bad.zip", {**classes(), "../evil.png": png()})
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, "-m", "sslcore", "train", "--data", f"folder:{tmp_path / 'bad.zip'}", "--epochs", "1",
         "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode != 0
    assert "refused: entry '../evil.png' points outside the archive" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "evil.png")
