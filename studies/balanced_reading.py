#!/usr/bin/env python
"""Choose defaults by a balanced blind reading (docs/results.md#choosing-the-defaults-by-reading).

    python studies/balanced_reading.py mix --form wuyan --name r12 --variants '{"old": {}, "new": {"critic": 4}}'
        [--per-set 40] [--readers 4] [--seed 12]
    python studies/balanced_reading.py read --form wuyan --name r12 --ratings docs/ratings/wuyan-2026-12-06-balanced.tsv

mix: inputs never used to fit or choose anything (the test split's first lines and titles, half
each, drawn with --seed and never drawn again by another --seed's reading of the same size), one
poem per input and variant (each variant's options over the model's defaults), cut into a Latin
square (jueju.measure.readings.balanced): each reader reads every variant on other inputs, and 20
real test quatrains. Prompts go to logs/readings/prompts/<name>-NNN.txt, for fresh readers.
read: each reader's answer (logs/readings/answers/<name>-NNN.txt, or <name>-NNN.b.txt from a second
reader of the same mix) added to --ratings, and per
reader and variant, from first lines and from titles: the mean F, C, M, P and how many of ours
were taken for human. The readers are language models; say so with the figures.
"""

import argparse
import json
import random
import shutil
from pathlib import Path

from jueju.measure import readings

LOGS = Path("logs/readings")
REAL_PER_READER = 20


def mix(args) -> None:
    from jueju.write.poet import Poet

    variants = json.loads(args.variants)
    inputs = readings.split_inputs(Path("data") / args.form, "test")
    rng = random.Random(args.seed)
    first = [item for item in inputs if item[0] == "first_line"]
    titled = [item for item in inputs if item[0] == "title"]
    rng.shuffle(first), rng.shuffle(titled)
    k, half = len(variants), args.per_set // 2
    sets = [first[j * half : (j + 1) * half] + titled[j * half : (j + 1) * half] for j in range(k)]
    chosen = [item for part in sets for item in part]
    used = {real for _, _, real in chosen}
    real_poems = [real for _, _, real in first[k * half :] if real not in used][: args.readers * REAL_PER_READER]
    real = [readings.Candidate(poem, readings.REAL, "first_line", poem.split("，")[0]) for poem in real_poems]
    poet = Poet.load(Path("models") / args.form)
    written = {
        name: [c for c in readings.pool(poet, chosen, {name: (1, options)}, args.seed) if c.variant != readings.REAL]
        for name, options in variants.items()
    }
    folders = readings.balanced(written, real, args.readers, LOGS / "mixes", args.seed, args.name)
    (LOGS / "prompts").mkdir(parents=True, exist_ok=True)
    for folder in folders:
        shutil.copy(folder / "prompt.txt", LOGS / "prompts" / f"{folder.name}.txt")
    (LOGS / "mixes" / f"{args.name}.json").write_text(json.dumps(variants, ensure_ascii=False))
    print(f"{len(folders)} prompts: {', '.join(str(LOGS / 'prompts' / (f.name + '.txt')) for f in folders)}")


def read(args) -> None:
    for answer in sorted((LOGS / "answers").glob(f"{args.name}-*.txt")):
        try:
            mix = answer.stem.split(".")[0]  # <name>-NNN.txt, or <name>-NNN.b.txt for a second reader of the mix
            result = readings.read_answer(LOGS / "mixes" / mix, answer, args.ratings, reader=answer.stem)
        except ValueError as err:  # already read
            print(err)
            continue
        print(answer.stem, result["added"], "added;", len(result["refused"]), "refused:", *result["refused"][:3])
    rows = [row for row in readings.read_ratings(args.ratings) if row["mix"].startswith(args.name + "-")]
    for kind in ("first_line", "title"):
        part = [row for row in rows if row["written_from"] == kind or row["variant"] == readings.REAL]
        print(f"\n{kind}:")
        for reader, by_variant in readings.summary(part).items():
            for variant, figures in by_variant.items():
                print(f"  {reader} {variant:12s} {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("mix", "read"))
    parser.add_argument("--form", default="wuyan", choices=("wuyan", "qiyan"))
    parser.add_argument("--name", required=True, help="the reading's name (its mixes, prompts and answers)")
    parser.add_argument("--variants", help='JSON: name -> options, e.g. {"old": {}, "new": {"critic": 4}}')
    parser.add_argument("--per-set", type=int, default=40, help="inputs per variant and reader (half titles)")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--ratings", type=Path, help="the ratings file the answers are added to")
    args = parser.parse_args()
    mix(args) if args.step == "mix" else read(args)


if __name__ == "__main__":
    main()
