"""The speed benchmark: this project's pipeline against the original's method, side by side.

One run, same model size and data for both sides, on the Keras backend of this process:

1. prepare   clean + vocabulary + windows over the corpus (corpus.prepare_corpus and
             dataset.build_dataset into a temporary folder), in a child process: seconds and
             peak resident memory (ru_maxrss of the child, read with getrusage(RUSAGE_CHILDREN)).
2. training  samples/s after warm-up. Ours: integer windows, embedding on the device, model.fit
             on NumPy arrays at train.batch_size. The original's: one-hot float32 inputs
             (batch, window, vocab) and one-hot labels built on the host by a Python generator,
             batch 32, into the same LSTM stack reading one-hot floats. And as users train: the
             default sequence layout (each poem read once, a character predicted at every
             position) and the default model, in characters predicted per second, against the
             original's samples per second (one character predicted each).
3. generation one poem (latency) and 64 and 1024 poems in one batch (poems/s) with
             jueju.write.poet.Poet (decoding on the device, jueju.write.device_loop), against
             the original's loop: one model.predict call on a one-hot window per character
             per poem.
4. word2vec  training time on the training split (word2vec.train_word2vec, [word2vec] settings).

Both models have the original's size: vocabulary 6,000, LSTM 256 + 512, dropout 0.6.
`--quick` runs everything on two collection files with a tiny model and a few steps, to check
that the benchmark works; its figures mean nothing. Results: a table on stdout and a JSON file.

    python scripts/benchmark.py [--quick] [--corpus DIR] [--out FILE] [--set section.key=value]
    KERAS_BACKEND=jax python scripts/benchmark.py     # the same on another backend
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from jueju.config import PROJECT_ROOT, Config, load_config

ORIGINAL = {"vocab_size": 6000, "lstm_units": [256, 512], "dropout": 0.6, "batch_size": 32}
# what a run measures; QUICK is only a check that every part works
FULL = {
    "lstm_units": [256, 512],
    "train_steps": 20,
    "original_steps": 60,
    "loop_poems": 3,
    "poem_repeats": 5,
    "word2vec_epochs": None,
    "batches": [64, 1024],
    "sequence_units": None,  # the default model's (model.lstm_units)
    "sequence_steps": 6,
}
QUICK = {
    "lstm_units": [16, 32],
    "train_steps": 3,
    "original_steps": 4,
    "loop_poems": 1,
    "poem_repeats": 2,
    "word2vec_epochs": 1,
    "batches": [64, 1024],
    "sequence_units": [16, 32],
    "sequence_steps": 2,
}
QUICK_FILES = ("tang/poet.tang.0.json", "song/poet.song.0.json")
COLLECTIONS = ("tang", "song")
SHARED_CORPUS = PROJECT_ROOT.parent / "shared" / "data" / "chinese-poetry"
FIRST_LINE = "白日依山尽"
# the targets: reported as met or not, never asserted
TARGETS = {
    "training": ("ours/original samples/s", 10.0),
    "training_sequence": ("ours characters predicted/s (default sequence layout and model) / original samples/s", 10.0),
    "one_poem": ("per-character loop latency / ours", 30.0),
    "batch_1024": ("ours 1024-poem batch / loop poems/s", 600.0),
    "batch_1024_over_64": ("ours 1024-poem batch poems/s / 64-poem batch poems/s (above 1: faster per poem)", 1.0),
    "prepare_seconds": ("prepare seconds at most", 60.0),
    "prepare_peak_mb": ("prepare peak RSS MB at most", 2000.0),
}

# The prepare step runs in a child, `python -m jueju.measure.bench_prepare`, which imports only corpus and dataset
# (not Keras and its framework, whose memory is not the preparation's).
PREPARE_CHILD = "jueju.measure.bench_prepare"


def main(argv: list[str] | None = None) -> int:
    """`python scripts/benchmark.py`: parse the options, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="benchmark", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--config", metavar="FILE", help="an .ini file of keys to change (see config/cfg.ini)")
    parser.add_argument(
        "--set",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=[],
        help="change one config key, e.g. --set train.batch_size=4096",
    )
    args = parser.parse_args(argv)
    return run_from_args(load_config(args.config, args.set), args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="two collection files, a tiny model, a few steps: checks that it works (figures mean nothing)",
    )
    parser.add_argument(
        "--corpus",
        metavar="DIR",
        help="chinese-poetry JSON files (tang/, song/); default ../shared/data/chinese-poetry, "
        "else the crawled data/raw",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="JSON results (default logs/benchmark[-quick].json; a Markdown table beside it, .md)",
    )
    parser.add_argument(
        "--load",
        metavar="MODEL_DIR",
        help="also serve this trained model and load it with 1, 8 and 64 clients, "
        "with and without batching (jueju.measure.loadtest)",
    )


