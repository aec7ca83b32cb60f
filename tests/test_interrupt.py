"""Interrupted training: SIGKILL mid-epoch or mid-save, and Ctrl-C or SIGTERM (kill), then --resume.

`python -m jueju ... train` runs as a subprocess on a small synthetic corpus (learnable
character chains, so the validation loss falls), with train.steps_per_epoch making each
epoch last long enough to be interrupted in the middle. The data set is prepared once;
every run has its own model and log folders. An uninterrupted run with the same seed
gives the reference validation loss.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from jueju import pipeline
from jueju.cli import main
from jueju.config import load_config
from jueju.dataset import Vocab
from jueju.model import load_model
from jueju.train import TrainState, _starting_point, train

from conftest import tiny_overrides

EPOCHS = 3
VAL_LOSS_TOLERANCE = 0.1  # nats; epoch-to-epoch gains here are ~0.1-0.3
POLL_LIMIT = 180  # seconds to wait for an epoch on a busy machine
CHARS = "山水风月花鸟云天江河春秋日夜人家门前草木林中石上松竹舟客归来去长烟雨雪霜寒暖高低远近白青红黄明暗东西南北"


def synthetic_corpus(path: Path, count: int = 2000, seed: int = 0) -> Path:
    """Quatrains from a character chain (each character mostly followed by one of two others): learnable."""
    rng = random.Random(seed)
    follows = {char: rng.sample(CHARS, 2) for char in CHARS}

    def line() -> str:
        chars = [rng.choice(CHARS)]
        while len(chars) < 5:
            chars.append(rng.choice(follows[chars[-1]]) if rng.random() < 0.9 else rng.choice(CHARS))
        return "".join(chars)

    poems, seen = [], set()
    while len(poems) < count:
        lines = [line() for _ in range(4)]
        if "".join(lines) not in seen:
            seen.add("".join(lines))
            poems.append({"author": "佚名", "title": "无题",
                          "paragraphs": [f"{lines[0]}，{lines[1]}。", f"{lines[2]}，{lines[3]}。"]})
    path.write_text(json.dumps(poems, ensure_ascii=False), "utf-8")
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A prepared data set (cleaned corpus, vocabulary, windows) that every run below shares."""
    root = tmp_path_factory.mktemp("interrupt")
    synthetic_corpus(root / "corpus.json")
    pipeline.prepare(load_config(overrides=overrides(root, "prepare")))
    return root


def overrides(root: Path, run: str, **extra) -> list[str]:
    values = {"crawl.source": root / "corpus.json", "model.input": "embedding", "model.embedding_dim": 16,
              "train.epochs": EPOCHS, "train.steps_per_epoch": 80, "train.sample_every": 0,
              "train.batch_size": 4,  # many steps an epoch (58 poems), so Ctrl-C lands between two of them
              "paths.model_dir": root / run / "models", "paths.log_dir": root / run / "logs"}
    values.update(extra)
    return tiny_overrides(root, **values)


def cli_args(root: Path, run: str, *args: str) -> list[str]:
    return [*(arg for item in overrides(root, run) for arg in ("--set", item)), *args]


