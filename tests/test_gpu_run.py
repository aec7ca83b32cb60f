"""scripts/gpu_run.py --tiny on this CPU: what a run on a lent GPU does and writes, at tiny settings.

It prepares the tiny fixture corpus, trains in a child `jueju train` until its deadline, stops it with
SIGTERM, measures, and writes gpu_run.json and a model folder whose large files are cut into parts.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jueju.text import split_lines
from jueju.write.poet import Poet

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_tiny_run_trains_to_its_deadline_measures_and_writes_a_model_that_loads(tmp_path):
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}  # the script chooses
    command = [sys.executable, str(ROOT / "scripts" / "gpu_run.py"), "--tiny", "--out", str(out)]
    command += ["--work", str(tmp_path / "work"), "--minutes", "1.5", "--part-mb", "0.05"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])

    results = json.loads((out / "gpu_run.json").read_text("utf-8"))
    installed = next(name for name in ("jax", "torch", "tensorflow") if importlib.util.find_spec(name))
    assert results["machine"]["backend"] == installed  # JAX or PyTorch where TensorFlow is missing
    training = results["training"]
    assert training["stopped"].startswith("SIGTERM at the deadline") and training["exit_status"] == 130
    assert training["epochs"] >= 2 and training["characters_per_s"] > 0
    assert training["validation_perplexity"] == pytest.approx(math.exp(min(training["val_loss"])), rel=1e-4)
    assert 1 < results["test_perplexity"] < 400  # better than a uniform guess over the 400 tokens
    assert set(results["decoding_poems_per_s"]) == {"16", "32"}
    assert all(rate > 0 for rate in results["decoding_poems_per_s"].values())

    folder = out / results["model_folder"]
    parts = sorted(folder.glob("model.keras.part*"))
    assert len(parts) > 1 and not (folder / "model.keras").exists()  # cut at 0.05 MB
    (folder / "model.keras").write_bytes(b"".join(part.read_bytes() for part in parts))  # what `cat` does
    poem = Poet.load(folder).poem("白日依山尽", seed=1, rerank=1)
    assert [len(line) for line in split_lines(poem)] == [5, 5, 5, 5]
