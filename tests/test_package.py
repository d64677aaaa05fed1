"""sslcore as an installed package: the wheel pyproject.toml builds holds every module and the `sslcore` command, and
works installed in a fresh virtual environment, away from the source tree."""
import configparser
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def source_version() -> str:
    return re.search(r'^__version__ = "([^"]+)"', (ROOT / "sslcore" / "__init__.py").read_text(), re.M).group(1)


def source_modules() -> set[str]:
    return {path.relative_to(ROOT).as_posix() for path in (ROOT / "sslcore").rglob("*.py")
            if "__pycache__" not in path.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (an in-tree build would leave build/ and *.egg-info in the repo)."""
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "sslcore", source / "sslcore", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "--disable-pip-version-check", "--wheel-dir", str(tmp / "dist"), str(source)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = (tmp / "dist").glob("sslcore-*.whl")
    return built


def test_the_wheel_holds_every_module_the_command_and_no_tests(wheel):
    assert wheel.name.startswith(f"sslcore-{source_version()}-py3-none-any")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"sslcore-{source_version()}.dist-info"
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(f"{info}/entry_points.txt").decode())
        metadata = archive.read(f"{info}/METADATA").decode()
    missing = source_modules() - names
    assert not missing, f"modules left out of the wheel: {sorted(missing)}"
    assert {"sslcore/data/__init__.py", "sslcore/methods/__init__.py", "sslcore/commands/__init__.py"} <= names
    assert not [name for name in names if name.startswith(("tests/", "pages/", "benchmarks/", "scripts/"))]
    assert entry_points["console_scripts"]["sslcore"] == "sslcore.__main__:main"
    assert f"Version: {source_version()}" in metadata and "Requires-Python: >=3.10" in metadata
    assert "Requires-Dist: keras" in metadata and 'extra == "app"' in metadata


def test_the_installed_wheel_runs_from_outside_the_repo(wheel, tmp_path):
    # A fresh environment that sees this one's packages (Keras, TensorFlow...) through a .pth file: a venv made with
    # --system-site-packages from inside a venv would see the base interpreter's packages, not these.
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(environment)
    bin_dir = environment / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / Path(sys.executable).name
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "outer-environment.pth").write_text("\n".join(sorted(ours)) + "\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                              "--disable-pip-version-check", str(wheel)],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert install.returncode == 0, install.stdout + install.stderr

    imported = subprocess.run([str(python), "-c", "import sslcore; print(sslcore.__version__); print(sslcore.__file__)"],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert imported.returncode == 0, imported.stderr
    version, location = imported.stdout.split()
    assert version == source_version()
    assert Path(location).resolve().is_relative_to(environment.resolve()), location   # the installed copy, not ROOT

    command = shutil.which("sslcore", path=str(bin_dir))
    assert command, "pip did not install the sslcore console script"
    helped = subprocess.run([command, "--help"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "train" in helped.stdout and "--backend" in helped.stdout


def test_the_pyproject_bounds_admit_the_pinned_requirements():
    """pyproject.toml's lower bounds and requirements.txt's exact pins name the same packages and agree."""
    tomllib = pytest.importorskip("tomllib")
    requirements = pytest.importorskip("packaging.requirements")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = requirements.Requirement(line)
            pins[requirement.name.lower().replace("_", "-")] = requirement
    extras = project["optional-dependencies"]
    for text in project["dependencies"] + extras["app"] + extras["jax"] + extras["tfds"]:
        wanted = requirements.Requirement(text)
        pinned = pins.get(wanted.name.lower().replace("_", "-"))
        assert pinned is not None, f"{wanted.name} is in pyproject.toml but not in requirements.txt"
        exact = [spec.version for spec in pinned.specifier if spec.operator == "=="]
        for version in exact:
            assert wanted.specifier.contains(version), f"requirements.txt pins {pinned}, pyproject.toml wants {wanted}"
