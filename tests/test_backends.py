"""The backend matrix: the core (tests/backend_core_check.py) on TensorFlow, JAX and PyTorch.

Each backend runs in its own process with KERAS_BACKEND set (Keras picks its backend once, at
import). A backend whose package is not installed is skipped with the command that installs it
(`./scripts/setup.sh --dev` installs all three).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(PACKAGES))
def test_core_runs_on_backend(backend, tmp_path):
    if importlib.util.find_spec(PACKAGES[backend]) is None:
        pytest.skip(
            f"{PACKAGES[backend]} is not installed: pip install -r requirements-backends.txt "
            "(or ./scripts/setup.sh --dev)"
        )
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("XLA_FLAGS", None)  # one device, whatever the calling shell set
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(TESTS / "backend_core_check.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "pytest"),
        ],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = result.stdout.strip().splitlines()[-1:] or ["no output"]
    assert result.returncode == 0, f"{backend}: {summary[0]}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert "passed" in summary[0] and "skipped" not in summary[0], summary[0]
