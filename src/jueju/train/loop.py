"""Training: fit the model on the prepared windows, with checkpoints, resume, fine-tuning and model.log.

Layout under models/<form>/:
  model.keras, vocab.json, config.json   the best model so far (weights only), what generation loads
  checkpoints/epoch_NNNN.keras           every epoch, with optimizer state, for --resume
  train_state.json                       epochs done, best validation loss, patience count
Checkpoints are written under a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from jueju.config import Config
from jueju.data import condition, pipeline
from jueju.data.dataset import Vocab, Windows, quatrain_samples, read_poems, reversed_sequences
from jueju.data.word2vec import embedding_matrix, load_vectors
from jueju.files import atomic_path, write_atomic
from jueju.model import distribute
from jueju.model.network import (
    build_model,
    carry_vocabulary,
    compile_model,
    load_model,
    model_window,
    plot_model,
    save_inference_model,
    with_context,
)
from jueju.text import split_lines
from jueju.train.plot import METRICS_FIELDS, plot_training
from jueju.write.constraints import LineIndex
from jueju.write.poet import Poet

log = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 3  # older epoch checkpoints are deleted; the best model is kept apart


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0  # epochs since the validation loss last improved

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text("utf-8"))) if path.is_file() else cls()


class FolderTaken(ValueError):
    """Training was asked to write into a folder that holds a model it did not start from."""


def train(
    config: Config, resume: bool = False, finetune: str | Path | None = None, overwrite: bool = False
) -> TrainState:
    """Prepare whatever is missing, then fit into config.model_dir; returns the final training state.

    A folder that holds a trained model is refused (FolderTaken) unless this run starts from it
    (`resume`, or `finetune` of its own model.keras) or `overwrite` is given.
    """
    check_destination(config.model_dir, resume, finetune, overwrite)  # before any work, so nothing is touched
    distribute.check(config.train.distribution)  # a distribution this backend cannot run fails before any work
    pipeline.prepare(config)
    # build, compile and fit on the devices of train.distribution (jueju.model.distribute)
    with distribute.scope(config.train.distribution) as plan:
        return _train(config, resume, finetune, plan)


def _train(config: Config, resume: bool, finetune: str | Path | None, plan: distribute.Plan) -> TrainState:
    plan.check_batch(config.train.batch_size)
    data, out = config.data_dir, config.model_dir
    vocab = Vocab.load(data / "vocab.json")
    train_set, valid_set = training_samples(config), validation_samples(config)
    if len(valid_set.y) == 0:
        raise ValueError("the validation split is empty: raise dataset.valid_fraction or use a larger corpus")
    keras.utils.set_random_seed(config.train.seed)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    steps = config.train.steps_per_epoch or math.ceil(len(train_set.y) / config.train.batch_size)
    with distribute.precision(config.train.mixed_precision):  # loading too: it restores the loss-scaling optimizer
        model, state = _starting_point(config, vocab, resume, finetune, learning_rate(config.train, steps))
    _check_compatible(model, vocab, config)
    if state.epoch >= config.train.epochs:
        log.info("already trained %d of %d epochs: raise train.epochs to train more", state.epoch, config.train.epochs)
        return state
    (out / "evaluation.json").unlink(missing_ok=True)  # it described the model this run replaces
    vocab.save(out / "vocab.json")
    config.save_json(out / "config.json")
    lines = LineIndex.from_lines(training_lines(read_poems(data / "train.txt")), vocab)
    lines.save(out / LineIndex.FILE)
    plot_model(model, out / "model.png")
    log.info("training on %s", distribute.describe(plan))
    log.info(
        "training on %d %s (%d targets), validating on %d",
        len(train_set.y),
        config.dataset.context,
        train_set.y.size,
        len(valid_set.y),
    )
    callbacks = [Checkpointer(config, state), TrainingLog(config, vocab, state, lines)]
    callbacks += extra_callbacks(config, state)  # metrics.csv, TensorBoard
    try:
        # several batches per compiled call where the backend would otherwise wait for each loss (on GPUs)
        model.steps_per_execution = plan.steps_per_execution(config.train.steps_per_epoch)
        data = training_data(train_set, config, plan, state.epoch)
        if isinstance(data["x"], Batches):
            callbacks.append(data["x"].follow())
        validation = plan.trim(valid_set.x, valid_set.y)
        if distribute.backend() == "tensorflow":
            data, validation = tf_pipelines(data, validation, config.train.batch_size)
        stop = SignalStop()
        callbacks.append(stop)
        with stop.handling():
            model.fit(
                **data,
                epochs=config.train.epochs,
                initial_epoch=state.epoch,
                validation_data=validation,
                callbacks=callbacks,
                verbose=1 if sys.stdout.isatty() else 2,
            )  # no progress bars in logs
    except KeyboardInterrupt:
        save_interrupted(model, callbacks[0].state, config)
        raise  # the caller (the CLI) exits with 130 and no traceback
    plot_after_training(config)
    return callbacks[0].state


def check_destination(out: Path, resume: bool, finetune: str | Path | None, overwrite: bool) -> None:
    """Refuse to train into `out` when it holds a trained model this run does not start from."""
    held = out / "model.keras"
    if overwrite or not held.is_file():
        return
    if resume and numbered_checkpoints(out / "checkpoints"):
        return  # continues that folder's own run
    if finetune and Path(finetune).resolve() == held.resolve():
        return  # starts from that very model
    why = "has no checkpoint to resume from" if resume else "holds a trained model"
    raise FolderTaken(
        f"{out} {why} ({held.name}, e.g. the committed one), which training would replace: train a new model "
        f"into a folder of its own with --out DIR (e.g. --out models/mine), start from this one with "
        f"--finetune {held} --out DIR, continue its run with --resume (needs its checkpoints/), "
        "or replace it on purpose with --overwrite"
    )


def training_samples(config: Config) -> Windows:
    """train.npz, or with train.quatrains_only its real quatrains alone (a last fine-tuning stage);
    read right to left for a backward model; with dataset.condition each poem read after its
    conditioning block."""
    samples = directed(Windows.load(config.data_dir / "train.npz"), config)
    if config.dataset.condition:
        samples = condition.with_blocks(samples, np.load(config.data_dir / condition.BLOCKS, allow_pickle=False))
    if not config.train.quatrains_only:
        return samples
    return quatrain_samples(samples, json.loads((config.data_dir / "dataset.json").read_text("utf-8")))


def validation_samples(config: Config) -> Windows:
    """valid.npz; with dataset.condition read after empty blocks, so validation measures (and early
    stopping guards) the model's unconditioned use."""
    samples = directed(Windows.load(config.data_dir / "valid.npz"), config)
    return condition.with_blocks(samples) if config.dataset.condition else samples


