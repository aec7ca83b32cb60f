"""The preparation stages in order: crawl -> clean -> data set -> word2vec -> conditioning.

Each stage runs only when its artefacts are missing or were made with other
settings: data/<form>/manifest.json records the settings each stage last ran with.
Training reads only what these stages wrote.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from jueju.config import Config, ConfigError
from jueju.data import condition
from jueju.data import crawl as crawler
from jueju.data.corpus import TITLES, prepare_corpus
from jueju.data.dataset import build_dataset, read_poems
from jueju.data.word2vec import save_word2vec, train_word2vec
from jueju.files import write_atomic

log = logging.getLogger(__name__)


def prepare(config: Config, force: bool = False) -> None:
    """Run every stage training needs, skipping those already up to date."""
    corpus_stage(config, force)
    dataset_stage(config, force)
    if config.model.input == "word2vec":
        word2vec_stage(config, force)
    if config.dataset.condition:
        condition_stage(config, force)


def source_dirs(config: Config) -> list[Path]:
    """Where the raw poems are: crawl.source when set, else the crawled collections (fetched if missing)."""
    if config.crawl.source:
        return [config.path(config.crawl.source)]
    if not all(_collection_complete(config, name) for name in config.crawl.collections):
        crawl_stage(config)
    return [config.raw_dir / name for name in config.crawl.collections]


def crawl_stage(config: Config) -> crawler.CrawlSummary:
    settings = config.crawl
    summary = crawler.crawl(
        settings.base_url,
        config.raw_dir,
        settings.collections,
        workers=settings.workers,
        timeout=settings.timeout,
        retries=settings.retries,
        max_bytes=int(settings.max_file_mb * 1_000_000),
        deadline=settings.deadline,
    )
    log.info("crawl: %s", summary)
    if summary.failed and not summary.fetched and not summary.skipped:
        raise RuntimeError(f"crawl fetched nothing from {settings.base_url}: {summary}")
    return summary


def corpus_stage(config: Config, force: bool = False) -> None:
    signature = {"source": config.crawl.source or [str(c) for c in config.crawl.collections], **asdict(config.corpus)}
    if not force and _up_to_date(config, "corpus", signature, ["poems.txt", "stanzas.txt", TITLES, "stats.json"]):
        return
    stats = prepare_corpus(
        source_dirs(config),
        config.data_dir,
        line_length=config.corpus.line_length,
        stanzas=config.corpus.stanzas,
        simplify=config.corpus.simplify,
    )
    log.info("corpus: %s", stats.to_dict())
    _record(config, "corpus", signature)


def dataset_stage(config: Config, force: bool = False) -> dict | None:
    signature = asdict(config.dataset)
    files = ["vocab.json", "dataset.json"] + [
        f"{split}.{ext}" for split in ("train", "valid", "test") for ext in ("txt", "npz")
    ]
    if not force and _up_to_date(config, "dataset", signature, files):
        return None
    settings, data = config.dataset, config.data_dir
    if settings.condition and not (settings.context == "sequence" and settings.pad_start):
        raise ConfigError(
            "dataset.condition needs dataset.context = sequence and dataset.pad_start = true "
            f"(got {settings.context} and {settings.pad_start}): set them, or dataset.condition = false"
        )
    counts = build_dataset(
        read_poems(data / "poems.txt"),
        read_poems(data / "stanzas.txt"),
        data,
        vocab_size=settings.vocab_size,
        context=settings.context,
        window=settings.window,
        pad_start=settings.pad_start,
        valid_fraction=settings.valid_fraction,
        test_fraction=settings.test_fraction,
        seed=settings.seed,
        markers=condition.TOKENS if settings.condition else (),
    )
    log.info("data set: %s", counts)
    _record(config, "dataset", signature)
    return counts


def word2vec_stage(config: Config, force: bool = False) -> Path:
    signature = asdict(config.word2vec)
    path = config.data_dir / "word2vec.txt"
    if not force and _up_to_date(config, "word2vec", signature, ["word2vec.txt"]):
        return path
    settings = asdict(config.word2vec)
    model = train_word2vec(read_poems(config.data_dir / "train.txt"), **settings)
    save_word2vec(model, config.data_dir)
    _record(config, "word2vec", signature)
    return path


def condition_stage(config: Config, force: bool = False) -> None:
    """Each split's titles and the training poems' conditioning blocks (jueju.data.condition)."""
    signature = {"seed": config.dataset.seed, "block": condition.BLOCK, "mixture": condition.MIXTURE}
    files = [condition.BLOCKS, *(condition.titles_file(split) for split in condition.SPLITS)]
    if not force and _up_to_date(config, "condition", signature, files):
        return
    log.info(
        "conditioning: %s titled poems per split", condition.prepare_condition(config.data_dir, config.dataset.seed)
    )
    _record(config, "condition", signature)


def _collection_complete(config: Config, name: str) -> bool:
    folder = config.raw_dir / name
    return all((folder / file).is_file() for file in crawler.collection_files(name))


def _manifest(config: Config) -> dict:
    path = config.data_dir / "manifest.json"
    return json.loads(path.read_text("utf-8")) if path.is_file() else {}


def _up_to_date(config: Config, stage: str, signature: dict, files: list[str]) -> bool:
    fresh = _manifest(config).get(stage) == signature
    return fresh and all((config.data_dir / name).is_file() for name in files)


def _record(config: Config, stage: str, signature: dict) -> None:
    manifest = _manifest(config)
    manifest[stage] = signature
    # a stage that ran again makes every later one stale
    order = ["corpus", "dataset", "word2vec", "condition"]
    for later in order[order.index(stage) + 1 :]:
        manifest.pop(later, None)
    write_atomic(config.data_dir / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