def start(root: Path, run: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "jueju", *cli_args(root, run, "train", *args)], cwd=root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(proc: subprocess.Popen, log: Path, epoch: int, pattern: str | None = None) -> None:
    """Until model.log has the line of `epoch` (or `log` has `pattern`): its checkpoint and
    train_state.json are then written."""
    pattern = pattern or rf"^Epoch {epoch}  loss"
    deadline = time.monotonic() + POLL_LIMIT
    while time.monotonic() < deadline:
        if log.is_file() and re.search(pattern, log.read_text("utf-8"), re.M):
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early ({proc.returncode}):\n{proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no epoch {epoch} within {POLL_LIMIT} s")


def val_losses(log: Path) -> dict[int, float]:
    """Epoch -> validation loss, the last line of each epoch winning (a resumed run repeats epochs)."""
    return {int(epoch): float(loss) for epoch, loss in
            re.findall(r"^Epoch (\d+)  loss [\d.]+  val_loss ([\d.]+)", log.read_text("utf-8"), re.M)}


def loadable(folder: Path) -> list[int]:
    epochs = []
    for path in sorted(folder.glob("epoch_*.keras")):
        try:
            load_model(path)
            epochs.append(int(path.stem.split("_")[1]))
        except ValueError:
            pass
    return epochs


@pytest.fixture(scope="module")
def straight(root) -> dict[int, float]:
    """The reference: the same configuration and seed, trained without interruption (in this process)."""
    state = train(load_config(overrides=overrides(root, "straight")))
    assert state.epoch == EPOCHS
    losses = val_losses(root / "straight" / "logs" / "model.log")
    assert sorted(losses) == [1, 2, 3]
    assert losses[3] < losses[1]  # it learns, so the comparison below means something
    return losses


@pytest.mark.slow
def test_sigkill_mid_epoch_and_mid_save_then_resume_matches_a_straight_run(root, straight, caplog):
    run = "killed"
    folder = root / run / "models" / "wuyan" / "checkpoints"
    log = root / run / "logs" / "model.log"
    proc = start(root, run)
    wait_for_epoch(proc, log, 1)
    time.sleep(0.2)  # into epoch 2's gradient steps
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # What a kill leaves: only complete checkpoints under their final names.
    done = max(loadable(folder))
    assert 1 <= done < EPOCHS
    assert loadable(folder) == sorted(int(p.stem.split("_")[1]) for p in folder.glob("epoch_*.keras"))
    # And a kill in the middle of writing the next one: a partial temporary file, plus (as if the
    # disk lost the end of it) a truncated file under the final name.
    good = (folder / f"epoch_{done:04d}.keras").read_bytes()
    partial = folder / f".epoch_{done + 1:04d}.tmp.keras"
    truncated = folder / f"epoch_{done + 1:04d}.keras"
    partial.write_bytes(good[: len(good) // 3])
    truncated.write_bytes(good[: len(good) * 2 // 3])

    caplog.set_level(logging.INFO)
    assert main(cli_args(root, run, "train", "--resume")) == 0

    assert f"cannot load model {truncated}" in caplog.text  # named, then skipped
    assert f"resuming after epoch {done}" in caplog.text
    text = log.read_text("utf-8")
    assert f"from epoch {done + 1} " in text
    assert TrainState.load(root / run / "models" / "wuyan" / "train_state.json").epoch == EPOCHS
    assert not partial.exists()
    assert loadable(folder)[-1] == EPOCHS
    resumed = val_losses(log)
    print(f"killed after epoch {done}; val_loss straight {straight}, killed + resumed {resumed}")
    assert sorted(resumed) == [1, 2, 3]
    assert abs(resumed[EPOCHS] - straight[EPOCHS]) < VAL_LOSS_TOLERANCE, (resumed, straight)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "kill"])
def test_ctrl_c_or_kill_saves_a_checkpoint_that_resume_continues_from(root, straight, stop):
    run = stop.name.lower()
    folder = root / run / "models" / "wuyan" / "checkpoints"
    log = root / run / "logs" / "model.log"
    proc = start(root, run)
    wait_for_epoch(proc, log, 1)
    wait_for_epoch(proc, root / run / "logs" / "metrics.csv", 1, pattern="^1,")  # the last end-of-epoch callback
    time.sleep(0.4)  # into epoch 2's gradient steps (a straight epoch 2 takes about 1.3 s here)
    proc.send_signal(stop)
    _out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert err.rstrip().splitlines()[-1] == "jueju train: interrupted"
    said = re.search(r"training interrupted: saved (\S+); run the same command with --resume .* "
                     r"to continue at epoch (\d+)", err)
    assert said, err[-3000:]
    path, next_epoch = Path(said.group(1)), int(said.group(2))
    print(f"{stop.name}: {said.group(0)}")
    assert path == folder / f"epoch_{next_epoch - 1:04d}.keras" and next_epoch - 1 >= 1
    assert not list(folder.glob(".*"))  # no temporary file left

    # --resume picks it up, at the right epoch, with the weights of the file it saved (whether the
    # signal landed before or after epoch 2's first steps is timing: the steps kept are checked below)
    config = load_config(overrides=overrides(root, run))
    model, state = _starting_point(config, Vocab.load(config.data_dir / "vocab.json"), True, None, 0.01)
    assert state.epoch == next_epoch - 1
    assert TrainState.load(config.model_dir / "train_state.json").epoch == next_epoch - 1
    saved = load_model(path).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, model.get_weights()))


class InterruptInEpoch2(keras.callbacks.Callback):
    """Ctrl-C at a known step: KeyboardInterrupt after epoch 2's first compiled call, weights noted."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.end_of_epoch_1 = self.model.get_weights()

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1:
            self.at_interrupt = self.model.get_weights()
            raise KeyboardInterrupt


@pytest.mark.slow
def test_an_interrupt_saves_the_steps_already_taken(root, monkeypatch):
    import jueju.train

    stop = InterruptInEpoch2()
    monkeypatch.setattr(jueju.train, "extra_callbacks", lambda config, state: [stop])
    config = load_config(overrides=overrides(root, "in_process"))
    with pytest.raises(KeyboardInterrupt):
        train(config)
    saved = load_model(config.model_dir / "checkpoints" / "epoch_0001.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, stop.at_interrupt))
    assert any(not np.allclose(a, b) for a, b in zip(saved, stop.end_of_epoch_1))