def directed(samples: Windows, config: Config) -> Windows:
    """The samples as model.direction reads them: as they are, or each poem right to left."""
    if config.model.direction == "forward":
        return samples
    if not (config.dataset.context == "sequence" and config.dataset.pad_start):
        raise ValueError(
            "model.direction = backward needs dataset.context = sequence and dataset.pad_start = true "
            f"(got {config.dataset.context} and {config.dataset.pad_start}): set them, or model.direction = forward"
        )
    return reversed_sequences(samples)


def training_data(train_set: Windows, config: Config, plan: distribute.Plan, first_epoch: int) -> dict:
    """model.fit's training data: whole shuffled passes, or with train.steps_per_epoch on one
    device, `Batches` that walk on through the data (Keras cuts an epoch short at the end of arrays)."""
    settings = config.train
    if settings.steps_per_epoch and plan.replicas == 1:
        return {
            "x": Batches(
                train_set.x, train_set.y, settings.batch_size, settings.steps_per_epoch, settings.seed, first_epoch
            ),
            "shuffle": False,
        }  # the order is Batches' own
    x, y = plan.trim(train_set.x, train_set.y)
    return {
        "x": x,
        "y": y,
        "batch_size": settings.batch_size,
        "shuffle": True,
        "steps_per_epoch": settings.steps_per_epoch or None,
    }


