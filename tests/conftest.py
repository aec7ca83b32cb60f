"""Shared fixtures: where the real data is, and a tiny, fast configuration in tmp_path."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of test output

import pytest

from jueju.config import load_config

TESTS = Path(__file__).resolve().parent
SHARED_DATA = TESTS.parents[1] / "shared" / "data"
TINY_CORPUS = TESTS / "fixtures" / "tiny"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "chinese-poetry").is_dir():
        pytest.skip(f"real corpus not found at {SHARED_DATA} (it sits beside the checkout in CI)")
    return SHARED_DATA


# common rhyme words of every 平水韵 group, so small test vocabularies can always rhyme
RHYME_WORDS = [
    "东同中风空红冬钟龙松容江窗双支时诗知枝思微飞归衣鱼书居初虞无图湖齐西溪啼",
    "佳街灰开来台真人春新文云元言门寒山间看删关先天年前边萧桥朝豪高毛歌多河何",
    "麻家花华阳长光香乡庚明声情清青星蒸升尤秋流楼侵心深林覃南谈盐添咸",
]


def tiny_quatrains() -> list[str]:
    """The fixture corpus's clean five-character quatrains."""
    from jueju.data.corpus import clean_corpus, read_source

    return clean_corpus(read_source(TINY_CORPUS / "poet.tang.0.json"), line_length=5)[0]


def tiny_overrides(root: Path, **extra) -> list[str]:
    """A configuration that trains in seconds on the tiny fixture corpus, writing only under `root`."""
    values = {
        "paths.raw_dir": root / "raw",
        "paths.data_dir": root / "data",
        "paths.model_dir": root / "models",
        "paths.log_dir": root / "logs",
        "crawl.source": TINY_CORPUS / "poet.tang.0.json",
        "dataset.vocab_size": 400,
        "dataset.valid_fraction": 0.1,
        "dataset.test_fraction": 0.1,
        "word2vec.vector_size": 16,
        "word2vec.epochs": 2,
        "model.lstm_units": "32,32",
        "train.epochs": 2,
        "train.batch_size": 64,
        "train.sample_count": 2,
        "train.patience": 0,
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture
def tiny_config(tmp_path):
    return load_config(overrides=tiny_overrides(tmp_path))


def untrained_poet(corpus: list[str], conditioned: bool = False):
    """A Poet over a small untrained model: whatever it prefers, only decoding's masks shape its poems.

    Its vocabulary holds the corpus's characters and the common rhyme words, so every group has members.
    A conditioned one is a sequence model whose vocabulary holds the conditioning block's markers.
    """
    from jueju.data import condition
    from jueju.data.dataset import Vocab
    from jueju.model.network import build_model
    from jueju.text import split_lines
    from jueju.write.constraints import LineIndex
    from jueju.write.poet import Poet

    config = load_config(overrides=["model.input=embedding", "model.lstm_units=16", "model.embedding_dim=8"])
    vocab = Vocab.build(corpus + RHYME_WORDS, 2000, condition.TOKENS if conditioned else ())
    train_lines = LineIndex.from_lines({line for poem in corpus for line in split_lines(poem)}, vocab)
    window = None if conditioned else config.dataset.window
    return Poet(build_model(config.model, len(vocab), window), vocab, config, train_lines)
