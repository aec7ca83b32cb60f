"""The data set: vocabulary, train/valid/test split, and the samples the trainer reads.

Two layouts of samples (dataset.context):
- window:   every run of `window` ids -> the id after it, cut from all poems at once
            with a strided view (the original's layout; window 23 = the whole poem before
            each character of a 五言 quatrain, left-padded);
- sequence: each poem one sample, read from a <pad> start token, with a target at
            every position (the model sees the whole poem before each character, and
            one pass over the poem trains all its positions).
Everything here is integer NumPy, never one-hot or word-vector arrays on the host.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jueju.files import atomic_path, write_atomic
from jueju.text import HAN

PAD, UNK = "<pad>", "<unk>"
RESERVED = (PAD, UNK)
PAD_ID, UNK_ID = 0, 1


class Vocab:
    """Characters <-> ids: reserved tokens first, then characters by descending frequency."""

    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[: len(RESERVED)]) != RESERVED:
            raise ValueError(f"a vocabulary must start with {RESERVED}, got {tuple(tokens[:2])}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary must not repeat a token")
        self.tokens = list(tokens)
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        # code point -> id, so whole corpora encode in one NumPy gather
        chars = {ord(token): i for token, i in self.ids.items() if len(token) == 1}
        self._by_code = np.full(max(chars, default=0) + 1, UNK_ID, dtype=np.int32)
        self._by_code[list(chars)] = list(chars.values())

    @classmethod
    def build(cls, texts: Iterable[str], size: int, markers: Sequence[str] = ()) -> Vocab:
        """The reserved tokens, `markers` (condition.TOKENS for a conditioned model), then the most
        frequent characters up to `size` tokens in all (ties by code point, so builds are reproducible)."""
        counts = Counter(char for text in texts for char in text)
        ranked = sorted(counts, key=lambda char: (-counts[char], char))
        return cls([*RESERVED, *markers, *ranked[: size - len(RESERVED) - len(markers)]])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, char: str) -> bool:
        return char in self.ids

    def encode(self, text: str) -> np.ndarray:
        """Ids of the characters of `text`; characters outside the vocabulary become <unk>."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        known = codes < len(self._by_code)
        return np.where(known, self._by_code[np.where(known, codes, 0)], UNK_ID).astype(np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[int(i)] for i in ids)

    def han_ids(self) -> np.ndarray:
        """Ids of the Han characters: the only tokens a poem line may contain."""
        return np.array([i for i, token in enumerate(self.tokens) if HAN.fullmatch(token)], dtype=np.int32)

    def save(self, path: str | Path) -> None:
        write_atomic(path, json.dumps({"tokens": self.tokens}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        return cls(json.loads(Path(path).read_text("utf-8"))["tokens"])


def split_poems(
    quatrains: Sequence[str], stanzas: Sequence[str], valid_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Valid and test hold only real quatrains; train the rest plus the stanza cuts.

    Split by poem with a fixed seed, and no poem text in two splits.
    """
    unique = list(dict.fromkeys(quatrains))
    order = np.random.default_rng(seed).permutation(len(unique))
    n_test, n_valid = round(len(unique) * test_fraction), round(len(unique) * valid_fraction)
    test = [unique[i] for i in order[:n_test]]
    valid = [unique[i] for i in order[n_test : n_test + n_valid]]
    train = [unique[i] for i in order[n_test + n_valid :]]
    seen = set(unique)  # a stanza equal to any quatrain would leak into (or repeat) a split
    train += [poem for poem in dict.fromkeys(stanzas) if poem not in seen]
    return {"train": train, "valid": valid, "test": test}


def encode_poems(poems: Sequence[str], vocab: Vocab) -> np.ndarray:
    """Poems of equal length as one (poems, length) int32 matrix."""
    lengths = {len(poem) for poem in poems}
    if len(lengths) > 1:
        raise ValueError(f"poems must all have the same length, got lengths {sorted(lengths)}")
    if not poems:
        return np.zeros((0, 0), dtype=np.int32)
    return vocab.encode("".join(poems)).reshape(len(poems), -1)


def make_windows(poems: np.ndarray, window: int, pad_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every run of `window` ids in every poem -> the id that follows it.

    With pad_start, each poem is preceded by `window` padding ids, so the first
    characters are targets too (the model can then write a first line).
    """
    if pad_start:
        poems = np.pad(poems, ((0, 0), (window, 0)), constant_values=PAD_ID)
    if poems.shape[1] <= window:
        raise ValueError(f"window {window} leaves no target in poems of {poems.shape[1]} tokens")
    runs = np.lib.stride_tricks.sliding_window_view(poems, window + 1, axis=1).reshape(-1, window + 1)
    return np.ascontiguousarray(runs[:, :-1]), np.ascontiguousarray(runs[:, -1])


def make_sequences(poems: np.ndarray, pad_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each poem -> (its ids shifted right by one, its ids): a target at every position.

    With pad_start the input starts with one <pad> (the start token), so the first
    character is a target too; without it, the first character is only read.
    """
    if pad_start:
        return np.pad(poems[:, :-1], ((0, 0), (1, 0)), constant_values=PAD_ID), poems.copy()
    if poems.shape[1] < 2:
        raise ValueError(f"poems of {poems.shape[1]} tokens leave no target without pad_start")
    return np.ascontiguousarray(poems[:, :-1]), np.ascontiguousarray(poems[:, 1:])


def reversed_sequences(samples: Windows) -> Windows:
    """Sequence samples (with pad_start's start token) of the same poems read right to left, last
    character first: the samples of a backward model (model.direction = backward)."""
    return Windows(*make_sequences(np.ascontiguousarray(samples.y[:, ::-1]), pad_start=True))


def make_samples(poems: np.ndarray, context: str, window: int, pad_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """The samples of dataset.context: sliding windows, or one sequence per poem."""
    if context == "sequence":
        return make_sequences(poems, pad_start)
    if context == "window":
        return make_windows(poems, window, pad_start)
    raise ValueError(f"unknown dataset.context {context!r}; valid: {', '.join(CONTEXTS)}")


CONTEXTS = ("window", "sequence")


@dataclass
class Windows:
    """The samples of one split: windows (x (n, window), y (n,)) or sequences (x and y (n, length))."""

    x: np.ndarray  # int32 ids the model reads
    y: np.ndarray  # int32 ids it must predict: one per window, or one per position of a sequence

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "xb") as handle:  # a file: np.savez adds no .npz to it
            np.savez(handle, x=self.x, y=self.y)

    @classmethod
    def load(cls, path: str | Path) -> Windows:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["x"], data["y"])


def build_dataset(
    quatrains: Sequence[str],
    stanzas: Sequence[str],
    out_dir: str | Path,
    *,
    vocab_size: int,
    window: int,
    pad_start: bool,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    context: str = "window",
    markers: Sequence[str] = (),
) -> dict:
    """Split, build the vocabulary from the training split and write every artefact the trainer reads.

    Writes vocab.json, {train,valid,test}.txt, {train,valid,test}.npz (samples of `context`)
    and dataset.json (counts). `markers` are extra vocabulary tokens (Vocab.build).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = split_poems(quatrains, stanzas, valid_fraction, test_fraction, seed)
    if not splits["train"]:
        raise ValueError("no training poems: the corpus is empty after cleaning (check corpus.line_length)")
    vocab = Vocab.build(splits["train"], vocab_size, markers)
    vocab.save(out_dir / "vocab.json")
    counts = {
        "vocab_size": len(vocab),
        "context": context,
        "window": window,
        "pad_start": pad_start,
        # split_poems puts these first in train: quatrain_samples cuts them out for train.quatrains_only
        "train_quatrains": len(dict.fromkeys(quatrains)) - len(splits["valid"]) - len(splits["test"]),
    }
    for name, poems in splits.items():
        write_atomic(out_dir / f"{name}.txt", "".join(poem + "\n" for poem in poems))
        encoded = encode_poems(poems, vocab) if poems else np.zeros((0, window + 1), np.int32)
        samples = Windows(*make_samples(encoded, context, window, pad_start))
        samples.save(out_dir / f"{name}.npz")
        counts[f"{name}_poems"], counts[f"{name}_samples"] = len(poems), len(samples.y)
        counts[f"{name}_targets"] = int(samples.y.size)
        if context == "window":
            counts[f"{name}_windows"] = len(samples.y)
        counts[f"{name}_unknown_chars"] = int((encoded == UNK_ID).sum())
    write_atomic(out_dir / "dataset.json", json.dumps(counts, indent=2))
    return counts


def quatrain_samples(samples: Windows, counts: dict) -> Windows:
    """The training samples of the real quatrains alone, without the stanza cuts (they come first)."""
    if "train_quatrains" not in counts:
        raise ValueError(
            "dataset.json has no train_quatrains (prepared by an older jueju): "
            "run `jueju prepare --force`, or set train.quatrains_only = false"
        )
    if counts["train_quatrains"] == 0:
        raise ValueError(
            "the training split holds no real quatrains (only stanza cuts): set train.quatrains_only = false"
        )
    rows = counts["train_quatrains"] * (len(samples.y) // counts["train_poems"])  # samples per poem: 1 or windows
    return Windows(samples.x[:rows], samples.y[:rows])


def read_poems(path: str | Path) -> list[str]:
    """One poem per line, as written by the corpus and data set stages."""
    return [line for line in Path(path).read_text("utf-8").splitlines() if line]
