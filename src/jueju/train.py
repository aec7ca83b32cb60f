"""Training: fit the model on the prepared windows, with checkpoints, resume, fine-tuning and model.log.

Layout under models/<form>/:
  model.keras, vocab.json, config.json   the best model so far (weights only), what generation loads
  checkpoints/epoch_NNNN.keras           every epoch, with optimizer state, for --resume
  train_state.json                       epochs done, best validation loss, patience count
Checkpoints are written under a temporary name and renamed, so a crash never leaves half a file.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from . import pipeline
from .config import Config
from .dataset import Vocab, Windows, read_poems, write_text_atomic
from .generate import Poet
from .model import build_model, compile_model, load_model, plot_model, save_inference_model
from .word2vec import embedding_matrix, load_vectors

log = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 3  # older epoch checkpoints are deleted; the best model is kept apart


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0  # epochs since the validation loss last improved

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "TrainState":
        return cls(**json.loads(path.read_text("utf-8"))) if path.is_file() else cls()


def train(config: Config, resume: bool = False, finetune: str | Path | None = None) -> TrainState:
    """Prepare whatever is missing, then fit; returns the final training state."""
    pipeline.prepare(config)
    data, out = config.data_dir, config.model_dir
    vocab = Vocab.load(data / "vocab.json")
    train_set, valid_set = Windows.load(data / "train.npz"), Windows.load(data / "valid.npz")
    if len(valid_set.y) == 0:
        raise ValueError("the validation split is empty: raise dataset.valid_fraction or use a larger corpus")
    keras.utils.set_random_seed(config.train.seed)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    model, state = _starting_point(config, vocab, resume, finetune)
    _check_compatible(model, vocab, config)
    if state.epoch >= config.train.epochs:
        log.info("already trained %d of %d epochs: raise train.epochs to train more", state.epoch, config.train.epochs)
        return state
    vocab.save(out / "vocab.json")
    config.save_json(out / "config.json")
    plot_model(model, out / "model.png")
    log.info("backend %s, devices %s", keras.backend.backend(), keras.distribution.list_devices())
    log.info("training on %d windows, validating on %d", len(train_set.y), len(valid_set.y))
    callbacks = [Checkpointer(config, state), TrainingLog(config, vocab, state)]
    model.fit(train_set.x, train_set.y, batch_size=config.train.batch_size, epochs=config.train.epochs,
              steps_per_epoch=config.train.steps_per_epoch or None, initial_epoch=state.epoch,
              validation_data=(valid_set.x, valid_set.y), shuffle=True,
              callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)  # no progress bars in logs
    return callbacks[0].state


def _starting_point(config: Config, vocab: Vocab, resume: bool, finetune) -> tuple[keras.Model, TrainState]:
    out = config.model_dir
    if resume:
        found = latest_checkpoint(out / "checkpoints")
        if found is not None:
            model, epoch = found
            state = TrainState.load(out / "train_state.json")
            state.epoch = epoch  # the checkpoint, not the state file, says how far training got
            log.info("resuming after epoch %d", epoch)
            return model, state
        log.warning("no checkpoint in %s: starting from scratch", out / "checkpoints")
    if finetune:
        log.info("fine-tuning %s", finetune)
        return compile_model(load_model(finetune), config.train.learning_rate), TrainState()
    embedding = None
    if config.model.input == "word2vec":
        embedding = embedding_matrix(vocab, load_vectors(config.data_dir / "word2vec.txt"), config.train.seed)
    model = build_model(config.model, len(vocab), config.dataset.window, embedding)
    return compile_model(model, config.train.learning_rate), TrainState()


def latest_checkpoint(folder: Path) -> tuple[keras.Model, int] | None:
    """The newest checkpoint that loads, with its epoch; a damaged one is reported and skipped."""
    for path in sorted(folder.glob("epoch_*.keras"), reverse=True):
        try:
            return load_model(path), int(path.stem.split("_")[1])
        except ValueError as err:
            log.error("%s; falling back to the previous checkpoint", err)
    return None


def _check_compatible(model: keras.Model, vocab: Vocab, config: Config) -> None:
    if model.output_shape[-1] != len(vocab):
        raise ValueError(f"the model predicts {model.output_shape[-1]} tokens but the vocabulary has {len(vocab)}: "
                         "fine-tune or resume only with the data set the model was trained on")
    if model.input_shape[1] != config.dataset.window:
        raise ValueError(f"the model reads windows of {model.input_shape[1]} but dataset.window is "
                         f"{config.dataset.window}")


class Checkpointer(keras.callbacks.Callback):
    """Every epoch: a full checkpoint; when validation improves: the inference model; early stopping."""

    def __init__(self, config: Config, state: TrainState):
        super().__init__()
        self.config, self.state = config, state
        self.folder = config.model_dir / "checkpoints"

    def on_epoch_end(self, epoch, logs=None):
        val_loss = float(logs["val_loss"])
        self.state.epoch = epoch + 1
        if val_loss < self.state.best_val_loss:
            self.state.best_val_loss, self.state.best_epoch, self.state.wait = val_loss, epoch + 1, 0
            save_inference_model(self.model, self.config.model_dir / "model.keras")
        else:
            self.state.wait += 1
        path = self.folder / f"epoch_{epoch + 1:04d}.keras"
        tmp = self.folder / f".epoch_{epoch + 1:04d}.tmp.keras"
        self.model.save(tmp)
        tmp.replace(path)
        self.state.save(self.config.model_dir / "train_state.json")
        for old in sorted(self.folder.glob("epoch_*.keras"))[:-KEEP_CHECKPOINTS]:
            old.unlink()
        patience = self.config.train.patience
        if patience and self.state.wait >= patience:
            log.info("validation loss has not improved for %d epochs: stopping", patience)
            self.model.stop_training = True


class TrainingLog(keras.callbacks.Callback):
    """logs/model.log: a line per epoch, and sample poems from validation first lines every few epochs."""

    def __init__(self, config: Config, vocab: Vocab, state: TrainState):
        super().__init__()
        self.config, self.vocab = config, vocab
        config.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = config.log_dir / "model.log"
        self.first_lines = self._sample_first_lines()
        self._write(f"##### training a {config.form} model from epoch {state.epoch + 1} "
                    f"({time.strftime('%Y-%m-%d %H:%M:%S')}) #####")

    def _sample_first_lines(self) -> list[str]:
        poems = read_poems(self.config.data_dir / "valid.txt")
        rng = np.random.default_rng(self.config.train.seed)
        chosen = rng.choice(len(poems), size=min(self.config.train.sample_count, len(poems)), replace=False)
        return [poems[i][: self.config.corpus.line_length] for i in chosen]

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        loss, val_loss = float(logs["loss"]), float(logs["val_loss"])
        summary = f"Epoch {epoch + 1}  loss {loss:.4f}  val_loss {val_loss:.4f}  val_ppl {math.exp(val_loss):.1f}"
        every = self.config.train.sample_every
        if every and (epoch + 1) % every == 0:
            poet = Poet(self.model, self.vocab, self.config)
            poems = [poet.poem(line, seed=self.config.train.seed + i) for i, line in enumerate(self.first_lines)]
            self._write("\n".join([f"===== {summary}  {seconds:.1f}s =====", *poems, "===== End ====="]))
        else:
            self._write(f"{summary}  {seconds:.1f}s")

    def _write(self, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
