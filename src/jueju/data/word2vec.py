"""Character embeddings: gensim 4 Word2Vec on the training split, and the matrix that seeds the model.

The vectors are kept in word2vec's text format, which is what this project reads
back (no pickle); gensim's own .model file is written too, for people who want to
keep training it with gensim.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from gensim.models import KeyedVectors, Word2Vec

from jueju.data.dataset import PAD_ID, Vocab
from jueju.files import atomic_path

log = logging.getLogger(__name__)


def train_word2vec(
    poems: Sequence[str],
    *,
    vector_size: int,
    window: int,
    sg: int,
    hs: int,
    negative: int,
    min_count: int,
    epochs: int,
    workers: int,
    seed: int,
) -> Word2Vec:
    """Each poem is a sentence whose words are its characters (punctuation included)."""
    sentences = [list(poem) for poem in poems]
    return Word2Vec(
        sentences,
        vector_size=vector_size,
        window=window,
        sg=sg,
        hs=hs,
        negative=negative,
        min_count=min_count,
        epochs=epochs,
        workers=workers,
        seed=seed,
    )


def save_word2vec(model: Word2Vec, out_dir: str | Path) -> Path:
    """Write word2vec.model (gensim) and word2vec.txt (text vectors); returns the text file."""
    out_dir = Path(out_dir)
    # not through a temporary name: gensim may write big arrays beside it (word2vec.model.*.npy), named after it
    model.save(str(out_dir / "word2vec.model"))
    text_path = out_dir / "word2vec.txt"
    with atomic_path(text_path) as tmp:
        model.wv.save_word2vec_format(str(tmp), binary=False)
    return text_path


def load_vectors(path: str | Path) -> KeyedVectors:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no word vectors at {path}: run `jueju word2vec` first")
    return KeyedVectors.load_word2vec_format(str(path), binary=False)


def embedding_matrix(vocab: Vocab, vectors: KeyedVectors, seed: int = 0) -> np.ndarray:
    """One row per vocabulary id: the character's vector, small noise for those without one, zeros for padding."""
    rng = np.random.default_rng(seed)
    scale = float(vectors.vectors.std())
    matrix = rng.normal(0.0, scale, (len(vocab), vectors.vector_size)).astype(np.float32)
    found = [i for i, token in enumerate(vocab.tokens) if token in vectors.key_to_index]
    matrix[found] = vectors[[vocab.tokens[i] for i in found]]
    matrix[PAD_ID] = 0.0
    log.info("word2vec covers %d of %d vocabulary tokens", len(found), len(vocab))
    return matrix


def most_similar(vectors: KeyedVectors, char: str, topn: int = 10) -> list[tuple[str, float]]:
    if char not in vectors.key_to_index:
        raise ValueError(f"{char!r} has no vector: it does not occur in the training poems")
    return vectors.most_similar(char, topn=topn)
