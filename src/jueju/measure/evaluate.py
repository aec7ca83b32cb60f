"""Evaluation on the held-out test split: `jueju evaluate`, all the measures in one run.

`run_evaluation` measures perplexity against a trigram baseline (jueju.measure.perplexity),
generation metrics (jueju.measure.metrics) and what the conditions keep
(jueju.measure.conditions), and returns a JSON-able dict; `format_table` prints it and
`write_results` saves it.
"""

from __future__ import annotations

import json
from pathlib import Path

from jueju.data.dataset import read_poems
from jueju.files import write_atomic
from jueju.measure.conditions import (
    _titles,
    condition_metrics,
    keyword_metrics,
    rerank_metrics,
    template_metrics,
)
from jueju.measure.metrics import (
    form_pattern,
    generate_batch,
    generation_metrics,
)
from jueju.measure.perplexity import (
    poet_perplexity,
    scored_targets,
    trigram_kn,
    trigram_perplexity,
)
from jueju.text import split_lines

# Named generation settings (Poet.poems keyword arguments); options not named come from
# the model's [generate] config (sampler, temperature, no_repeat, ...). Rhyme, tones and
# no_copy are spelled out so that "sample" really is unconstrained sampling whatever the
# config says, and no_copy is off so that the copy rate measures the model, not the filter.
DEFAULT_MODES: dict[str, dict] = {
    "sample": {"rhyme": "none", "tonal": False, "no_copy": False},
    "rhyme": {"rhyme": "pingshui", "tonal": False, "no_copy": False},
    "rhyme+tone": {"rhyme": "pingshui", "tonal": True, "no_copy": False},
}


def run_evaluation(
    model_dir, data_dir, modes: dict[str, dict] | None = None, limit: int | None = None, seed: int = 0
) -> dict:
    """Evaluate the model in `model_dir` on `data_dir`/test.txt (the training split: train.txt).

    modes: {name: Poet.poems options} (default DEFAULT_MODES); limit: only the first N test
    poems; seed: the seed of every generated poem (one per test poem, the same across modes).
    Returns {"perplexity": {...}, "generation": {mode: metrics, ..., "real": metrics},
    "test_poems": n, ...}, all JSON-able.
    """
    from jueju.write.poet import Poet  # here, not at the top: the rest of this module runs without Keras

    model_dir, data_dir = Path(model_dir), Path(data_dir)
    modes = DEFAULT_MODES if modes is None else modes
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    for name in ("test.txt", "train.txt"):
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"no {name} in {data_dir}: prepare the data set with `jueju prepare`")
    poet = Poet.load(model_dir)
    vocab, config, line_length = poet.vocab, poet.config, poet.line_length
    test = read_poems(data_dir / "test.txt")[:limit]
    train = read_poems(data_dir / "train.txt")
    if not test:
        raise ValueError(f"the test split {data_dir / 'test.txt'} is empty: raise dataset.test_fraction")
    pattern = form_pattern(line_length)
    if not all(pattern.fullmatch(poem) for poem in test):
        raise ValueError(
            f"the test poems in {data_dir} are not all {line_length}-character quatrains: "
            "is this the data set of another form?"
        )

    _, mask, unknown = scored_targets(vocab, test)
    kn = trigram_kn(train, vocab)
    perplexity = {
        "lstm": poet_perplexity(poet, test),
        "trigram_kn": trigram_perplexity(kn, vocab, test),
        "targets": int(mask.sum()),
        "oov_targets": unknown,
        "han_tokens": int(len(vocab.han_ids())),
    }

    train_lines = {line for poem in train for line in split_lines(poem)}
    first_lines = [split_lines(poem)[0] for poem in test]
    generation, samples = {}, {}
    for name, options in modes.items():
        if "seed" in options:
            raise ValueError(f"mode {name!r} sets a seed: give run_evaluation's seed instead")
        poems = generate_batch(poet, first_lines, options, seed)
        kept = [(poem, real) for poem, real in zip(poems, test) if poem is not None]
        metrics = generation_metrics([p for p, _ in kept], [r for _, r in kept], train_lines, line_length)
        metrics["failed"] = len(poems) - len(kept)
        generation[name], samples[name] = metrics, [p for p, _ in kept[:3]]
    generation["real"] = generation_metrics(test, None, train_lines, line_length)
    return {
        "perplexity": perplexity,
        "generation": generation,
        "templates": template_metrics(poet, test, seed) if config.dataset.pad_start else None,
        "keywords": keyword_metrics(poet, test, train, seed) if config.dataset.pad_start else None,
        "conditioning": condition_metrics(
            poet, test, _titles(data_dir, len(read_poems(data_dir / "test.txt"))), train, seed
        )
        if poet.conditioned
        else None,
        "reranking": rerank_metrics(poet, test, seed),
        "test_poems": len(test),
        "modes": {name: dict(options) for name, options in modes.items()},
        "seed": seed,
        "model_dir": str(model_dir),
        "data_dir": str(data_dir),
        "samples": samples,
    }


COLUMNS = [
    ("format", "format"),
    ("rhyme_pingshui", "rhyme ps"),
    ("rhyme_xin", "rhyme xin"),
    ("tonal", "tonal"),
    ("tonal_234", "tonal 2-4"),
    ("distinct_1", "dist-1"),
    ("distinct_2", "dist-2"),
    ("copy_rate", "copy"),
    ("bleu_2", "BLEU-2"),
]


def format_table(results: dict) -> str:
    """A plain-text table (modes as rows, metrics as columns) and the perplexity lines."""
    ppl = results["perplexity"]
    lines = [
        f"test poems: {results['test_poems']}",
        f"perplexity per Han character of lines 2-4 given line 1 ({ppl['targets']} characters, "
        f"{ppl['oov_targets']} unknown left out; renormalised over {ppl['han_tokens']} Han tokens):",
        f"  LSTM        {ppl['lstm']:10.2f}",
        f"  trigram KN  {ppl['trigram_kn']:10.2f}",
        "",
    ]
    rows = [["mode", *(title for _, title in COLUMNS)]]
    for mode, metrics in results["generation"].items():
        rows.append([mode, *(_cell(metrics, key) for key, _ in COLUMNS)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(
        "rhyme: lines 2 and 4, over the poems judged (n); tonal: any standard pattern, lenient; "
        "copy: lines 2-4 found in the training corpus"
    )
    kept = results.get("templates")
    if kept:
        lines.append(
            f"templates ({kept['keep_share']:.0%} of each test poem's characters kept, rhyme on; "
            f"{kept['poems']} poems, {kept['failed']} failed): kept in place {kept['kept_in_place']:.3f}, "
            f"format {kept['format']:.3f}, rhyme {kept['rhyme_pingshui']:.3f}"
        )
    words = results.get("keywords")
    if words:
        lines.append(
            f"keywords (two drawn from each of {words['poems']} test poems, rhyme on): present "
            f"{words['keywords_present']:.3f}, format {words['format']:.3f}, rhyme {words['rhyme_pingshui']:.3f}; "
            f"log-probability per position {words['log_prob_per_position']:.3f} "
            f"(without keywords {words['log_prob_per_position_without_keywords']:.3f})"
        )
    return "\n".join(lines)


def _cell(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    text = "-" if value is None else f"{value:.3f}"
    judged = metrics.get(f"{key}_judged")
    return f"{text} ({judged})" if judged is not None else text


def write_results(results: dict, path) -> None:
    """The results as JSON (UTF-8, characters as written), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(results, ensure_ascii=False, indent=2) + "\n")