class Batches(keras.utils.PyDataset):
    """Epochs of `steps` full batches that walk on through the data: each pass over it in a new order
    (drawn from `seed` and the pass number), an epoch taking up where the last one stopped.

    `first_epoch` is where a resumed run starts, so it reads the batches a straight run would.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, steps: int, seed: int, first_epoch: int = 0):
        super().__init__()
        if len(y) < batch_size:
            raise ValueError(f"train.batch_size = {batch_size} is larger than the {len(y)} training samples: lower it")
        self.x, self.y, self.batch_size, self.steps, self.seed = x, y, batch_size, steps, seed
        self.epoch, self.per_pass = first_epoch, len(y) // batch_size
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        step = self.epoch * self.steps + index
        rows = self.order(step // self.per_pass)[(step % self.per_pass) * self.batch_size :][: self.batch_size]
        return self.x[rows], self.y[rows]

    def order(self, pass_number: int) -> np.ndarray:
        if self._order is None or self._order[0] != pass_number:  # one permutation held at a time
            self._order = pass_number, np.random.default_rng([self.seed, pass_number]).permutation(len(self.y))
        return self._order[1]

    def follow(self) -> keras.callbacks.Callback:
        """A callback that tells these batches which epoch runs (Keras calls on_epoch_end once more than that)."""
        return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: setattr(self, "epoch", epoch))


def tf_pipelines(data: dict, validation: tuple[np.ndarray, np.ndarray], batch_size: int) -> tuple[dict, object]:
    """On TensorFlow, `training_data` and the validation arrays as tf.data pipelines without autotuning.

    Keras would build pipelines with tf.data's autotuning on, and destroying such a pipeline's iterator
    waits for its autotuning thread: after Ctrl-C or SIGTERM (the iterator of the interrupted epoch,
    at the latest when the process exits) that wait was 30-60 s on a real-size run (TensorFlow 2.21,
    seen in ~RootDataset::Iterator). Batches gathered from arrays in memory need no tuning.
    """
    import tensorflow as tf

    def untuned(dataset: tf.data.Dataset) -> tf.data.Dataset:
        options = tf.data.Options()
        options.autotune.enabled = False
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA  # as Keras's
        return dataset.prefetch(1).with_options(options)

    source = data["x"]
    if isinstance(source, Batches):  # the epoch it reads is set by its follow() callback before each pass
        signature = tuple(tf.TensorSpec((source.batch_size, *a.shape[1:]), a.dtype) for a in (source.x, source.y))
        batches = tf.data.Dataset.from_generator(
            lambda: (source[i] for i in range(len(source))), output_signature=signature
        )
        fit = {"x": untuned(batches.apply(tf.data.experimental.assert_cardinality(len(source)))), "shuffle": False}
    else:  # whole passes, each in a new order (drawn from the seed keras.utils.set_random_seed set)
        samples = tf.data.Dataset.from_tensor_slices((source, data["y"])).shuffle(len(data["y"]))
        fit = {"x": untuned(samples.batch(batch_size)), "shuffle": False, "steps_per_epoch": data["steps_per_epoch"]}
    return fit, untuned(tf.data.Dataset.from_tensor_slices(validation).batch(batch_size))


class SignalStop(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) and `kill PID` (SIGTERM: also systemd, docker stop, job schedulers) stop training with
    KeyboardInterrupt before its next step, which saves a checkpoint that --resume continues.

    The handler only notes the signal; this callback raises before the next training or validation step, or
    epoch. So a step is never cut in half (PyTorch and JAX write the weights back in Python, one variable at a
    time), and no library code meets the interrupt: Keras converts each step's logs under a bare `except:`,
    where on JAX the main thread waits for the step, and swallowed a KeyboardInterrupt raised there. Python
    runs the handler only once the compiled call in flight returns: on CPUs, where a step of a real model
    takes seconds, that call is one step (distribute.Plan.steps_per_execution). A background job (`jueju
    train &` from a script) ignores SIGINT, and keeps ignoring it; SIGTERM is the signal that reaches it.
    """

    def __init__(self):
        super().__init__()
        self.received: str | None = None

    @contextmanager
    def handling(self):
        """SIGINT and SIGTERM noted while inside; the handlers before are put back after."""
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            yield
            return
        previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        for number, handler in previous.items():
            if not (number == signal.SIGINT and handler == signal.SIG_IGN):
                signal.signal(number, self.note)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: set outside Python

    def note(self, number: int, frame) -> None:
        """The handler of both signals."""
        self.received = signal.Signals(number).name

    def stop_if_signalled(self) -> None:
        if self.received:
            raise KeyboardInterrupt(self.received)

    def on_epoch_begin(self, epoch, logs=None):
        self.stop_if_signalled()

    def on_train_batch_begin(self, batch, logs=None):
        self.stop_if_signalled()

    def on_test_batch_begin(self, batch, logs=None):
        self.stop_if_signalled()


def save_interrupted(model: keras.Model, state: TrainState, config: Config) -> Path:
    """Ctrl-C (or SIGTERM) during fit: save the model as a checkpoint that --resume picks up, and say how to resume.

    The checkpoint carries the number of the last *completed* epoch (state.epoch), never that of
    the interrupted one: --resume then runs the interrupted epoch again in full, starting from the
    weights as they were at Ctrl-C (so the steps already taken are kept, as a warm start), and
    validation, the best model and early stopping see only whole epochs. Numbering it as the
    interrupted epoch would make --resume skip the rest of that epoch. It replaces that epoch's
    checkpoint; if Ctrl-C came during the end-of-epoch callbacks, state.epoch already counts
    that epoch, and the save is of its finished weights. Ctrl-C before the first epoch ends
    saves epoch_0000.keras, and --resume starts at epoch 1.
    """
    folder = config.model_dir / "checkpoints"
    path = folder / f"epoch_{state.epoch:04d}.keras"
    with atomic_path(path, suffix=".keras") as tmp:  # a second Ctrl-C here removes the temporary file
        model.save(tmp)
    state.save(config.model_dir / "train_state.json")  # best_val_loss etc. as of the last epoch end
    log.warning(
        "training interrupted: saved %s; run the same command with --resume (e.g. `jueju train --resume`) "
        "to continue at epoch %d",
        path,
        state.epoch + 1,
    )
    return path


