"""Blind readings at scale: candidate pools, the mixes a reader is given, and the reader's answers.

A reading is how we learn what readers think of our poems (docs/results.md#readings): a fresh
reader (a person, or a language model given only the prompt) scores real poems and ours,
shuffled and unlabelled, on fluency, coherence, meaningfulness and poeticness (1-5) and guesses
who wrote each. The critic (jueju.rank.critic) learns from these judgements.

- `pool`: for each input (a first line, or a title), several of our candidates and the real poem.
- `unread`: the inputs no reader has seen, from which a reading that chooses anything draws.
- `mix`: a pool cut into mixes, one a reader; each mix folder holds `prompt.txt` (all the reader
  sees) and `key.tsv` (what each number is: never shown to a reader). Two layouts:
  `shuffled` (every poem on its own, in random order) and `grouped` (the poems of one input
  together, so that a reader compares candidates side by side).
- `read_answer`: a reader's answer, checked line by line. A line that does not parse is refused
  with its number and why; every good line is appended to the ratings file (one judgement a
  row), so nothing already collected is lost when a reader answers badly.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LAYOUTS = ("shuffled", "grouped")
SCORES = ("F", "C", "M", "P")  # fluency, coherence, meaningfulness, poeticness, each 1-5
GUESSES = ("human", "machine")
CONFIDENCE = (50, 100)
REAL = "real"  # the variant of a real poem
KEY_FIELDS = ("number", "poem", "variant", "written_from", "input")
RATING_FIELDS = (
    "poem",
    "variant",
    "written_from",
    "input",
    "reader",
    "mix",
    "layout",
    *SCORES,
    "taken_for",
    "confidence",
)

_CRITERIA = """For each poem give four scores from 1 (poor) to 5 (excellent):
- F fluency (each line reads as well-formed classical Chinese),
- C coherence (the four lines hang together as one poem with a consistent scene or thought),
- M meaningfulness (it says something; not empty word salad),
- P poeticness (imagery, craft, would a reader enjoy it),
and a guess H: "human" or "machine", with your confidence 50-100.
Use the whole scale: most poems here are neither all 1s nor all 5s.

Answer ONLY with {n} lines in exactly this format, one per poem, nothing else:
N F C M P H confidence
e.g. `7 4 3 3 3 human 70`
"""

BRIEFS = {
    "shuffled": """You are an expert reader of classical Chinese poetry (Tang and Song 绝句). Below are {n} \
quatrains. Some were written by Tang/Song poets, some by computer programs; they are shuffled and \
unlabelled. Do not use any tools or files: judge from the text alone. A poem written for a title \
shows it first, as 题：title.

""",
    "grouped": """You are an expert reader of classical Chinese poetry (Tang and Song 绝句). Below are {n} \
quatrains in groups. The poems of one group share a first line, or were written for the same title \
(shown as 题：title). Some were written by Tang/Song poets, some by computer programs; they are \
unlabelled and in random order within each group. Do not use any tools or files: judge from the text \
alone. Compare the poems of a group with each other: score each on its own merits, but let the \
scores show which of them are better (poems of one group often differ).

""",
}


@dataclass(frozen=True)
class Candidate:
    """One poem to be read: its text, how it was made (`variant`: real, or ours and how) and from what."""

    poem: str
    variant: str
    written_from: str  # first_line or title
    input: str  # the first line or the title it was written from


class AnswerError(ValueError):
    """A reader's answer line that does not parse: its 1-based line number and why."""

    def __init__(self, line: int, text: str, why: str):
        super().__init__(f"line {line}: {why}: {text!r}")
        self.line, self.text, self.why = line, text, why


def pairs_in_order(score, truth, groups) -> tuple[float, int]:
    """Of two poems of one group (e.g. one reader's judgements of poems from one input) that `truth`
    orders (scores them differently), the share `score` orders the same way; and how many such pairs."""
    by_group: dict = {}
    for index, group in enumerate(groups):
        by_group.setdefault(group, []).append(index)
    agree = total = 0
    for members in by_group.values():
        for a, i in enumerate(members):
            for j in members[a + 1 :]:
                if truth[i] != truth[j]:
                    total += 1
                    agree += (score[i] - score[j]) * (truth[i] - truth[j]) > 0
    return (agree / total if total else float("nan")), total


