"""The package installs anywhere (README, Install without the checkout): the wheel `pip wheel` builds
carries the default config and the committed models, and installed away from the checkout it
writes poems of both forms from any folder, offline, and trains without writing into itself.

The wheel is built from a copy of the checkout (pip leaves its build/ folder beside the sources)
in which a training run's leftovers were planted; it is installed with `pip install --target`,
and each command runs in a fresh interpreter with `-S`, so that the editable install of the
checkout (a .pth file in the virtualenv) cannot shadow it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from jueju.home import PROJECT_ROOT

from conftest import tiny_overrides

pytestmark = pytest.mark.slow

MAX_MODEL_MB = 25  # each model folder, as committed and as shipped
LEFTOVERS = ["models/wuyan/checkpoints/epoch_0001.keras", "models/wuyan/train_state.json", "models/mine/model.keras"]
POEM = {n: re.compile(rf"^[\u4e00-\u9fff]{{{n}}}，([\u4e00-\u9fff]{{{n}}}[，。]){{3}}$") for n in (5, 7)}


def tracked(*paths) -> list[str]:
    done = subprocess.run(["git", "ls-files", *paths], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout:
        pytest.skip(f"the committed files are read from git, and {PROJECT_ROOT} is no git checkout")
    return sorted(done.stdout.split())


def unbuilt(folder: str, names: list[str]) -> list[str]:
    """What copying the checkout leaves out: the folders the build never reads, and caches."""
    top = {".git", ".venv", "data", "logs", "build", "dist"} if Path(folder) == PROJECT_ROOT else set()
    return [name for name in names if name in top or name == "__pycache__" or name.endswith(".egg-info")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("checkout") / "jueju"
    shutil.copytree(PROJECT_ROOT, tree, ignore=unbuilt)
    for leftover in LEFTOVERS:  # what training leaves in a checkout, ignored by git
        (tree / leftover).parent.mkdir(parents=True, exist_ok=True)
        (tree / leftover).write_text("{}")
    dist = tree.parent / "dist"
    # no build isolation: setuptools comes from this environment, offline
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, tree]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = dist.glob("jueju-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", target, wheel]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -S ARGS` in `cwd`, importing jueju from `installed` and its dependencies from this environment."""
    env = {key: value for key, value in os.environ.items() if key not in ("JUEJU_HOME", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(installed), sysconfig.get_paths()["purelib"]])
    done = subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def files(folder: Path) -> dict[str, tuple]:
    """Each file's size and modification time, Python's bytecode caches left out."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_wheel_carries_the_committed_models_and_the_config_and_nothing_else(wheel):
    with zipfile.ZipFile(wheel) as archive:
        shipped = {info.filename: info.file_size for info in archive.infolist()}
    share = "jueju/share/"
    data = sorted(name.removeprefix(share) for name in shipped if name.startswith(share))
    assert data == tracked("models", "config/cfg.ini")  # no checkpoints, train_state.json or untracked models
    for folder in {Path(name).parent for name in data if name.startswith("models/")}:
        size = sum(shipped[share + name] for name in data if Path(name).parent == folder)
        assert size <= MAX_MODEL_MB * 2**20, f"{folder} is {size / 2**20:.1f} MB"
    assert "jueju/serve/web/index.html" in shipped


def test_installed_it_writes_poems_of_both_forms_from_any_folder(installed, tmp_path):
    script = (
        "import json, sys, jueju, jueju.home\n"
        "from jueju import generate_poetry\n"
        "print(json.dumps({'module': jueju.__file__, 'home': str(jueju.home.PROJECT_ROOT), 'path': sys.path,\n"
        "    'poems': [generate_poetry('床前明月光', seed=1), generate_poetry('朝辞白帝彩云间', seed=1)]}))\n"
    )
    found = json.loads(run(installed, tmp_path, "-c", script).stdout.splitlines()[-1])
    assert Path(found["module"]).is_relative_to(installed)  # the wheel's jueju, not the checkout's
    assert not any(Path(entry).resolve().is_relative_to(PROJECT_ROOT / "src") for entry in found["path"] if entry)
    assert Path(found["home"]) == installed / "jueju" / "share"
    five, seven = found["poems"]
    assert POEM[5].match(five) and five.startswith("床前明月光，"), five
    assert POEM[7].match(seven) and seven.startswith("朝辞白帝彩云间，"), seven

    poem = run(installed, tmp_path, "-m", "jueju", "generate", "床前明月光", "--seed", "2").stdout.strip()
    assert POEM[5].match(poem) and poem.startswith("床前明月光，"), poem


def test_installed_it_trains_into_the_working_folder_never_into_itself(installed, tmp_path):
    before = files(installed)
    tiny = [arg for item in tiny_overrides(tmp_path) if not item.startswith("paths.") for arg in ("--set", item)]
    run(installed, tmp_path, "-m", "jueju", "train", *tiny)
    assert (tmp_path / "models" / "wuyan" / "model.keras").is_file()
    assert (tmp_path / "data" / "wuyan" / "vocab.json").is_file() and (tmp_path / "logs" / "model.log").is_file()
    assert files(installed) == before
