"""Configuration: the schema of config/cfg.ini, its loading, validation and overrides.

config/cfg.ini is the single source of defaults and documents every key. This module
says what type and range each key has; a user's file (--config) and --set overrides
are layered on top, and anything unknown or out of range fails at load with a message
naming the key and what would be valid.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from jueju import options
from jueju.files import write_atomic
from jueju.home import DEFAULT_CONFIG, FOUND_BY, PROJECT_ROOT, WORKSPACE

FORMS = {5: "wuyan", 7: "qiyan"}  # line length -> folder name of its data and model


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says why."""


def _range(lo, hi=None):
    return {"range": (lo, hi)}


DIRECTIONS = ("forward", "backward")  # model.direction: how a model reads each poem


def _choices(*values):
    return {"choices": values}


@dataclass
class Paths:
    raw_dir: str
    data_dir: str
    model_dir: str
    log_dir: str


@dataclass
class Crawl:
    base_url: str
    collections: list[str] = field(metadata=_choices("tang", "song"))
    source: str
    workers: int = field(metadata=_range(1, 64))
    timeout: float = field(metadata=_range(0.1, 600))
    retries: int = field(metadata=_range(0, 20))
    max_file_mb: float = field(metadata=_range(0.1, 1000))
    deadline: float = field(metadata=_range(1, 86_400))


@dataclass
class Corpus:
    line_length: int = field(metadata=_choices(5, 7))
    stanzas: bool
    simplify: bool


@dataclass
class Dataset:
    vocab_size: int = field(metadata=_range(10, 100_000))
    context: str = field(metadata=_choices("window", "sequence"))
    window: int = field(metadata=_range(1, 64))
    valid_fraction: float = field(metadata=_range(0.0, 0.5))
    test_fraction: float = field(metadata=_range(0.0, 0.5))
    pad_start: bool
    condition: bool
    seed: int


@dataclass
class Word2Vec:
    vector_size: int = field(metadata=_range(2, 2048))
    window: int = field(metadata=_range(1, 64))
    sg: int = field(metadata=_choices(0, 1))
    hs: int = field(metadata=_choices(0, 1))
    negative: int = field(metadata=_range(0, 64))
    min_count: int = field(metadata=_range(1))
    epochs: int = field(metadata=_range(1, 1000))
    workers: int = field(metadata=_range(1, 64))
    seed: int


@dataclass
class Model:
    input: str = field(metadata=_choices("word2vec", "embedding", "one-hot"))
    embedding_dim: int = field(metadata=_range(2, 4096))
    trainable_embedding: bool
    lstm_units: list[int] = field(metadata=_range(1, 8192))
    dropout: float = field(metadata=_range(0.0, 0.95))
    dense_units: list[int] = field(metadata=_range(1, 8192))
    direction: str = field(metadata=_choices(*DIRECTIONS))


@dataclass
class Train:
    epochs: int = field(metadata=_range(1, 10_000))
    batch_size: int = field(metadata=_range(1, 1 << 20))
    steps_per_epoch: int = field(metadata=_range(0))
    learning_rate: float = field(metadata=_range(1e-7, 10.0))
    lr_schedule: str = field(metadata=_choices("constant", "cosine"))
    quatrains_only: bool
    distribution: str = field(metadata=_choices("none", "mirrored", "multi_worker", "data_parallel"))
    mixed_precision: str = field(metadata=_choices("none", "mixed_float16", "mixed_bfloat16"))
    patience: int = field(metadata=_range(0))
    sample_every: int = field(metadata=_range(0))
    sample_count: int = field(metadata=_range(1, 64))
    seed: int
    tensorboard: bool


# [generate]: the options of jueju.options' schema, the one place their types and bounds are defined
Generate = dataclasses.make_dataclass("Generate", options.config_fields())


@dataclass
class Serve:
    host: str
    port: int = field(metadata=_range(1, 65_535))
    max_batch: int = field(metadata=_range(1, 4096))
    max_wait_ms: float = field(metadata=_range(0, 1000))
    queue_size: int = field(metadata=_range(1, 100_000))
    max_body_kb: int = field(metadata=_range(1, 10_240))


@dataclass
class Config:
    paths: Paths
    crawl: Crawl
    corpus: Corpus
    dataset: Dataset
    word2vec: Word2Vec
    model: Model
    train: Train
    generate: Generate
    serve: Serve

    # -- derived places, so every stage agrees on where artefacts live --
    @property
    def form(self) -> str:
        return FORMS[self.corpus.line_length]

    def path(self, relative: str) -> Path:
        """A config path resolved against the home, where the committed models are read (absolute paths kept)."""
        return PROJECT_ROOT / relative

    def output(self, relative: str) -> Path:
        """A config path resolved against the workspace, where the pipeline writes (absolute paths kept)."""
        return WORKSPACE / relative

    @property
    def model_window(self) -> int | None:
        """Ids the model reads per sample: dataset.window, or None (any length) for sequences."""
        return None if self.dataset.context == "sequence" else self.dataset.window

    @property
    def raw_dir(self) -> Path:
        return self.output(self.paths.raw_dir)

    @property
    def data_dir(self) -> Path:
        return self.output(self.paths.data_dir) / self.form

    @property
    def model_dir(self) -> Path:
        """The folder jueju train writes and evaluate reads: models/<form> of the workspace, or the folder given
        to `writing_to` (jueju train --out DIR). Poems are written by path(paths.model_dir) / form: the same
        folder, except in an installed package, whose models are read-only."""
        return getattr(self, "_model_dir", None) or self.output(self.paths.model_dir) / self.form

    def writing_to(self, folder: str | Path) -> Config:
        """A copy of this config whose model_dir is `folder` (not a config key: it never reaches config.json)."""
        copy = dataclasses.replace(self)
        copy._model_dir = Path(folder).resolve()
        return copy

    @property
    def log_dir(self) -> Path:
        return self.output(self.paths.log_dir)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save_json(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=2))


