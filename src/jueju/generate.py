"""Poem generation: `Poet` (a model loaded once) and `generate_poetry` (one call, one poem).

The format is guaranteed by decoding, not hoped for: punctuation is forced at the
end of each line, and every other position may only take a Han character of the
vocabulary. Many poems are written at once as one batch, with one compiled model
step per character.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .config import FORMS, Config, load_config, load_config_json
from .corpus import to_simplified
from .dataset import HAN, PAD_ID, Vocab
from .model import load_model
from .sampling import Sampler, make_sampler

LINE_ENDS = ("，", "。", "，", "。")
FORM_NAMES = {5: "五言", 7: "七言"}
TRAILING_PUNCTUATION = "，,。.？?！!；;、：:"


class Poet:
    """A trained model with its vocabulary and config, ready to write many poems."""

    def __init__(self, model, vocab: Vocab, config: Config):
        if model.output_shape[-1] != len(vocab):
            raise ValueError(f"the vocabulary has {len(vocab)} tokens but the model predicts {model.output_shape[-1]}: "
                             "they come from different training runs")
        missing = [mark for mark in "，。" if mark not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the punctuation {missing}: it was not built from poems")
        self.model, self.vocab, self.config = model, vocab, config
        self.line_length = config.corpus.line_length
        self.window = model.input_shape[1]
        self.han = np.zeros(len(vocab), dtype=bool)
        self.han[vocab.han_ids()] = True
        self._lock = threading.Lock()  # one model, many callers: a batch at a time

    @classmethod
    def load(cls, model_dir: str | Path) -> "Poet":
        model_dir = Path(model_dir)
        files = [model_dir / name for name in ("model.keras", "vocab.json", "config.json")]
        if not all(path.is_file() for path in files):
            raise FileNotFoundError(f"no trained model in {model_dir} (it needs model.keras, vocab.json and "
                                    "config.json): train one with `jueju train`")
        return cls(load_model(files[0]), Vocab.load(files[1]), load_config_json(files[2]))

    @property
    def poem_length(self) -> int:
        return 4 * (self.line_length + 1)

    def poem(self, first_line: str, **options) -> str:
        return self.poems(first_line, num=1, **options)[0]

    def poems(self, first_line: str, num: int = 1, *, sampler: str | Sampler | None = None,
              temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
              seed: int | None = None, no_repeat: bool | None = None) -> list[str]:
        """`num` poems continuing `first_line`; options default to the model's [generate] config."""
        line = normalise_first_line(first_line, self.line_length, self.config.corpus.simplify)
        if not isinstance(num, int) or isinstance(num, bool) or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        chooser = self._sampler(sampler, temperature, top_k, top_p)
        no_repeat = self.config.generate.no_repeat if no_repeat is None else no_repeat
        tokens = np.zeros((num, self.poem_length), dtype=np.int32)
        tokens[:, : self.line_length] = self.vocab.encode(line)  # unknown characters read as <unk>
        with self._lock:
            tokens = chooser.run(self._next_logits, tokens, self.line_length, self._forced(),
                                 self._allowed(no_repeat), np.random.default_rng(seed))
        return [line + self.vocab.decode(row[self.line_length:]) for row in tokens]

    def _sampler(self, sampler, temperature, top_k, top_p) -> Sampler:
        if isinstance(sampler, Sampler):
            return sampler
        defaults = self.config.generate
        return make_sampler(sampler or defaults.sampler,
                            temperature=defaults.temperature if temperature is None else temperature,
                            top_k=defaults.top_k if top_k is None else top_k,
                            top_p=defaults.top_p if top_p is None else top_p)

    def _forced(self) -> np.ndarray:
        """Per position: the punctuation id that must stand there, or -1 for a character."""
        forced = np.full(self.poem_length, -1, dtype=np.int32)
        for line, mark in enumerate(LINE_ENDS):
            forced[(line + 1) * (self.line_length + 1) - 1] = self.vocab.ids[mark]
        return forced

    def _allowed(self, no_repeat: bool):
        def allowed(tokens: np.ndarray, position: int) -> np.ndarray:
            mask = np.broadcast_to(self.han, (len(tokens), len(self.han))).copy()
            if no_repeat:
                np.put_along_axis(mask, tokens[:, :position], False, axis=-1)
            return mask
        return allowed

    def _next_logits(self, tokens: np.ndarray, position: int) -> np.ndarray:
        context = tokens[:, max(0, position - self.window):position]
        if context.shape[1] < self.window:
            context = np.pad(context, ((0, 0), (self.window - context.shape[1], 0)), constant_values=PAD_ID)
        probs = np.asarray(self.model.predict_on_batch(context), dtype=np.float32)
        return np.log(np.maximum(probs, np.finfo(np.float32).tiny))


def normalise_first_line(text, line_length: int | None = None, simplify: bool = True) -> str:
    """The first line as the model reads it: no spaces or trailing punctuation, simplified, checked.

    Raises ValueError saying what is wrong and what is valid.
    """
    if not isinstance(text, str):
        raise ValueError(f"the first line must be a string of Han characters, got {type(text).__name__}")
    line = "".join(text.split()).rstrip(TRAILING_PUNCTUATION)
    if not line:
        raise ValueError("the first line is empty: give 5 or 7 Han characters, e.g. 床前明月光")
    not_han = sorted({char for char in line if not HAN.fullmatch(char)})
    if not_han:
        shown = "".join(not_han[:10])
        raise ValueError(f"the first line may hold only Han characters, but has {shown!r} in {_clip(text)!r}")
    if simplify:
        line = to_simplified(line)
    valid = (line_length,) if line_length else tuple(FORMS)
    if len(line) not in valid:
        wanted = " or ".join(f"{n} ({FORM_NAMES[n]})" for n in valid)
        raise ValueError(f"the first line must have {wanted} Han characters; {_clip(line)!r} has {len(line)}")
    return line


def _clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


_poets: dict[Path, Poet] = {}
_poets_lock = threading.Lock()


def get_poet(model_dir: str | Path | None = None, line_length: int = 5) -> Poet:
    """The Poet for `model_dir` (default: the trained model of that line length under models/), loaded once."""
    if model_dir is None:
        config = load_config()
        model_dir = config.path(config.paths.model_dir) / FORMS[line_length]
    model_dir = Path(model_dir).resolve()
    with _poets_lock:
        if model_dir not in _poets:
            _poets[model_dir] = Poet.load(model_dir)
        return _poets[model_dir]


def generate_poems(first_line: str, num: int = 1, *, model_dir: str | Path | None = None, **options) -> list[str]:
    """`num` whole poems that begin with `first_line`, e.g. generate_poems("床前明月光", 3, seed=1)."""
    line = normalise_first_line(first_line)
    return get_poet(model_dir, len(line)).poems(first_line, num, **options)


def generate_poetry(first_line: str, *, model_dir: str | Path | None = None, **options) -> str:
    """A whole four-line poem that begins with `first_line`: generate_poetry("月暗竹亭幽，").

    Options: sampler ("greedy", "temperature", "top_k", "top_p"), temperature, top_k,
    top_p, seed (same seed, same poem), no_repeat. Characters of the first line that the
    model's vocabulary lacks are read as <unk> but kept in the poem as given.
    """
    return generate_poems(first_line, 1, model_dir=model_dir, **options)[0]
