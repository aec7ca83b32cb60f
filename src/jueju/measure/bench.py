"""The speed benchmark: this project's pipeline against the original's method, side by side, and the
committed model as users get it. This module runs the measurements and reports them (a table on stdout,
a JSON file and a Markdown table); they are in jueju.measure.bench_training (prepare, training, word2vec)
and jueju.measure.bench_generation (generation, the committed model).

One run, same model size and data for both sides, on the Keras backend of this process:

1. prepare     clean + vocabulary + windows, in a child process: seconds and peak memory.
2. training    samples/s after warm-up, ours against the original's one-hot generator, and as users
               train (the default sequence layout and model) in characters predicted per second.
3. generation  one poem and 64 and 1024 poems in one batch with Poet, against the original's
               per-character loop.
4. committed   the committed model (models/wuyan) at its defaults and at rerank=1: one poem, and
               1,024 first lines in one Poet.batch with the peak memory of the process.
5. word2vec    training time on the training split.

The benchmark's own models have the original's size: vocabulary 6,000, LSTM 256 + 512, dropout 0.6.
`--quick` runs everything on two collection files with a tiny model, a few steps and small batches, to
check that the benchmark works; its figures mean nothing.

    python scripts/benchmark.py [--quick] [--corpus DIR] [--out FILE] [--set section.key=value]
    KERAS_BACKEND=jax python scripts/benchmark.py     # the same on another backend
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from jueju.config import FORMS, PROJECT_ROOT, Config, load_config
from jueju.measure.bench_generation import measure_committed, measure_generation
from jueju.measure.bench_training import (
    ORIGINAL,
    measure_original_training,
    measure_prepare,
    measure_sequence_training,
    measure_training,
    measure_word2vec,
)

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
    "committed_batch": 1024,  # first lines in one Poet.batch of the committed model
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
    "committed_batch": 16,
}
QUICK_FILES = ("tang/poet.tang.0.json", "song/poet.song.0.json")
COLLECTIONS = ("tang", "song")
SHARED_CORPUS = PROJECT_ROOT.parent / "shared" / "data" / "chinese-poetry"
# the issues' targets: reported as met or not, never asserted
TARGETS = {
    "training": ("ours/original samples/s", 10.0),
    "training_sequence": ("ours characters predicted/s (default sequence layout and model) / original samples/s", 10.0),
    "one_poem": ("per-character loop latency / ours", 30.0),
    "batch_1024": ("ours 1024-poem batch / loop poems/s", 600.0),
    "batch_1024_over_64": ("ours 1024-poem batch poems/s / 64-poem batch poems/s (above 1: faster per poem)", 1.0),
    "prepare_seconds": ("prepare seconds at most", 60.0),
    "prepare_peak_mb": ("prepare peak RSS MB at most", 2000.0),
    "defaults_one_poem": ("committed model: one poem at its defaults / at rerank=1, at most", 3.0),
    "defaults_batch": ("committed model: batch poems/s at its defaults / at rerank=1, at least", 1 / 25),
    "defaults_peak_mb": (
        "committed model: peak RSS MB of the process, the batch at its defaults included, at most",
        3500.0,
    ),
}
AT_MOST = ("prepare_seconds", "prepare_peak_mb", "defaults_one_poem", "defaults_peak_mb")


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
        line_length = config.corpus.line_length
        committed = config.path(config.paths.model_dir) / FORMS[line_length]
        print(f"the committed model ({committed}) at its defaults and at rerank=1 ...", flush=True)
        results["committed"] = measure_committed(committed, train_poems, line_length, sizes)
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
    committed = results.get("committed", {})
    values["defaults_one_poem"] = committed.get("ratios", {}).get("one_poem")
    values["defaults_batch"] = committed.get("ratios", {}).get("batch")
    values["defaults_peak_mb"] = committed.get("peak_rss_mb")
    checked = {}
    for name, (meaning, target) in TARGETS.items():
        value = values[name]
        checked[name] = {"target": target, "value": value, "met": _meets(name, value, target), "meaning": meaning}
    return checked


def _meets(name: str, value, target: float) -> bool | None:
    if value is None:
        return None
    if name in AT_MOST:
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
    rows += _committed_rows(results.get("committed", {}), targets)
    w = results["word2vec"]
    rows.append(
        ("word2vec (training split)", f"{w['seconds']:.1f} s", "—", "—", f"{w['poems']:,} poems, {w['epochs']} epochs")
    )
    return rows


def _committed_rows(c: dict, targets: dict) -> list[tuple[str, str, str, str, str]]:
    """The committed model's rows: one poem and one batch, rerank=1 -> its defaults, and the peak memory."""
    if "ratios" not in c:
        return [("committed model", c.get("skipped", "not measured"), "—", "—", "—")]
    d, one, batch = c["defaults"], c["one_poem_s"], c["batch_poems_per_s"]
    defaults = ", ".join(f"{name} {value:g}" for name, value in d.items() if value)
    return [
        (
            f"committed model, one poem (latency), rerank=1 → defaults ({defaults})",
            f"{one['rerank_1'] * 1000:,.0f} → {one['defaults'] * 1000:,.0f} ms",
            "—",
            f"{c['ratios']['one_poem']:,.1f}×",
            _target(targets, "defaults_one_poem", "≤ 3×"),
        ),
        (
            f"committed model, {c['batch']:,} first lines, one batch (poems/s), rerank=1 → defaults",
            f"{batch['rerank_1']:,.1f} → {batch['defaults']:,.1f}",
            "—",
            f"1/{1 / c['ratios']['batch']:,.0f}",
            _target(targets, "defaults_batch", "≥ 1/25"),
        ),
        (
            "committed model, peak memory (the process, every call above)",
            f"{c['peak_rss_mb']:,.0f} MB",
            "—",
            "—",
            _target(targets, "defaults_peak_mb", "≤ 3.5 GB"),
        ),
    ]


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