def training_lines(poems: list[str]) -> list[str]:
    """The distinct lines of the training poems (what generation's no_copy checks against)."""
    return sorted({line for poem in poems for line in split_lines(poem)})


def learning_rate(settings, steps_per_epoch: int):
    """train.learning_rate, or its cosine decay to a tenth over train.epochs of `steps_per_epoch` steps."""
    if settings.lr_schedule == "constant":
        return settings.learning_rate
    return keras.optimizers.schedules.CosineDecay(settings.learning_rate, settings.epochs * steps_per_epoch, alpha=0.1)


def _starting_point(config: Config, vocab: Vocab, resume: bool, finetune, rate) -> tuple[keras.Model, TrainState]:
    out = config.model_dir
    for stale in (out / "checkpoints").glob(".epoch_*.tmp.keras"):
        stale.unlink(missing_ok=True)  # a save cut short by a kill; never a checkpoint
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
        return compile_model(fit_context(finetune_start(finetune, config, vocab), config), rate), TrainState()
    return compile_model(new_model(config, vocab, config.model_window), rate), TrainState()


def finetune_start(path: str | Path, config: Config, vocab: Vocab) -> keras.Model:
    """The model at `path`, over this data set's vocabulary: where the model was trained on another
    (its vocab.json beside it differs, e.g. a 五言 model fine-tuned on 七言), the tokens both share
    carry over (model.carry_vocabulary) and the rest start fresh."""
    model = load_model(path)
    own = Path(path).parent / "vocab.json"
    if not own.is_file():
        return model  # nothing to map by: _check_compatible refuses a mismatch
    tokens = Vocab.load(own).tokens
    if tokens == vocab.tokens:
        return model
    return carry_vocabulary(model, tokens, new_model(config, vocab, model_window(model)), vocab.tokens)


def new_model(config: Config, vocab: Vocab, window: int | None) -> keras.Model:
    """The config's network with fresh weights (the embedding from word2vec when model.input says so)."""
    embedding = None
    if config.model.input == "word2vec":
        embedding = embedding_matrix(vocab, load_vectors(config.data_dir / "word2vec.txt"), config.train.seed)
    return build_model(config.model, len(vocab), window, embedding)


def latest_checkpoint(folder: Path) -> tuple[keras.Model, int] | None:
    """The newest checkpoint that loads, with its epoch; a damaged one is reported and skipped.

    Only files named epoch_<number>.keras count, newest by number (not by name: epoch_10000
    comes after epoch_9999); temporary files of a save cut short start with a dot and never match.
    """
    for epoch, path in reversed(numbered_checkpoints(folder)):
        try:
            return load_model(path), epoch
        except (ValueError, OSError) as err:  # damaged, or not a file (e.g. a folder of that name)
            log.error("%s; falling back to the previous checkpoint", err)
    return None


