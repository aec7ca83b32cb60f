"""The benchmark's measurements of writing poems: our Poet against the original's per-character loop, and
the committed model as users get it.

- generation  one poem (latency) and 64 and 1024 poems in one batch (poems/s) with jueju.write.poet.Poet
              (decoding on the device, jueju.write.device_loop) on the benchmark's model, against the
              original's loop: one model.predict call on a one-hot window per character per poem.
- committed   the committed model (models/wuyan) at its defaults (config.json: candidates, backward model,
              reader, critic) and at rerank=1: one poem, and 1,024 first lines in one Poet.batch, in a child
              process whose peak resident memory is the call's (`python -m jueju.measure.bench_generation`).

jueju.measure.bench runs them and reports.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

from jueju.config import Config
from jueju.measure.bench_training import our_model_spec

FIRST_LINE = "白日依山尽"


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


# -- the committed model, as users get it ----------------------------------------------------------------------

COMMITTED_CHILD = "jueju.measure.bench_generation"  # `python -m` this module: the measurement in a child of its own


def measure_committed(model_dir, train_poems: list[str], line_length: int, sizes: dict) -> dict:
    """The committed model at its defaults and at rerank=1, in a child process (`committed_rows`); the
    batch's first lines are the corpus's. Skipped, with the reason, where there is no committed model."""
    from jueju.measure.bench_training import run_child

    if not (model_dir / "model.keras").is_file():
        return {"skipped": f"no committed model in {model_dir}"}
    poems = [poem for poem in train_poems if len(poem) == 4 * (line_length + 1)]  # quatrains of this form
    lines = list(dict.fromkeys(poem[:line_length] for poem in poems))
    first_lines = [lines[i % len(lines)] for i in range(sizes["committed_batch"])]
    args = {"model_dir": str(model_dir), "first_lines": first_lines, "repeats": sizes["poem_repeats"]}
    return run_child(COMMITTED_CHILD, args, "measuring the committed model")


def committed_rows(model_dir: str, first_lines: list[str], repeats: int) -> dict:
    """One poem (the median of `repeats`, the two settings taking turns) and all `first_lines` in one
    Poet.batch, at the model's defaults and at rerank=1; then the peak resident memory of this process."""
    from jueju.measure.bench_prepare import peak_rss_kb
    from jueju.model.stepper import CHUNK
    from jueju.write.poet import Poet

    poet = Poet.load(model_dir)
    defaults = {name: poet.settings({})[name] for name in ("rerank", "backward", "reader", "critic")}
    settings = {"defaults": {}, "rerank_1": {"rerank": 1}}
    for options in settings.values():  # every compiled call traced, at the sizes timed: one chunk of candidates
        poet.poem(FIRST_LINE, seed=0, **options)
        poet.batch(first_lines[: max(1, CHUNK // poet.settings(options)["rerank"])], seed=0, **options)
    one_poem = {name: [] for name in settings}
    for repeat in range(repeats):
        for name, options in settings.items():
            started = time.perf_counter()
            poet.poem(FIRST_LINE, seed=repeat, **options)
            one_poem[name].append(time.perf_counter() - started)
    batch = {}
    for name, options in settings.items():
        started = time.perf_counter()
        poet.batch(first_lines, seed=1, **options)
        batch[name] = len(first_lines) / (time.perf_counter() - started)
    one_poem = {name: statistics.median(times) for name, times in one_poem.items()}
    return {
        "model_dir": model_dir,
        "defaults": defaults,
        "one_poem_s": one_poem,
        "batch": len(first_lines),
        "batch_poems_per_s": batch,
        "peak_rss_mb": peak_rss_kb() / 1024,
        "ratios": {
            "one_poem": one_poem["defaults"] / one_poem["rerank_1"],
            "batch": batch["defaults"] / batch["rerank_1"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    """The child's entry: `python -m jueju.measure.bench_generation '{"model_dir": ..., ...}'` prints one JSON line."""
    args = json.loads((sys.argv[1:] if argv is None else argv)[0])
    print(json.dumps(committed_rows(args["model_dir"], args["first_lines"], args["repeats"]), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
