"""The context-length study on the tiny corpus: every variant trained, timed and scored; its table and JSON."""

import math

import pytest

from jueju.cli import main
from jueju.config import load_config
from jueju.data.pipeline import prepare
from jueju.measure.study import format_study, run_study, variants

from conftest import tiny_overrides


def test_variants_of_each_form():
    five, seven = (variants(load_config(overrides=[f"corpus.line_length={n}"])) for n in (5, 7))
    assert list(five.values()) == [6, 12, 23, None] and list(seven.values()) == [6, 12, 31, None]


@pytest.mark.slow
def test_every_variant_is_trained_and_scored(tmp_path):
    config = load_config(overrides=tiny_overrides(tmp_path))
    prepare(config)
    results = run_study(config, seconds=0.5)
    rows = results["variants"]
    assert list(rows) == list(variants(config))
    vocab_han = 400  # an untrained-ish model is near uniform: far below the vocabulary's size, never above it
    for row in rows.values():
        assert row["steps"] >= 1 and row["targets_seen"] == row["steps"] * row["targets_per_step"]
        assert 1 < row["valid_perplexity"] < vocab_han and math.isfinite(row["valid_perplexity"])
    assert rows["sequence"]["targets_per_step"] == 24 * rows["sequence"]["batch_size"]
    assert rows["window 6"]["train_samples"] == rows["sequence"]["train_targets"]  # the same targets, cut two ways
    table = format_study(results)
    assert table.count("\n| ") == 5 and "trigram KN" in table  # header + 4 variants


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    sets = [arg for item in tiny_overrides(tmp_path) for arg in ("--set", item)]
    assert main([*sets, "study-context", "--seconds", "0"]) == 2
    assert "--seconds must be a positive number, got 0.0" in capsys.readouterr().err
    assert main([*sets, "study-context", "--seconds", "1", "--only", "window 7"]) == 2
    assert "unknown study variant 'window 7'; valid: window 6, window 12" in capsys.readouterr().err
