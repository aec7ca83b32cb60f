"""The benchmark: that it runs and reports every figure. Never a timing: figures depend on the machine."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jueju.cli import main
from jueju.config import load_config
from jueju.measure import bench, bench_training

from conftest import SHARED_DATA, TINY_CORPUS

ROOT = Path(__file__).resolve().parents[1]


def quick_corpus() -> Path:
    """Two files of the real corpus when it is beside the checkout, else the tiny fixture."""
    shared = SHARED_DATA / "chinese-poetry"
    return shared if (shared / bench.QUICK_FILES[0]).is_file() else TINY_CORPUS


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_quick_benchmark_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "benchmark.py"),
            "--quick",
            "--corpus",
            str(quick_corpus()),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = (
        "prepare",
        "training (samples/s)",
        "default sequence layout",
        "one poem",
        "64 poems",
        "1024 poems",
        "committed model, one poem",
        "committed model, 16 first lines, one batch",
        "committed model, peak memory",
        "word2vec",
    )
    for row in rows:
        assert row in result.stdout
    assert "--quick" in result.stdout  # the table says its figures are not a measurement

    results = json.loads(out.read_text("utf-8"))
    assert results["quick"] is True
    expected = {"date", "machine", "model", "prepare", "training", "generation", "committed", "word2vec", "targets"}
    assert expected <= set(results)
    assert {"backend", "devices", "cpu", "cores"} <= set(results["machine"])
    assert results["model"]["dropout"] == 0.6 and results["model"]["vocab_size"] <= 6000

    prepare = results["prepare"]
    for key in ("seconds", "peak_rss_mb", "quatrains", "train_windows", "vocab_size"):
        assert positive(prepare[key]), key

    training = results["training"]
    for side, batch in (("ours", load_config().train.batch_size), ("original", 32)):  # ours: train.batch_size
        assert positive(training[side]["samples_per_s"]) and training[side]["batch_size"] == batch
    assert positive(training["ratio"]) and positive(training["sequence_ratio"])
    sequence = training["sequence"]  # as users train: a character predicted at every position of a poem
    assert positive(sequence["characters_per_s"]) and sequence["characters_per_sample"] == 24
    assert sequence["characters_per_s"] == sequence["samples_per_s"] * 24 and sequence["batch_size"] == 512

    generation = results["generation"]
    assert positive(generation["ours"]["one_poem_s"])
    for size in (64, 1024):
        assert positive(generation["ours"][f"batch_{size}_poems_per_s"])
    assert positive(generation["original_loop"]["one_poem_s"]) and positive(generation["original_loop"]["poems_per_s"])
    assert generation["original_loop"]["predict_calls_per_poem"] == 18  # every character after the first line
    assert set(generation["ratios"]) == {"one_poem", "batch_64", "batch_1024"}
    assert all(positive(value) for value in generation["ratios"].values())

    committed = results["committed"]  # the committed model as users get it, at its defaults and at rerank=1
    assert committed["defaults"]["rerank"] > 1 and committed["batch"] == 16
    for name in ("defaults", "rerank_1"):
        assert positive(committed["one_poem_s"][name]) and positive(committed["batch_poems_per_s"][name])
    assert positive(committed["peak_rss_mb"]) and all(positive(value) for value in committed["ratios"].values())

    assert positive(results["word2vec"]["seconds"]) and results["word2vec"]["poems"] > 0
    assert set(results["targets"]) == set(bench.TARGETS)
    for target in results["targets"].values():
        assert positive(target["value"]) and target["met"] in (True, False)


def test_the_targets_are_judged_from_the_figures():
    results = {
        "training": {"ratio": 12.0, "sequence_ratio": 9.5},
        "generation": {
            "ratios": {"one_poem": 29.0, "batch_1024": 800.0},
            "ours": {"batch_64_poems_per_s": 300.0, "batch_1024_poems_per_s": 300.0},  # not faster per poem
        },
        "prepare": {"seconds": 61.0, "peak_rss_mb": 900.0},
        "committed": {"ratios": {"one_poem": 2.9, "batch": 1 / 26}, "peak_rss_mb": 3600.0},
    }
    targets = bench.check_targets(results)
    assert {name: target["met"] for name, target in targets.items()} == {
        "training": True,
        "training_sequence": False,
        "one_poem": False,
        "batch_1024": True,
        "batch_1024_over_64": False,
        "prepare_seconds": False,
        "prepare_peak_mb": True,
        "defaults_one_poem": True,  # at most 3x
        "defaults_batch": False,  # at least 1/25
        "defaults_peak_mb": False,  # at most 3.5 GB
    }
    del results["committed"]  # a machine without the committed model: not judged
    assert {bench.check_targets(results)[name]["met"] for name in bench.AT_MOST[2:] + ("defaults_batch",)} == {None}
    results["generation"]["ours"]["batch_1024_poems_per_s"] = 301.0
    assert bench.check_targets(results)["batch_1024_over_64"]["met"] is True


def test_the_table_shows_figures_ratios_and_targets():
    results = {
        "date": "2026-01-01 00:00 UTC",
        "quick": False,
        "sizes": {"batches": [64, 1024]},
        "machine": {
            "backend": "tensorflow",
            "backend_version": "2.21.0",
            "keras": "3.15.1",
            "devices": ["cpu:0"],
            "cpu": "a CPU",
            "cores": 2,
            "memory_gb": 24.0,
            "load_average": [0.1, 0.1, 0.1],
        },
        "model": {"vocab_size": 6000, "lstm_units": [256, 512], "dropout": 0.6, "window": 6},
        "prepare": {"seconds": 30.0, "peak_rss_mb": 800.0, "quatrains": 50_000, "train_windows": 1_000_000},
        "training": {
            "ours": {"samples_per_s": 20_000.0, "batch_size": 1024},
            "original": {"samples_per_s": 500.0, "batch_size": 32},
            "ratio": 40.0,
            "sequence": {"characters_per_s": 60_000.0, "batch_size": 512, "lstm_units": [384, 384]},
            "sequence_ratio": 120.0,
        },
        "generation": {
            "ours": {"one_poem_s": 0.02, "batch_64_poems_per_s": 300.0, "batch_1024_poems_per_s": 900.0},
            "original_loop": {"one_poem_s": 1.0, "poems_per_s": 1.0},
            "ratios": {"one_poem": 50.0, "batch_64": 300.0, "batch_1024": 900.0},
        },
        "committed": {
            "defaults": {"rerank": 16, "backward": 2.0, "reader": 0.0, "critic": 4.0},
            "one_poem_s": {"defaults": 0.12, "rerank_1": 0.04},
            "batch": 1024,
            "batch_poems_per_s": {"defaults": 30.0, "rerank_1": 800.0},
            "peak_rss_mb": 2100.0,
            "ratios": {"one_poem": 3.0, "batch": 30.0 / 800.0},
        },
        "word2vec": {"seconds": 12.5, "poems": 45_000, "epochs": 10},
    }
    results["targets"] = bench.check_targets(results)
    table = bench.format_table(results)
    assert "40.0×" in table and "20,000 (batch 1024)" in table and "500 (batch 32)" in table
    assert "50.0×" in table and "900×" in table and "≥ 600×: met" in table and "≥ 10×: met" in table
    assert "60,000 (batch 512 poems, LSTM 384 + 384)" in table and "120.0×" in table
    assert "above 64's: met" in table and "≥ 30×: met" in table
    assert "12.5 s" in table and "45,000 poems, 10 epochs" in table
    assert "rerank=1 → defaults (rerank 16, backward 2, critic 4)" in table  # the defaults that are on
    assert "40 → 120 ms" in table and "3.0×" in table and "≤ 3×: met" in table
    assert "800.0 → 30.0" in table and "1/27" in table and "≥ 1/25: not met" in table
    assert "2,100 MB" in table and "≤ 3.5 GB: met" in table
    assert "--quick" not in table


def test_the_original_input_pipeline_builds_one_hot_floats_on_the_host():
    x = np.array([[0, 1, 2], [3, 4, 5], [1, 1, 1], [2, 2, 2]], dtype=np.int32)
    y = np.array([3, 4, 5, 0], dtype=np.int32)
    features, labels = next(bench_training.one_hot_batches(x, y, vocab_size=8, batch_size=2))
    assert features.shape == (2, 3, 8) and features.dtype == np.float32
    assert labels.shape == (2, 8) and labels.dtype == np.float32
    assert (features.argmax(-1) == x[:2]).all() and (features.sum(-1) == 1).all()
    assert (labels.argmax(-1) == y[:2]).all() and (labels.sum(-1) == 1).all()


def test_quick_reads_two_collection_files_and_full_the_collections(tmp_path):
    for name in bench.QUICK_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("[]")
    assert bench.corpus_sources(tmp_path, quick=True) == [tmp_path / name for name in bench.QUICK_FILES]
    assert bench.corpus_sources(tmp_path, quick=False) == [tmp_path / "tang", tmp_path / "song"]
    assert bench.corpus_sources(TINY_CORPUS, quick=True) == [TINY_CORPUS]  # a folder of files as it is


def test_prepare_runs_in_a_child_without_the_deep_learning_framework(tmp_path, tiny_config):
    result = bench_training.measure_prepare([TINY_CORPUS / "poet.tang.0.json"], tmp_path, tiny_config)
    assert result["quatrains"] > 0 and result["train_windows"] > 0 and result["vocab_size"] > 2
    assert (tmp_path / "train.npz").is_file() and (tmp_path / "vocab.json").is_file()
    assert 0 < result["peak_rss_mb"] < 400  # Python, NumPy and OpenCC: no TensorFlow in the child


def test_cli_has_a_bench_command_with_one_line_errors(tmp_path, capsys):
    code = main(["bench", "--quick", "--corpus", str(tmp_path / "missing"), "--out", str(tmp_path / "b.json")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jueju bench: error:") and "corpus not found" in err and "\n" not in err