def numbered_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every epoch_<number>.keras in `folder`, oldest first."""
    numbered = [
        (int(path.stem[len("epoch_") :]), path)
        for path in folder.glob("epoch_*.keras")
        if path.stem[len("epoch_") :].isdecimal()
    ]
    return sorted(numbered)


def fit_context(model: keras.Model, config: Config) -> keras.Model:
    """A model to fine-tune, changed to read the samples of dataset.context (its weights carry over)."""
    window = config.model_window
    if model_window(model) == window:
        return model
    log.info("fine-tuning a model that reads %s as one that reads %s", _reads(model_window(model)), _reads(window))
    return with_context(model, window, every_position=window is None)


def _reads(window: int | None) -> str:
    return "sequences" if window is None else f"windows of {window}"


def _check_compatible(model: keras.Model, vocab: Vocab, config: Config) -> None:
    if model.output_shape[-1] != len(vocab):
        raise ValueError(
            f"the model predicts {model.output_shape[-1]} tokens but the vocabulary has {len(vocab)}: "
            "fine-tune or resume only with the data set the model was trained on"
        )
    if model_window(model) != config.model_window:
        raise ValueError(
            f"the model reads {_reads(model_window(model))} but the data set (dataset.context = "
            f"{config.dataset.context}, dataset.window = {config.dataset.window}) has "
            f"{_reads(config.model_window)}: resume with the settings the model was trained with, "
            "or --finetune it"
        )


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
        with atomic_path(path, suffix=".keras") as tmp:
            self.model.save(tmp)
        self.state.save(self.config.model_dir / "train_state.json")
        for _, old in numbered_checkpoints(self.folder)[:-KEEP_CHECKPOINTS]:
            old.unlink()
        patience = self.config.train.patience
        if patience and self.state.wait >= patience:
            log.info("validation loss has not improved for %d epochs: stopping", patience)
            self.model.stop_training = True


class TrainingLog(keras.callbacks.Callback):
    """logs/model.log: a line per epoch, and sample poems from validation first lines every few epochs."""

    def __init__(self, config: Config, vocab: Vocab, state: TrainState, train_lines: LineIndex):
        super().__init__()
        self.config, self.vocab, self.train_lines = config, vocab, train_lines
        config.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = config.log_dir / "model.log"
        self.first_lines = self._sample_first_lines()
        self._write(
            f"##### training a {config.form} model from epoch {state.epoch + 1} "
            f"({time.strftime('%Y-%m-%d %H:%M:%S')}) #####"
        )

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
        if self.config.model.direction == "backward":  # a scorer, which writes no poems
            self._write(f"{summary}  {seconds:.1f}s  (a backward model: no sample poems)")
        elif every and (epoch + 1) % every == 0:
            poet = Poet(distribute.for_sampling(self.model), self.vocab, self.config, self.train_lines)
            poet.device_loop = None  # a few poems from a new Poet each epoch: the host loop, with nothing to compile
            poems = [poet.poem(line, seed=self.config.train.seed + i) for i, line in enumerate(self.first_lines)]
            self._write("\n".join([f"===== {summary}  {seconds:.1f}s =====", *poems, "===== End ====="]))
        else:
            self._write(f"{summary}  {seconds:.1f}s")

    def _write(self, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def extra_callbacks(config: Config, state: TrainState) -> list[keras.callbacks.Callback]:
    """logs/metrics.csv always; TensorBoard logs in logs/tensorboard with train.tensorboard = true."""
    callbacks: list[keras.callbacks.Callback] = [MetricsLog(config, state)]
    if config.train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(config.log_dir / "tensorboard")))
    return callbacks


def plot_after_training(config: Config) -> Path | None:
    """logs/training.png from logs/metrics.csv; a failure only warns (a picture never fails training)."""
    try:
        path = plot_training(config.log_dir, title=f"{config.form} model")
    except Exception as err:  # noqa: BLE001
        log.warning("could not draw the training curves: %s", err)
        return None
    log.info("training curves in %s", path)
    return path


class MetricsLog(keras.callbacks.Callback):
    """logs/metrics.csv: a row per epoch (epoch, loss, val_loss, val_perplexity, seconds, learning_rate).

    A run from scratch (or a fine-tuning) starts the file anew; a resumed run keeps the rows of the
    epochs before it, drops those of epochs it will run again, and appends, so the file always reads
    as one run. `jueju plot` draws it.
    """

    def __init__(self, config: Config, state: TrainState):
        super().__init__()
        config.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = config.log_dir / "metrics.csv"
        kept = []
        if state.epoch > 0 and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as handle:
                for row in csv.reader(handle):
                    if row and row[0].isdecimal() and int(row[0]) <= state.epoch:
                        kept.append(",".join(row))
        write_atomic(self.path, "\n".join([",".join(METRICS_FIELDS), *kept]) + "\n")

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - getattr(self, "started", time.perf_counter())
        loss, val_loss = float(logs.get("loss", math.nan)), float(logs.get("val_loss", math.nan))
        perplexity = math.nan if math.isnan(val_loss) else math.exp(min(val_loss, 700.0))
        row = [
            str(epoch + 1),
            f"{loss:.6f}",
            f"{val_loss:.6f}",
            f"{perplexity:.4f}",
            f"{seconds:.3f}",
            self._learning_rate(logs),
        ]
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(",".join(row) + "\n")

    def _learning_rate(self, logs: dict) -> str:
        try:
            rate = logs["learning_rate"] if "learning_rate" in logs else self.model.optimizer.learning_rate
            return f"{float(keras.ops.convert_to_numpy(rate)):.6g}"
        except Exception:  # noqa: BLE001 - no optimizer, or a rate that is not a number
            return ""