def groups_of(candidates: Iterable[Candidate]) -> dict[tuple[str, str], list[Candidate]]:
    """Candidates by (written_from, input), in first-seen order."""
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault((candidate.written_from, candidate.input), []).append(candidate)
    return groups


def mix(
    candidates: Sequence[Candidate], out: str | Path, layout: str, groups_per_mix: int, seed: int, name: str = "mix"
) -> list[Path]:
    """Cut `candidates` into mixes of `groups_per_mix` inputs each (every candidate of an input in one
    mix) and write each as out/<name>-NNN/{prompt.txt,key.tsv}; returns the folders."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if groups_per_mix < 1:
        raise ValueError(f"groups_per_mix must be at least 1, got {groups_per_mix}")
    rng = random.Random(seed)
    groups = list(groups_of(candidates).values())
    rng.shuffle(groups)
    folders = []
    for index in range(0, len(groups), groups_per_mix):
        chosen = [rng.sample(group, len(group)) for group in groups[index : index + groups_per_mix]]
        folder = Path(out) / f"{name}-{index // groups_per_mix:03d}"
        write_mix(folder, chosen, layout, rng)
        folders.append(folder)
    return folders


def balanced(
    variants: dict[str, list[Candidate]], real: list[Candidate], readers: int, out: str | Path, seed: int, name: str
) -> list[Path]:
    """A balanced reading of k variants (name -> one candidate per input, the same inputs in the same
    order for every variant): the inputs cut into k sets, and reader r reads variant i on set
    (i + r) mod k, so that every reader reads every variant, each on other inputs, and every set is
    read in every variant. Each mix also holds len(real) // readers real poems. Shuffled layout."""
    names = list(variants)
    count = len(variants[names[0]])
    if any(len(candidates) != count for candidates in variants.values()):
        raise ValueError("every variant needs one candidate per input, the same inputs for all")
    k, rng = len(names), random.Random(seed)
    sets = [range(count * j // k, count * (j + 1) // k) for j in range(k)]
    share = len(real) // readers
    folders = []
    for reader in range(readers):
        chosen = [variants[names[i]][row] for i in range(k) for row in sets[(i + reader) % k]]
        chosen += real[reader * share : (reader + 1) * share]
        folder = Path(out) / f"{name}-{reader:03d}"
        write_mix(folder, [[candidate] for candidate in chosen], "shuffled", rng)
        folders.append(folder)
    return folders


def summary(rows: Sequence[dict]) -> dict:
    """Per reader, per variant: the mean of each score, how many were taken for human, and how many."""
    table: dict = {}
    for row in rows:
        table.setdefault(row["reader"], {}).setdefault(row["variant"], []).append(row)
    return {
        reader: {
            variant: {
                **{name: round(sum(r[name] for r in mine) / len(mine), 2) for name in SCORES},
                "human": sum(r["taken_for"] == "human" for r in mine),
                "n": len(mine),
            }
            for variant, mine in sorted(by_variant.items())
        }
        for reader, by_variant in sorted(table.items())
    }


def write_mix(folder: Path, groups: list[list[Candidate]], layout: str, rng: random.Random) -> None:
    """One reader's prompt and its key: the poems numbered from 1 in the layout's order."""
    if layout == "shuffled":
        order = [[candidate] for group in groups for candidate in group]
        rng.shuffle(order)
    else:
        order = groups
    lines, key, number = [], [], 0
    for index, group in enumerate(order):
        if layout == "grouped":
            lines.append(f"\n## Group {index + 1}\n")
        for candidate in group:
            number += 1
            shown = f"题：{candidate.input}　" if candidate.written_from == "title" else ""
            lines.append(f"{number}. {shown}{candidate.poem}\n")
            key.append((number, candidate.poem, candidate.variant, candidate.written_from, candidate.input))
    folder.mkdir(parents=True, exist_ok=True)
    brief = BRIEFS[layout].format(n=number) + _CRITERIA.format(n=number) + "\nPoems:\n"
    (folder / "prompt.txt").write_text(brief + "".join(lines), encoding="utf-8")
    with open(folder / "key.tsv", "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n")
        writer.writerow(KEY_FIELDS)
        writer.writerows(key)


def read_key(folder: str | Path) -> list[Candidate]:
    """The candidates of a mix, in the order of their numbers (1 first)."""
    with open(Path(folder) / "key.tsv", encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    return [Candidate(row["poem"], row["variant"], row["written_from"], row["input"]) for row in rows]


def parse_answer(text: str, count: int) -> tuple[dict[int, tuple], list[AnswerError]]:
    """A reader's answer to a mix of `count` poems: number -> (F, C, M, P, guess, confidence) for
    every line that parses, and an AnswerError for every one that does not (blank lines and a
    line of only back-quotes are skipped). A number answered twice keeps its first answer."""
    answers: dict[int, tuple] = {}
    errors = []
    for line_number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip().strip("`").strip()
        if not stripped:
            continue
        try:
            number, values = _parse_line(stripped, count)
            if number in answers:
                raise ValueError(f"poem {number} answered twice (the first answer is kept)")
            answers[number] = values
        except ValueError as err:
            errors.append(AnswerError(line_number, line, str(err)))
    return answers, errors


def _parse_line(line: str, count: int) -> tuple[int, tuple]:
    fields = line.replace("\t", " ").split()
    if len(fields) != 7:
        raise ValueError(f"expected 7 fields (N F C M P H confidence), got {len(fields)}")
    number, *scores, guess, confidence = fields
    if not number.isdigit() or not 1 <= int(number) <= count:
        raise ValueError(f"N must be a poem number from 1 to {count}, got {number!r}")
    for name, score in zip(SCORES, scores):
        if score not in {"1", "2", "3", "4", "5"}:
            raise ValueError(f"{name} must be a whole number from 1 to 5, got {score!r}")
    if guess.lower() not in GUESSES:
        raise ValueError(f"H must be {' or '.join(GUESSES)}, got {guess!r}")
    low, high = CONFIDENCE
    if not confidence.isdigit() or not low <= int(confidence) <= high:
        raise ValueError(f"confidence must be a whole number from {low} to {high}, got {confidence!r}")
    return int(number), (*map(int, scores), guess.lower(), int(confidence))


def read_answer(folder: str | Path, answer: str | Path, ratings: str | Path, reader: str | None = None) -> dict:
    """Check a reader's answer to the mix in `folder` and append every good line to `ratings` (a TSV
    with a header row; made if missing). Returns counts and the refused lines; answers of the same
    reader to the same mix already in `ratings` are not added twice."""
    folder = Path(folder)
    key = read_key(folder)
    answers, errors = parse_answer(Path(answer).read_text(encoding="utf-8"), len(key))
    reader = reader or Path(answer).stem
    ratings = Path(ratings)
    done = {(row["reader"], row["mix"]) for row in read_ratings(ratings)} if ratings.is_file() else set()
    if (reader, folder.name) in done:
        raise ValueError(f"{ratings} already holds reader {reader!r}'s answers to {folder.name}")
    rows = [
        (c.poem, c.variant, c.written_from, c.input, reader, folder.name, _layout(folder), *answers[n])
        for n, c in enumerate(key, 1)
        if n in answers
    ]
    new = not ratings.is_file()
    with open(ratings, "a", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n")
        if new:
            writer.writerow(RATING_FIELDS)
        writer.writerows(rows)
    missing = [n for n in range(1, len(key) + 1) if n not in answers]
    return {"added": len(rows), "refused": errors, "missing": missing}


def _layout(folder: Path) -> str:
    brief = (folder / "prompt.txt").read_text(encoding="utf-8")
    return "grouped" if "## Group 1\n" in brief else "shuffled"


def write_pool(path: str | Path, candidates: Iterable[Candidate]) -> None:
    """A pool of candidates as a TSV (poem, variant, written_from, input), a header row first."""
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n")
        writer.writerow(KEY_FIELDS[1:])
        writer.writerows((c.poem, c.variant, c.written_from, c.input) for c in candidates)


def read_pool(path: str | Path) -> list[Candidate]:
    with open(path, encoding="utf-8", newline="") as file:
        return [Candidate(**row) for row in csv.DictReader(file, delimiter="\t")]


def read_ratings(path: str | Path) -> list[dict]:
    """The rows of a ratings file, scores as ints."""
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    for row in rows:
        for name in (*SCORES, "confidence"):
            row[name] = int(row[name])
    return rows


DRAWS = {"default": (1, {}), "draw": (7, {"rerank": 1})}  # the pools the critic learns from: the model's
# defaults, and single draws (the candidates reranking chooses among)


def pool(
    poet, inputs: Sequence[tuple[str, str, str]], variants: dict[str, tuple[int, dict]], seed: int, chunk: int = 64
) -> list[Candidate]:
    """For each input (written_from, input, real poem): the real poem and, per variant (name ->
    (copies, options)), `copies` poems written with those options (the rest the model's defaults),
    each variant from its own seed; a poem written twice for one input is read once (the first
    variant keeps it). Written `chunk` inputs at a time."""
    candidates = []
    for start in range(0, len(inputs), chunk):
        part = inputs[start : start + chunk]
        written = {
            name: _write(poet, part, copies, seed + start + 1_000_003 * k, options)
            for k, (name, (copies, options)) in enumerate(variants.items())
        }
        for index, (written_from, given, real) in enumerate(part):
            candidates.append(Candidate(real, REAL, written_from, given))
            seen = {real}
            for name, (copies, _) in variants.items():
                for poem in written[name][index * copies : (index + 1) * copies]:
                    if poem not in seen:
                        seen.add(poem)
                        candidates.append(Candidate(poem, name, written_from, given))
    return candidates


def split_inputs(data_dir: str | Path, split: str, titled: bool = True) -> list[tuple[str, str, str]]:
    """(written_from, input, real poem) for every poem of a data split (data/<form>/<split>.txt): its
    first line; and, with `titled`, its title where titles.tsv has a usable one (2-12 characters)."""
    data_dir = Path(data_dir)
    poems = [line.strip() for line in open(data_dir / f"{split}.txt", encoding="utf-8") if line.strip()]
    titles = {}
    if titled:
        with open(data_dir / "titles.tsv", encoding="utf-8") as file:
            titles = dict(line.rstrip("\n").split("\t", 1) for line in file if "\t" in line)
    inputs = [("first_line", poem.split("，", 1)[0], poem) for poem in poems]
    inputs += [("title", titles[poem], poem) for poem in poems if 2 <= len(titles.get(poem, "")) <= 12]
    return inputs


def unread(inputs: Sequence[tuple[str, str, str]], ratings: Iterable[str | Path]) -> list[tuple[str, str, str]]:
    """The inputs (written_from, input, real poem) that no ratings file names: neither the input nor its
    real poem was ever before a reader. A reading that chooses or judges anything draws from these,
    so that no reader has seen a poem of its inputs (older files without a reader column included)."""
    seen: set[str] = set()
    for path in ratings:
        with open(path, encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file, delimiter="\t"):
                seen.update((row["input"], row["poem"]))
    return [item for item in inputs if seen.isdisjoint(item[1:])]


def _write(poet, inputs, copies: int, seed: int, options: dict) -> list[str]:
    """`copies` poems per input, first-line inputs and title inputs each in one batch, in input order."""
    import numpy as np

    written: dict[int, list[str]] = {}
    for kind in ("first_line", "title"):
        rows = [i for i, (written_from, _, _) in enumerate(inputs) if written_from == kind]
        if not rows:
            continue
        repeated = [inputs[i][1] for i in rows for _ in range(copies)]
        if kind == "first_line":
            poems = poet.batch(repeated, seed=seed, **options)
        else:
            blocks = np.concatenate([poet.blocks(1, poet.title(title)) for title in repeated])
            empty = [poet.preprocessor.template({})] * len(repeated)
            poems = poet.batch(templates=empty, blocks=blocks, seed=seed, **options)
        for n, i in enumerate(rows):
            written[i] = poems[n * copies : (n + 1) * copies]
    return [poem for i in range(len(inputs)) for poem in written[i]]
