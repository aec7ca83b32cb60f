#!/usr/bin/env python
"""A generator that learns from the critic: fine-tune the forward model on its own critic-chosen poems
(docs/results.md#a-generator-that-learns-from-the-critic).

    python studies/self_training.py write --form wuyan --inputs 6000 [--seed 7]
    jueju train --set paths.data_dir=logs/self_training/data --finetune models/wuyan/model.keras \\
        --out models/wuyan-tuned --set train.epochs=2 --set train.learning_rate=0.0002
    python studies/self_training.py measure --form wuyan --models models/wuyan models/wuyan-tuned

write: poems at the model's committed defaults (16 candidates, the critic choosing) from inputs of the
training split (half first lines, half titles, drawn with --seed), and a data folder
(logs/self_training/data/<form>) that reads like data/<form> except that its training samples are
the real training quatrains (with their conditioning blocks) followed by the chosen poems (after
their title's block, or none): `jueju train` fine-tunes on it with train.quatrains_only, as the
last stage of the committed model was trained. The rest of the data folder (vocabulary, splits,
validation, manifest) is linked, so validation and copy checks stay on real poems.

measure: for each model folder, its unconditioned perplexity on the test quatrains, and over poems
written at its defaults from 400 validation first lines: distinct-2 and the share of lines copied
from the training split (jueju.measure.metrics), the measures the issue bounds.
"""

import argparse
import json
import random
from pathlib import Path

import numpy as np

from jueju.data import condition
from jueju.data.dataset import Vocab, Windows, encode_poems, make_sequences
from jueju.measure import readings

OUT = Path("logs/self_training")
MEASURE_INPUTS = 400  # validation first lines each model writes from, for distinct-2 and copies


def write(args) -> None:
    from jueju.write.poet import Poet

    source = Path("data") / args.form
    inputs = readings.split_inputs(source, "train")
    rng = random.Random(args.seed)
    first = [item for item in inputs if item[0] == "first_line"]
    titled = [item for item in inputs if item[0] == "title"]
    rng.shuffle(first), rng.shuffle(titled)
    chosen = first[: args.inputs // 2] + titled[: args.inputs - args.inputs // 2]
    poet = Poet.load(Path("models") / args.form)
    written = [
        c for c in readings.pool(poet, chosen, {"chosen": (1, {})}, args.seed, chunk=256) if c.variant != readings.REAL
    ]
    folder = OUT / "data" / args.form
    folder.mkdir(parents=True, exist_ok=True)
    readings.write_pool(OUT / f"{args.form}-chosen.tsv", written)
    vocab = Vocab.load(source / "vocab.json")
    counts = json.loads((source / "dataset.json").read_text("utf-8"))
    real = Windows.load(source / "train.npz")
    quatrains = counts["train_quatrains"]  # the real quatrains come first, the stanza cuts after
    real_blocks = np.load(source / condition.BLOCKS, allow_pickle=False)[:quatrains]
    x, y = make_sequences(encode_poems([c.poem for c in written], vocab), counts["pad_start"])
    blocks = np.stack([condition.block_ids(vocab, c.input if c.written_from == "title" else "") for c in written])
    Windows(np.concatenate([real.x[:quatrains], x]), np.concatenate([real.y[:quatrains], y])).save(folder / "train.npz")
    np.save(folder / condition.BLOCKS, np.concatenate([real_blocks, blocks]))
    rows = quatrains + len(written)
    counts |= {"train_quatrains": rows, "train_poems": rows, "train_samples": rows, "chosen": len(written)}
    (folder / "dataset.json").write_text(json.dumps(counts))
    for path in source.iterdir():
        if not (folder / path.name).exists():
            (folder / path.name).symlink_to(path.resolve())
    print(f"{len(written)} chosen poems and {quatrains} real quatrains in {folder}")


def measure(args) -> None:
    from jueju.data.dataset import read_poems
    from jueju.measure.metrics import copy_rate, distinct
    from jueju.measure.perplexity import poet_perplexity
    from jueju.text import split_lines
    from jueju.write.poet import Poet

    source = Path("data") / args.form
    test = read_poems(source / "test.txt")
    first_lines = [poem.split("，", 1)[0] for poem in read_poems(source / "valid.txt")][:MEASURE_INPUTS]
    train_lines = {line for poem in read_poems(source / "train.txt") for line in split_lines(poem)}
    results = {}
    for model_dir in args.models:
        poet = Poet.load(model_dir)
        poems = poet.batch(first_lines, seed=args.seed)
        results[model_dir] = {
            "perplexity": poet_perplexity(poet, test),
            "distinct_2": distinct(poems, 2),
            "copied_lines": copy_rate(poems, train_lines),
        }
        print(model_dir, results[model_dir], flush=True)
    (OUT / f"{args.form}-measure.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("write", "measure"))
    parser.add_argument("--form", default="wuyan", choices=("wuyan", "qiyan"))
    parser.add_argument("--inputs", type=int, default=6000, help="training inputs to write from (write)")
    parser.add_argument("--models", nargs="+", default=[], help="model folders to compare (measure)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    {"write": write, "measure": measure}[args.step](args)


if __name__ == "__main__":
    main()
