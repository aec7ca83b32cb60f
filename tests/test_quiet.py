"""Quiet by default: no framework log lines unless --verbose, and --help imports no deep learning
framework (README, Use it). Each check runs a fresh interpreter, as a user's command would."""

import os
import re
import subprocess
import sys

import pytest

FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")
ENV = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell


def run(*code_or_args, module=False, timeout=300):
    command = [sys.executable, "-m", "jueju", *code_or_args] if module else [sys.executable, "-c", *code_or_args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.mark.parametrize(
    "args", [["--help"], ["generate", "--help"], ["train", "--help"], ["serve", "--help"], ["bench", "--help"]]
)
def test_help_imports_no_framework(args):
    done = run(
        f"import sys\nfrom jueju.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print([name for name in {FRAMEWORKS!r} if name in sys.modules])"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]", done.stdout[-500:]
    assert "usage: jueju" in done.stdout


def test_import_jueju_is_light():
    done = run(f"import sys, jueju\nprint([name for name in {FRAMEWORKS!r} if name in sys.modules])")
    assert done.stdout.strip() == "[]", done.stderr


def test_generate_prints_poems_and_nothing_else():
    done = run("generate", "床前明月光", "--seed", "1", module=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no oneDNN, absl or CPU-feature lines
    assert done.stdout.startswith("床前明月光，") and len(done.stdout.strip()) == 24


def test_verbose_shows_the_frameworks_log_lines():
    """TensorFlow's native start-up lines (absl's format: I0000 00:00:... file.cc:N] ...), which importing
    jueju quietens, come back with --verbose (an x86 CPU gets at least its CPU-features line)."""
    done = run("generate", "床前明月光", "--seed", "1", "--verbose", module=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("床前明月光，")
    assert re.search(r"^[IWE]\d{4} [\d:. ]+\d+ \w+\.cc:\d+\]", done.stderr, re.MULTILINE), done.stderr


def test_a_user_error_is_one_line_and_nothing_else():
    done = run("generate", "床前明月", module=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("jueju generate: error: "), done.stderr