def run_from_args(config: Config, args) -> int:
    corpus = Path(args.corpus) if args.corpus else default_corpus(config)
    out = Path(args.out) if args.out else config.log_dir / f"benchmark{'-quick' if args.quick else ''}.json"
    results = run(config, corpus, quick=args.quick)
    if args.load:
        from jueju.measure.loadtest import benchmark as load_run
        from jueju.measure.loadtest import format_rows

        results["load"] = load_run([args.load], requests=32 if args.quick else 256)
        print(format_rows(results["load"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", "utf-8")
    out.with_suffix(".md").write_text(format_markdown(results), "utf-8")
    print(format_table(results))
    print(f"results in {out} (and as a Markdown table in {out.with_suffix('.md')})")
    return 0


def default_corpus(config: Config) -> Path:
    for folder in (SHARED_CORPUS, config.raw_dir):
        if any((folder / name).is_dir() for name in COLLECTIONS):
            return folder
    raise FileNotFoundError(
        f"no corpus at {SHARED_CORPUS} or {config.raw_dir}: run `jueju crawl`, or pass "
        "--corpus DIR (a folder of chinese-poetry JSON files)"
    )


def corpus_sources(corpus: Path, quick: bool) -> list[Path]:
    """The whole corpus (tang/ and song/), or for --quick its first file of each collection."""
    if not corpus.exists():
        raise FileNotFoundError(f"corpus not found: {corpus}")
    if quick:
        files = [corpus / name for name in QUICK_FILES if (corpus / name).is_file()]
        if files:
            return files
    folders = [corpus / name for name in COLLECTIONS if (corpus / name).is_dir()]
    return folders or [corpus]


def run(config: Config, corpus: Path, quick: bool = False) -> dict:
    """Every measurement; returns the results (what the JSON file holds)."""
    sizes = QUICK if quick else FULL
    results: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "machine": machine(),
        "corpus": str(corpus),
        "sizes": sizes,
        "model": {**ORIGINAL, "lstm_units": sizes["lstm_units"], "window": config.dataset.window},
    }
    with tempfile.TemporaryDirectory(prefix="jueju-bench-") as tmp:
        data = Path(tmp)
        print("prepare: clean + vocabulary + windows ...", flush=True)
        results["prepare"] = measure_prepare(corpus_sources(corpus, quick), data, config)
        from jueju.data.dataset import Vocab, Windows, read_poems

        vocab = Vocab.load(data / "vocab.json")
        windows = Windows.load(data / "train.npz")
        train_poems = read_poems(data / "train.txt")
        results["model"]["vocab_size"] = len(vocab)
        print("training: ours ...", flush=True)
        ours, model = measure_training(config, windows, len(vocab), sizes)
        print("training: the original's one-hot generator ...", flush=True)
        original, original_model = measure_original_training(config, windows, len(vocab), sizes)
        print("training: ours as users train, the default sequence layout and model ...", flush=True)
        sequence = measure_sequence_training(config, train_poems, vocab, sizes)
        results["training"] = {
            "ours": ours,
            "original": original,
            "ratio": ours["samples_per_s"] / original["samples_per_s"],
            "sequence": sequence,
            "sequence_ratio": sequence["characters_per_s"] / original["samples_per_s"],
        }
        print("generation ...", flush=True)
        results["generation"] = measure_generation(config, model, original_model, vocab, train_poems, sizes)
        print("word2vec ...", flush=True)
        results["word2vec"] = measure_word2vec(config, train_poems, sizes)
    results["targets"] = check_targets(results)
    return results


def machine() -> dict:
    import keras

    from jueju.model import distribute

    backend = keras.backend.backend()
    framework = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend, backend)
    try:
        version = __import__(framework).__version__
    except ImportError:  # pragma: no cover
        version = "?"
    return {
        "backend": backend,
        "backend_version": version,
        "keras": keras.__version__,
        "devices": distribute.list_devices(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


# -- 1. prepare ------------------------------------------------------------------------------------------------


def measure_prepare(sources: list[Path], out: Path, config: Config) -> dict:
    """Clean and cut the data set in a child process, and measure the child's peak resident memory.

    The peak is the child's own high-water mark (VmHWM) read just before it exits. getrusage's
    ru_maxrss of the children is also recorded, but it is an upper bound only: Linux carries the
    parent's resident size at fork/exec into it, and this parent holds the deep-learning framework.
    """
    args = {
        "sources": [str(s) for s in sources],
        "out": str(out),
        "line_length": config.corpus.line_length,
        "stanzas": config.corpus.stanzas,
        "simplify": config.corpus.simplify,
        "dataset": {
            "vocab_size": ORIGINAL["vocab_size"],
            "window": config.dataset.window,
            "pad_start": config.dataset.pad_start,
            "valid_fraction": config.dataset.valid_fraction,
            "test_fraction": config.dataset.test_fraction,
            "seed": config.dataset.seed,
        },
    }
    # this very package, wherever the interpreter would otherwise find one
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])
        ),
    }
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-m", PREPARE_CHILD, json.dumps(args)], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - started
    if child.returncode:
        raise RuntimeError(f"the prepare step failed: {child.stderr.strip()[-2000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    result.update(process_seconds=wall, children_ru_maxrss_mb=children_kb / 1024, sources=[str(s) for s in sources])
    return result


# -- 2. training -----------------------------------------------------------------------------------------------


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall time of each epoch: epoch 1 is the warm-up (tracing, compiling), epoch 2 is measured.

        Epoch-level hooks only: nothing here waits on the device between batches."""

        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # Keras has already waited for the epoch's last loss
            self.seconds.append(time.perf_counter() - self._started)

    return EpochTimer()


def _steps(samples: int, batch_size: int, wanted: int) -> int:
    """Steps per epoch: `wanted`, fewer when two epochs would run past the data."""
    return max(1, min(wanted, samples // (2 * batch_size)))


def _enough(x: np.ndarray, y: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows repeated until there are `samples`: every measured batch is then a full one
    (a last, smaller batch would be a new shape, which JAX compiles again inside the timing)."""
    if len(y) >= samples:
        return x, y
    repeats = -(-samples // len(y))
    return np.tile(x, (repeats, 1)), np.tile(y, (repeats,) + (1,) * (y.ndim - 1))


def our_model_spec(config: Config, sizes: dict):
    return dataclasses.replace(
        config.model,
        input="embedding",
        lstm_units=list(sizes["lstm_units"]),
        dropout=ORIGINAL["dropout"],
        dense_units=[],
    )


def measure_training(config: Config, windows, vocab_size: int, sizes: dict):
    """Ours: int windows, embedding on the device, model.fit on NumPy arrays at train.batch_size."""
    spec = our_model_spec(config, sizes)
    return _fit(config, spec, vocab_size, config.dataset.window, windows.x, windows.y, sizes["train_steps"])


def measure_sequence_training(config: Config, train_poems: list[str], vocab, sizes: dict) -> dict:
    """Ours as users train by default: context = sequence (each poem read once, a target at every
    position) and the default model, at train.batch_size poems; in characters predicted per second."""
    from jueju.data.dataset import encode_poems, make_sequences

    poems = [poem for poem in train_poems if len(poem) == 4 * (config.corpus.line_length + 1)]
    x, y = make_sequences(encode_poems(poems, vocab), config.dataset.pad_start)
    spec = dataclasses.replace(config.model, input="embedding", dense_units=list(config.model.dense_units))
    if config.model.input == "word2vec":  # the same network: word2vec only initialises the embedding
        spec = dataclasses.replace(spec, embedding_dim=config.word2vec.vector_size)
    if sizes["sequence_units"]:
        spec = dataclasses.replace(spec, lstm_units=list(sizes["sequence_units"]))
    result, _ = _fit(config, spec, len(vocab), None, x, y, sizes["sequence_steps"])
    result["characters_per_s"] = result["samples_per_s"] * y.shape[1]  # a target at every position
    result.update(characters_per_sample=int(y.shape[1]), lstm_units=list(spec.lstm_units), dropout=spec.dropout)
    return result


def _fit(config: Config, spec, vocab_size: int, window: int | None, x: np.ndarray, y: np.ndarray, wanted: int):
    """Samples/s of model.fit at train.batch_size after a warm-up epoch, as jueju train runs it."""
    import keras

    from jueju.model import distribute
    from jueju.model.network import build_model, compile_model

    batch = config.train.batch_size
    keras.utils.set_random_seed(config.train.seed)
    with distribute.scope(config.train.distribution) as plan:
        plan.check_batch(batch)
        steps = _steps(len(y), batch, wanted)
        x, y = plan.trim(*_enough(x, y, 2 * steps * batch))
        with distribute.precision(config.train.mixed_precision):
            model = build_model(spec, vocab_size, window)
        compile_model(model, config.train.learning_rate)
        model.steps_per_execution = plan.steps_per_execution(steps)
        timer = _epoch_timer()
        model.fit(x, y, batch_size=batch, epochs=2, steps_per_epoch=steps, shuffle=True, verbose=0, callbacks=[timer])
    seconds = timer.seconds[-1]
    return {
        "samples_per_s": steps * batch / seconds,
        "batch_size": batch,
        "steps": steps,
        "seconds": seconds,
        "warmup_seconds": timer.seconds[0],
        "distribution": plan.name,
        "replicas": plan.replicas,
        "mixed_precision": config.train.mixed_precision,
        "steps_per_execution": plan.steps_per_execution(steps),
    }, model


def build_original_model(vocab_size: int, window: int, lstm_units, dropout: float, learning_rate: float):
    """The original's network: one-hot floats (batch, window, vocab) -> LSTM -> LSTM -> softmax."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(window, vocab_size), dtype="float32", name="one_hot")
    x = inputs
    for i, units in enumerate(lstm_units):
        x = layers.LSTM(units, return_sequences=i < len(lstm_units) - 1)(x)
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(vocab_size, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="original_one_hot_lstm")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy")
    return model


def one_hot_batches(x: np.ndarray, y: np.ndarray, vocab_size: int, batch_size: int):
    """The original's input pipeline: a Python generator building one-hot float32 arrays on the host."""
    rows = np.arange(batch_size)
    while True:
        for start in range(0, len(y) - batch_size + 1, batch_size):
            features = np.zeros((batch_size, x.shape[1], vocab_size), dtype=np.float32)
            labels = np.zeros((batch_size, vocab_size), dtype=np.float32)
            features[rows[:, None], np.arange(x.shape[1]), x[start : start + batch_size]] = 1.0
            labels[rows, y[start : start + batch_size]] = 1.0
            yield features, labels


def measure_original_training(config: Config, windows, vocab_size: int, sizes: dict):
    import keras

    keras.utils.set_random_seed(config.train.seed)
    batch = ORIGINAL["batch_size"]
    model = build_original_model(
        vocab_size, config.dataset.window, sizes["lstm_units"], ORIGINAL["dropout"], config.train.learning_rate
    )
    steps = _steps(len(windows.y), batch, sizes["original_steps"])
    timer = _epoch_timer()
    model.fit(
        one_hot_batches(windows.x, windows.y, vocab_size, batch),
        epochs=2,
        steps_per_epoch=steps,
        shuffle=False,
        verbose=0,
        callbacks=[timer],
    )
    seconds = timer.seconds[-1]
    return {
        "samples_per_s": steps * batch / seconds,
        "batch_size": batch,
        "steps": steps,
        "seconds": seconds,
        "warmup_seconds": timer.seconds[0],
    }, model


# -- 3. generation ---------------------------------------------------------------------------------------------


def measure_generation(config: Config, trained, original_model, vocab, train_poems: list[str], sizes: dict) -> dict:
    """Poet (batched, constrained decoding) against one model.predict call per character per poem."""
    from jueju.model.network import build_model
    from jueju.write.poet import Poet

    window = config.dataset.window
    # as the default model writes: reading the whole poem, carried from character to character in the
    # LSTM states (the same weights; a plain copy: one device, float32)
    model = build_model(our_model_spec(config, sizes), len(vocab), None)
    model.set_weights(trained.get_weights())
    poet = Poet(model, vocab, config, _train_lines(train_poems, vocab))
    for size in [1, *sizes["batches"]]:  # trace the model step for every batch shape first
        poet.poems(FIRST_LINE, num=size, seed=0)
    latencies = []
    for repeat in range(sizes["poem_repeats"]):
        started = time.perf_counter()
        poet.poem(FIRST_LINE, seed=repeat)
        latencies.append(time.perf_counter() - started)
    ours = {"one_poem_s": statistics.median(latencies)}
    for size in sizes["batches"]:
        started = time.perf_counter()
        poems = poet.poems(FIRST_LINE, num=size, seed=1)
        ours[f"batch_{size}_poems_per_s"] = len(poems) / (time.perf_counter() - started)
    loop = per_character_loop(
        original_model,
        vocab,
        poet.layout.length,
        config.corpus.line_length,
        window,
        sizes["loop_poems"],
        config.generate.temperature,
    )
    ratios = {"one_poem": loop["one_poem_s"] / ours["one_poem_s"]}
    for size in sizes["batches"]:
        ratios[f"batch_{size}"] = ours[f"batch_{size}_poems_per_s"] / loop["poems_per_s"]
    settings = {name: getattr(config.generate, name) for name in ("sampler", "rhyme", "no_repeat", "no_copy", "tonal")}
    return {"ours": ours, "original_loop": loop, "ratios": ratios, "settings": settings, "first_line": FIRST_LINE}


def _train_lines(poems: list[str], vocab):
    """What no_copy checks against, in the form this version of Poet takes."""
    from jueju.train.loop import training_lines

    lines = training_lines(poems)
    try:
        from jueju.write.constraints import LineIndex
    except ImportError:  # an older Poet takes a set of lines
        return set(lines)
    return LineIndex.from_lines(lines, vocab)


def per_character_loop(
    model, vocab, length: int, line_length: int, window: int, poems: int, temperature: float
) -> dict:
    """The original's generation: for each character, a one-hot window and one model.predict call."""
    rng = np.random.default_rng(0)
    ids = vocab.encode(FIRST_LINE + "，")
    model.predict(np.zeros((1, window, len(vocab)), dtype=np.float32), verbose=0)  # warm-up
    latencies = []
    for _ in range(poems):
        started = time.perf_counter()
        tokens = list(ids)
        while len(tokens) < length:
            context = ([0] * window + tokens)[-window:]
            features = np.zeros((1, window, len(vocab)), dtype=np.float32)
            features[0, np.arange(window), context] = 1.0
            probs = model.predict(features, verbose=0)[0].astype(np.float64)
            logits = np.log(np.maximum(probs, 1e-12)) / temperature
            weights = np.exp(logits - logits.max())
            tokens.append(int(rng.choice(len(weights), p=weights / weights.sum())))
        latencies.append(time.perf_counter() - started)
    one = statistics.mean(latencies)
    return {
        "one_poem_s": one,
        "poems_per_s": 1.0 / one,
        "predict_calls_per_poem": length - len(ids),
        "poems_timed": poems,
    }


# -- 4. word2vec -----------------------------------------------------------------------------------------------


def measure_word2vec(config: Config, train_poems: list[str], sizes: dict) -> dict:
    from jueju.data.word2vec import train_word2vec

    settings = dataclasses.asdict(config.word2vec)
    if sizes["word2vec_epochs"]:
        settings["epochs"] = sizes["word2vec_epochs"]
    started = time.perf_counter()
    train_word2vec(train_poems, **settings)
    return {
        "seconds": time.perf_counter() - started,
        "poems": len(train_poems),
        "epochs": settings["epochs"],
        "workers": settings["workers"],
        "vector_size": settings["vector_size"],
    }


# -- report ----------------------------------------------------------------------------------------------------


def check_targets(results: dict) -> dict:
    """Each target of the issue with the measured value and whether it is met."""
    generation, prepare = results["generation"]["ratios"], results["prepare"]
    ours = results["generation"].get("ours", {})
    over_64 = None
    if "batch_1024_poems_per_s" in ours and "batch_64_poems_per_s" in ours:
        over_64 = ours["batch_1024_poems_per_s"] / ours["batch_64_poems_per_s"]
    values = {
        "training": results["training"]["ratio"],
        "training_sequence": results["training"].get("sequence_ratio"),
        "one_poem": generation["one_poem"],
        "batch_1024": generation.get("batch_1024"),
        "batch_1024_over_64": over_64,
        "prepare_seconds": prepare["seconds"],
        "prepare_peak_mb": prepare["peak_rss_mb"],
    }
    checked = {}
    for name, (meaning, target) in TARGETS.items():
        value = values[name]
        checked[name] = {"target": target, "value": value, "met": _meets(name, value, target), "meaning": meaning}
    return checked


def _meets(name: str, value, target: float) -> bool | None:
    if value is None:
        return None
    if name.startswith("prepare"):  # at most
        return value <= target
    if name == "batch_1024_over_64":  # faster per poem: strictly above
        return value > target
    return value >= target


def _rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    p, t, g, targets = results["prepare"], results["training"], results["generation"], results["targets"]
    rows = [
        (
            "prepare (clean+vocab+windows)",
            f"{p['seconds']:.1f} s, {p['peak_rss_mb']:,.0f} MB peak",
            "—",
            "—",
            _target(targets, "prepare_seconds", "≤ 60 s") + ", " + _target(targets, "prepare_peak_mb", "≤ 2 GB"),
        ),
        (
            "training (samples/s)",
            f"{t['ours']['samples_per_s']:,.0f} (batch {t['ours']['batch_size']})",
            f"{t['original']['samples_per_s']:,.0f} (batch {t['original']['batch_size']})",
            f"{t['ratio']:,.1f}×",
            _target(targets, "training", "≥ 10×"),
        ),
    ]
    if "sequence" in t:
        q = t["sequence"]
        rows.append(
            (
                "training, default sequence layout (characters predicted/s)",
                f"{q['characters_per_s']:,.0f} (batch {q['batch_size']} poems, LSTM "
                f"{' + '.join(map(str, q['lstm_units']))})",
                f"{t['original']['samples_per_s']:,.0f} (batch {t['original']['batch_size']})",
                f"{t['sequence_ratio']:,.1f}×",
                _target(targets, "training_sequence", "≥ 10×"),
            )
        )
    rows += [
        (
            "one poem (latency)",
            f"{g['ours']['one_poem_s'] * 1000:,.0f} ms",
            f"{g['original_loop']['one_poem_s'] * 1000:,.0f} ms",
            f"{g['ratios']['one_poem']:,.1f}×",
            _target(targets, "one_poem", "≥ 30×"),
        ),
    ]
    for size in results["sizes"]["batches"]:
        rows.append(
            (
                f"{size} poems, one batch (poems/s)",
                f"{g['ours'][f'batch_{size}_poems_per_s']:,.1f}",
                f"{g['original_loop']['poems_per_s']:,.2f}",
                f"{g['ratios'][f'batch_{size}']:,.0f}×",
                _target(targets, "batch_1024", "≥ 600×") + ", " + _target(targets, "batch_1024_over_64", "above 64's")
                if size == 1024
                else "—",
            )
        )
    w = results["word2vec"]
    rows.append(
        ("word2vec (training split)", f"{w['seconds']:.1f} s", "—", "—", f"{w['poems']:,} poems, {w['epochs']} epochs")
    )
    return rows


def _heading(results: dict) -> list[str]:
    m, p, model = results["machine"], results["prepare"], results["model"]
    quick = "  [--quick: a check that it runs, not a measurement]" if results["quick"] else ""
    return [
        f"jueju benchmark, {results['date']}{quick}",
        f"{m['backend']} {m['backend_version']} (keras {m['keras']}) on {', '.join(m['devices'])}; "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; load average {m['load_average'][0]}",
        f"model: vocabulary {model['vocab_size']:,}, LSTM {' + '.join(map(str, model['lstm_units']))}, "
        f"dropout {model['dropout']}, window {model['window']}; {p['quatrains']:,} quatrains, "
        f"{p['train_windows']:,} training windows",
    ]


HEADER = ("", "ours", "original", "ratio", "target")


def format_table(results: dict) -> str:
    """The results as a plain-text table, for the terminal."""
    rows = _rows(results)
    widths = [max(len(str(row[i])) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = [*_heading(results), "  ".join(h.ljust(w) for h, w in zip(HEADER, widths)).rstrip()]
    lines += ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def format_markdown(results: dict) -> str:
    """The same as a Markdown table, for docs/speed.md."""
    heading = _heading(results)
    lines = [
        f"**{heading[0]}**  ",
        *[f"{line}  " for line in heading[1:]],
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(results)]
    return "\n".join(lines) + "\n"


def _target(targets: dict, name: str, text: str) -> str:
    met = targets[name]["met"]
    return f"{text}: {'met' if met else 'not met' if met is not None else 'n/a'}"


if __name__ == "__main__":
    sys.exit(main())
