"""The data set: vocabulary, train/valid/test split and sliding-window samples.

Everything here is integer NumPy: a poem is a row of token ids, and the windows
(`window` ids -> the next id) are cut from all poems at once with a strided view,
never as one-hot or word-vector arrays on the host.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .corpus import HAN as HAN_RANGES

PAD, UNK = "<pad>", "<unk>"
RESERVED = (PAD, UNK)
PAD_ID, UNK_ID = 0, 1
HAN = re.compile(f"[{HAN_RANGES}]")


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
    def build(cls, texts: Iterable[str], size: int) -> "Vocab":
        """The `size - 2` most frequent characters (ties by code point, so builds are reproducible)."""
        counts = Counter(char for text in texts for char in text)
        ranked = sorted(counts, key=lambda char: (-counts[char], char))
        return cls([*RESERVED, *ranked[: size - len(RESERVED)]])

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
        write_text_atomic(path, json.dumps({"tokens": self.tokens}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        return cls(json.loads(Path(path).read_text("utf-8"))["tokens"])


def split_poems(quatrains: Sequence[str], stanzas: Sequence[str], valid_fraction: float,
                test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Valid and test hold only real quatrains; train the rest plus the stanza cuts.

    Split by poem with a fixed seed, and no poem text in two splits.
    """
    unique = list(dict.fromkeys(quatrains))
    order = np.random.default_rng(seed).permutation(len(unique))
    n_test, n_valid = round(len(unique) * test_fraction), round(len(unique) * valid_fraction)
    test = [unique[i] for i in order[:n_test]]
    valid = [unique[i] for i in order[n_test:n_test + n_valid]]
    train = [unique[i] for i in order[n_test + n_valid:]]
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


@dataclass
class Windows:
    x: np.ndarray  # (samples, window) int32 ids
    y: np.ndarray  # (samples,) int32 id of the next character

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, x=self.x, y=self.y)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> "Windows":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["x"], data["y"])


def build_dataset(quatrains: Sequence[str], stanzas: Sequence[str], out_dir: str | Path, *, vocab_size: int,
                  window: int, pad_start: bool, valid_fraction: float, test_fraction: float, seed: int) -> dict:
    """Split, build the vocabulary from the training split and write every artefact the trainer reads.

    Writes vocab.json, {train,valid,test}.txt, {train,valid,test}.npz and dataset.json (counts).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = split_poems(quatrains, stanzas, valid_fraction, test_fraction, seed)
    if not splits["train"]:
        raise ValueError("no training poems: the corpus is empty after cleaning (check corpus.line_length)")
    vocab = Vocab.build(splits["train"], vocab_size)
    vocab.save(out_dir / "vocab.json")
    counts = {"vocab_size": len(vocab), "window": window, "pad_start": pad_start}
    for name, poems in splits.items():
        write_text_atomic(out_dir / f"{name}.txt", "".join(poem + "\n" for poem in poems))
        encoded = encode_poems(poems, vocab) if poems else np.zeros((0, window + 1), np.int32)
        windows = Windows(*make_windows(encoded, window, pad_start))
        windows.save(out_dir / f"{name}.npz")
        counts[f"{name}_poems"], counts[f"{name}_windows"] = len(poems), len(windows.y)
        counts[f"{name}_unknown_chars"] = int((encoded == UNK_ID).sum())
    write_text_atomic(out_dir / "dataset.json", json.dumps(counts, indent=2))
    return counts


def read_poems(path: str | Path) -> list[str]:
    """One poem per line, as written by the corpus and data set stages."""
    return [line for line in Path(path).read_text("utf-8").splitlines() if line]


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)
