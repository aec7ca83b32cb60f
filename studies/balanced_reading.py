#!/usr/bin/env python
"""Choose defaults by a balanced blind reading (docs/results.md#choosing-the-defaults-by-reading).

    python studies/balanced_reading.py mix --form wuyan --name r12 --variants '{"old": {}, "new": {"critic": 4}}'
        [--per-set 40] [--readers 4] [--seed 12]
    python studies/balanced_reading.py read --form wuyan --name r12 --ratings docs/ratings/wuyan-2026-12-06-balanced.tsv

mix: inputs never used to fit or choose anything (the test split's first lines and titles, half
each, drawn with --seed among those whose input and real poem no ratings file in docs/ratings holds),
one poem per input and variant (each variant's options over the model's defaults; a variant's
"model" names another model folder to write with), cut into a Latin square
(jueju.measure.readings.balanced): each reader reads every variant on other inputs, and 20 real
test quatrains. Prompts go to logs/readings/prompts/<name>-NNN.txt, for fresh readers.
read: each reader's answer (logs/readings/answers/<name>-NNN.txt, or <name>-NNN.b.txt from a second
reader of the same mix) added to --ratings; then per variant, from first lines and from titles, the
mean F, C, M, P over every reader (C's lowest and highest reader in brackets), how many were taken
for human, and the distinct-2 of the poems read. The readers are language models; say so with the
figures.
"""

import argparse
import json
import random
import shutil
from pathlib import Path

from jueju.measure import readings
from jueju.measure.metrics import distinct

LOGS = Path("logs/readings")
RATINGS = Path("docs/ratings")
REAL_PER_READER = 20


def mix(args) -> None:
    from jueju.write.poet import Poet

    variants = json.loads(args.variants)
    inputs = readings.unread(readings.split_inputs(Path("data") / args.form, "test"), RATINGS.glob(f"{args.form}*.tsv"))
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
    poets = {}  # model folder -> Poet, each loaded once
    written = {}
    for name, options in variants.items():
        options = dict(options)
        folder = options.pop("model", str(Path("models") / args.form))
        if folder not in poets:
            poets[folder] = Poet.load(folder)
        poet = poets[folder]
        pool = readings.pool(poet, chosen, {name: (1, options)}, args.seed)
        written[name] = [c for c in pool if c.variant != readings.REAL]
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
        print(f"\n{kind}: per variant, over every reader (C: the lowest and highest reader's mean in brackets)")
        by_reader = readings.summary(part)
        for variant in dict.fromkeys(row["variant"] for row in part):
            mine = [row for row in part if row["variant"] == variant]
            means = {name: sum(row[name] for row in mine) / len(mine) for name in readings.SCORES}
            per_reader = [figures[variant]["C"] for figures in by_reader.values() if variant in figures]
            human = sum(row["taken_for"] == "human" for row in mine)
            spread = f"C {means['C']:.2f} ({min(per_reader):.2f}-{max(per_reader):.2f})"
            scores = " ".join(f"{name} {means[name]:.2f}" for name in readings.SCORES if name != "C")
            poems = list(dict.fromkeys(row["poem"] for row in mine))
            print(f"  {variant:12s} {spread} {scores} human {human}/{len(mine)} distinct-2 {distinct(poems, 2):.3f}")


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