SECTIONS: dict[str, type] = typing.get_type_hints(Config)  # section name -> its dataclass


def load_config(path: str | Path | None = None, overrides: typing.Iterable[str] = ()) -> Config:
    """Defaults from config/cfg.ini, then the keys of `path`, then `section.key=value` overrides."""
    values = _defaults()
    if path is not None:
        for section, keys in _read_ini(Path(path)).items():
            values.setdefault(section, {}).update(keys)
    for item in overrides:
        section, key, value = _split_override(item)
        values.setdefault(section, {})[key] = value
    return config_from_dict(values)


def config_from_dict(values: dict[str, dict]) -> Config:
    """Build and validate a Config from {section: {key: value}} (strings or typed values)."""
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown config section [{unknown[0]}]; valid sections: {', '.join(SECTIONS)}")
    return Config(**{name: _build_section(name, cls, values.get(name, {})) for name, cls in SECTIONS.items()})


def load_config_json(path: Path) -> Config:
    """The config saved beside a model (config.json); keys it predates take today's defaults."""
    values = _defaults()
    for section, keys in json.loads(Path(path).read_text("utf-8")).items():
        values.setdefault(section, {}).update(keys)
    return config_from_dict(values)


def _defaults() -> dict[str, dict[str, str]]:
    if not DEFAULT_CONFIG.is_file():
        raise ConfigError(
            f"default config not found: {DEFAULT_CONFIG} (the home, from {FOUND_BY}); "
            "JUEJU_HOME must name a folder that holds config/cfg.ini and models/"
        )
    return _read_ini(DEFAULT_CONFIG)


def _read_ini(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as err:
        reason = " ".join(str(err).split())  # configparser's messages span lines
        raise ConfigError(f"cannot parse {path} as an .ini file: {reason}") from None
    return {section: dict(parser[section]) for section in parser.sections()}


def _split_override(item: str) -> tuple[str, str, str]:
    name, sep, value = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"bad override {item!r}: expected section.key=value, e.g. train.epochs=5")
    return section, key, value.strip()


def _build_section(name: str, cls: type, raw: dict):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {name}.{unknown[0]}; valid keys in [{name}]: {', '.join(fields)}")
    missing = [key for key in fields if key not in raw]
    if missing:
        raise ConfigError(f"missing config key {name}.{missing[0]} (see config/cfg.ini)")
    return cls(**{key: _convert(f"{name}.{key}", raw[key], hints[key], fields[key].metadata) for key in fields})


def _convert(key: str, value, kind, rules):
    try:
        result = _parse(value, kind)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key} = {value!r} is not {_describe(kind)}") from None
    for item in result if isinstance(result, list) else [result]:
        _check(key, item, rules)
    return result


def _parse(value, kind):
    if typing.get_origin(kind) is list:
        (item_kind,) = typing.get_args(kind)
        items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
        return [_parse(item, item_kind) for item in items]
    if kind == (int | None):
        return None if value is None or str(value).strip() == "" else _parse(value, int)
    if kind is bool:
        return _parse_bool(value)
    if kind is int:
        if isinstance(value, float) or isinstance(value, bool):
            raise ValueError(value)
        return int(str(value).strip())
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(str(value).strip())
    return str(value).strip()


def _parse_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(value)


def _describe(kind) -> str:
    if typing.get_origin(kind) is list:
        plural = {int: "integers", float: "numbers"}.get(typing.get_args(kind)[0], "names")
        return f"a comma-separated list of {plural}"
    if kind == (int | None):
        return "an integer or empty"
    return {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "a string")


def _check(key: str, value, rules) -> None:
    if value is None:
        return
    if "choices" in rules and value not in rules["choices"]:
        valid = ", ".join(map(str, rules["choices"]))
        raise ConfigError(f"config key {key} = {value!r} is not one of: {valid}")
    if "range" in rules:
        lo, hi = rules["range"]
        if value < lo or (hi is not None and value > hi):
            bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(f"config key {key} = {value!r} is out of range: must be {bounds}")


def training_command(model_dir: Path) -> str:
    """The command that trains a model into `model_dir`."""
    config = load_config()
    for length, form in FORMS.items():
        if Path(model_dir).resolve() == (config.path(config.paths.model_dir) / form).resolve():
            return (
                "jueju train"
                if length == config.corpus.line_length
                else f"jueju train --set corpus.line_length={length}"
            )
    return f"jueju train --out {model_dir}"
