"""Poem generation: `Poet` (a model loaded once) and `generate_poetry` (one call, one poem).

The format is guaranteed by decoding, not hoped for: punctuation is forced at the
end of each line, and every other position may only take a Han character of the
vocabulary. Many poems are written at once as one batch, with one compiled model
step per character.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .config import FORMS, Config, load_config, load_config_json
from .constraints import (Characters, Constraint, Layout, LineIndex, NoCopy, NoRepeat, Rhyme, Tones,
                          choose_patterns, combine)
from .corpus import to_simplified
from .dataset import HAN, PAD_ID, UNK_ID, Vocab
from .distribute import for_sampling
from .model import load_model, model_window, stepping_model
from .sampling import Sampler, make_sampler

LINE_ENDS = ("，", "。", "，", "。")
FORM_NAMES = {5: "五言", 7: "七言"}
TRAILING_PUNCTUATION = "，,。.？?！!；;、：:"
RHYME_SCHEMES = ("pingshui", "xin", "none")
MAX_INPUT = 1000  # characters; longer input is refused before any conversion work
MAX_NUM = 10_000  # poems per call (config's generate.num range): more exhausts memory instead of failing
MAX_RERANK = 64  # candidates per poem (config's generate.rerank range); beam_width has the same bound
# config's generate.temperature range: beyond it logits / temperature overflows or is NaN, and decoding
# then picks forbidden tokens (<pad>) instead of characters
TEMPERATURE_RANGE = (0.01, 10.0)


class Poet:
    """A trained model with its vocabulary and config, ready to write many poems."""

    def __init__(self, model, vocab: Vocab, config: Config, train_lines: LineIndex | None = None):
        if model.output_shape[-1] != len(vocab):
            raise ValueError(f"the vocabulary has {len(vocab)} tokens but the model predicts {model.output_shape[-1]}: "
                             "they come from different training runs")
        missing = [mark for mark in "，。" if mark not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the punctuation {missing}: it was not built from poems")
        self.model, self.vocab, self.config = model, vocab, config
        self.train_lines = train_lines  # for no_copy
        self.line_length = config.corpus.line_length
        self.layout = Layout(self.line_length)
        # a window model reads the last `window` ids; a sequence model (window None) the whole poem so far,
        # carried in its LSTM states from one character to the next
        self.window = model_window(model)
        self._reader = SequenceReader(model, config.dataset.pad_start) if self.window is None else None
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
        lines = model_dir / LineIndex.FILE
        if not lines.is_file():
            lines = model_dir / "train_lines.npy"  # what model folders trained before 2026-12-02 hold
        train_lines = LineIndex.load(lines) if lines.is_file() else None
        return cls(load_model(files[0]), Vocab.load(files[1]), load_config_json(files[2]), train_lines)

    @property
    def poem_length(self) -> int:
        return self.layout.length

    def poem(self, first_line: str | None = None, **options) -> str:
        return self.poems(first_line, num=1, **options)[0]

    def poems(self, first_line: str | None = None, num: int = 1, *, acrostic: str | None = None,
              **options) -> list[str]:
        """`num` poems continuing `first_line`, or with `acrostic` characters opening the four lines."""
        num = _positive_int("num", num, MAX_NUM)
        if (first_line is None) == (acrostic is None):
            raise ValueError("give either a first line or acrostic characters (e.g. acrostic='春夏秋冬'), "
                             "not both and not neither")
        if first_line is not None:
            return self.batch([first_line] * num, **options)
        return self.batch(acrostics=[acrostic] * num, **options)

    def batch(self, first_lines: Sequence[str] | None = None, *, acrostics: Sequence[str] | None = None,
              sampler: str | Sampler | None = None, temperature: float | None = None, top_k: int | None = None,
              top_p: float | None = None, beam_width: int | None = None, seed: int | None = None,
              no_repeat: bool | None = None, rhyme: str | None = None, rhyme_first_line: bool | None = None,
              tonal: bool | None = None, no_copy: bool | None = None, rerank: int | None = None) -> list[str]:
        """One poem per first line (or per acrostic), all decoded together as one batch.

        Options left as None come from the model's [generate] config; rhyme is a scheme
        ("pingshui", "xin") or "none".
        """
        settings = self._settings(locals())
        rerank = _positive_int("rerank", settings["rerank"], MAX_RERANK)
        givens = [given for given in self._givens(first_lines, acrostics) for _ in range(rerank)]
        tokens = np.zeros((len(givens), self.layout.length), dtype=np.int32)
        forced = np.tile(self._forced(), (len(givens), 1))
        for row, given in enumerate(givens):
            for position, char in given.items():
                tokens[row, position] = forced[row, position] = self.vocab.ids.get(char, UNK_ID)  # <unk> if unknown
        start = self.line_length if first_lines is not None else 0
        rng = np.random.default_rng(_seed(seed))
        allowed = combine(self._constraints(settings, givens, rng))
        chooser = self._sampler(settings)
        with self._lock:
            try:
                tokens, scores = chooser.run(self._next_logits, tokens, start, forced, allowed, rng)
            finally:
                if self._reader is not None:
                    self._reader.forget()
        best = (scores / (self.layout.length - start)).reshape(-1, rerank).argmax(axis=-1)
        rows = np.arange(len(best)) * rerank + best
        return [self._decode(tokens[row], givens[row]) for row in rows]

    def _settings(self, arguments: dict) -> dict:
        """The call's options, with the config's [generate] values where the call left None."""
        defaults = self.config.generate
        return {name: getattr(defaults, name) if arguments.get(name) is None else arguments[name]
                for name in ("sampler", "temperature", "top_k", "top_p", "beam_width", "no_repeat", "rhyme",
                             "rhyme_first_line", "tonal", "no_copy", "rerank")}

    def _givens(self, first_lines, acrostics) -> list[dict[int, str]]:
        """Per poem, the characters fixed by the caller, by position."""
        if (first_lines is None) == (acrostics is None):
            raise ValueError("give either first lines or acrostics, not both and not neither")
        if first_lines is not None:
            lines = [normalise_first_line(line, self.line_length, self.config.corpus.simplify)
                     for line in _sequence("first_lines", first_lines)]
            return [dict(enumerate(line)) for line in lines]
        if not self.config.dataset.pad_start:
            raise ValueError("this model was trained without dataset.pad_start, so it cannot write first lines "
                             "for an acrostic")
        heads = [normalise_acrostic(text, self.config.corpus.simplify) for text in _sequence("acrostics", acrostics)]
        return [{self.layout.start(line): char for line, char in enumerate(four)} for four in heads]

    def _sampler(self, settings: dict) -> Sampler:
        if isinstance(settings["sampler"], Sampler):
            return settings["sampler"]
        if not isinstance(settings["sampler"], str):  # make_sampler would raise TypeError on e.g. a list
            raise ValueError(f"sampler must be a sampler's name or a Sampler, got {settings['sampler']!r}")
        low, high = TEMPERATURE_RANGE
        temperature = settings["temperature"]
        if isinstance(temperature, (int, float)) and not low <= temperature <= high:
            raise ValueError(f"temperature must be from {low} to {high}, got {temperature!r}")
        return make_sampler(settings["sampler"], temperature=settings["temperature"], top_k=settings["top_k"],
                            top_p=settings["top_p"],
                            beam_width=_positive_int("beam_width", settings["beam_width"], MAX_RERANK))

    def _constraints(self, settings: dict, givens: list[dict[int, str]], rng) -> list[Constraint]:
        """The decoding constraints, most important first: where they cannot all hold, the last give way."""
        constraints: list[Constraint] = [Characters(self.han)]
        scheme = settings["rhyme"]
        if scheme not in RHYME_SCHEMES:
            raise ValueError(f"unknown rhyme scheme {scheme!r}; valid: {', '.join(RHYME_SCHEMES)}")
        if scheme != "none":
            for given in givens:
                self._check_rhyme_start(given, scheme, settings["rhyme_first_line"])
            constraints.append(Rhyme(self.vocab.tokens, self.layout, scheme, settings["rhyme_first_line"]))
        if settings["tonal"]:  # tones of the rhyme scheme's era: classical unless 中华新韵 is asked for
            tone_scheme = "xin" if scheme == "xin" else "pingshui"
            patterns = choose_patterns(givens, self.layout, rng, settings["rhyme_first_line"], tone_scheme)
            constraints.append(Tones(self.vocab.tokens, self.layout, patterns, tone_scheme))
        if settings["no_copy"]:
            if self.train_lines is None:
                raise ValueError("no_copy needs the training corpus's lines (train_lines.npz beside the model, "
                                 "written by jueju train); pass no_copy=False to go without")
            constraints.append(NoCopy(self.train_lines, self.layout, len(self.vocab)))
        if settings["no_repeat"]:
            constraints.append(NoRepeat(len(self.vocab), exempt=(UNK_ID,)))
        return constraints

    def _check_rhyme_start(self, given: dict[int, str], scheme: str, first_line: bool) -> None:
        from .prosody import tones

        end = self.layout.end(0)
        if first_line and end in given and "平" not in tones(given[end], scheme):
            raise ValueError(f"the first line ends in {given[end]!r}, which is not a level-tone (平) character "
                             f"known to the {scheme} table, so lines 2 and 4 cannot rhyme with it: "
                             "turn rhyme_first_line off or end the first line differently")

    def _forced(self) -> np.ndarray:
        """Per position: the punctuation id that must stand there, or -1 for a character."""
        forced = np.full(self.layout.length, -1, dtype=np.int32)
        for line, mark in enumerate(LINE_ENDS):
            forced[self.layout.end(line) + 1] = self.vocab.ids[mark]
        return forced

    def _decode(self, row: np.ndarray, given: dict[int, str]) -> str:
        chars = [self.vocab.tokens[i] for i in row]
        for position, char in given.items():
            chars[position] = char  # as the caller wrote it, even when the model read <unk>
        return "".join(chars)

    def _next_logits(self, tokens: np.ndarray, position: int) -> np.ndarray:
        if self.window is None:
            probs = self._reader(tokens, position)
        else:
            context = tokens[:, max(0, position - self.window):position]
            if context.shape[1] < self.window:
                context = np.pad(context, ((0, 0), (self.window - context.shape[1], 0)), constant_values=PAD_ID)
            probs = self.model.predict_on_batch(context)
        return np.log(np.maximum(np.asarray(probs, dtype=np.float32), np.finfo(np.float32).tiny))


class SequenceReader:
    """A sequence model's next-character probabilities after tokens[:, :position], each id read once.

    It keeps every row's LSTM states after the ids it has read, so a call reads only the
    ids written since the last one. Rows are matched to the states by the ids read (beam
    search reorders its rows between calls); a batch it has not seen is read from the start.
    """

    def __init__(self, model, start_token: bool):
        stepper = stepping_model(model)
        self.step = for_sampling(stepper)
        self.state_shapes = [(int(x.shape[-1]), x.dtype) for x in stepper.inputs[1:]]  # h and c of each LSTM
        self.start = [PAD_ID] if start_token else []  # the start token the model was trained with
        self.forget()

    def forget(self) -> None:
        self.read = np.zeros((0, 0), dtype=np.int32)  # (rows, ids read), start token included
        self.states: list[np.ndarray] = []
        self.probs = np.zeros((0, 0), dtype=np.float32)  # after the last id read

    def __call__(self, tokens: np.ndarray, position: int) -> np.ndarray:
        context = np.concatenate([np.full((len(tokens), len(self.start)), PAD_ID, dtype=np.int32),
                                  np.asarray(tokens[:, :position], dtype=np.int32)], axis=1)
        rows = self._rows_read(context)
        if rows is None:
            states, done = [np.zeros((len(context), width), dtype) for width, dtype in self.state_shapes], 0
        else:
            states, done = [s[rows] for s in self.states], self.read.shape[1]
        if done == context.shape[1]:
            probs = self.probs[rows]
        else:
            probs, *states = self.step.predict_on_batch([context[:, done:], *states])
            probs, states = np.asarray(probs), [np.asarray(s) for s in states]
        self.read, self.states, self.probs = context, states, probs
        return probs

    def _rows_read(self, context: np.ndarray) -> np.ndarray | None:
        """For each row of `context`, a row whose states were read from the same ids; None if any has none."""
        done = self.read.shape[1]
        if not done or done > context.shape[1]:
            return None
        where = {row.tobytes(): i for i, row in enumerate(self.read)}
        rows = [where.get(row.tobytes()) for row in context[:, :done]]
        return None if None in rows else np.array(rows)


def normalise_first_line(text, line_length: int | None = None, simplify: bool = True) -> str:
    """The first line as the model reads it: no spaces or trailing punctuation, simplified, checked.

    Raises ValueError saying what is wrong and what is valid.
    """
    if not isinstance(text, str):
        raise ValueError(f"the first line must be a string of Han characters, got {type(text).__name__}")
    if len(text) > MAX_INPUT:
        raise ValueError(f"the first line is {len(text)} characters long: give 5 or 7 Han characters")
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


def normalise_acrostic(text, simplify: bool = True) -> str:
    """Four Han characters, one to open each line (spaces and punctuation between them ignored)."""
    if not isinstance(text, str):
        raise ValueError(f"acrostic must be a string of 4 Han characters, got {type(text).__name__}")
    if len(text) > MAX_INPUT:
        raise ValueError(f"acrostic is {len(text)} characters long: give 4 Han characters, e.g. 春夏秋冬")
    heads = "".join(char for char in text if not char.isspace() and char not in TRAILING_PUNCTUATION)
    not_han = sorted({char for char in heads if not HAN.fullmatch(char)})
    if not_han or len(heads) != 4:
        raise ValueError(f"acrostic must be 4 Han characters, e.g. 春夏秋冬; got {_clip(text)!r}")
    return to_simplified(heads) if simplify else heads


def _sequence(name: str, values) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty list of strings, got {type(values).__name__}")
    if len(values) > MAX_NUM:
        raise ValueError(f"{name} may hold at most {MAX_NUM} poems a call, got {len(values)}")
    return list(values)


def _positive_int(name: str, value, maximum: int | None = None) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return int(value)


def _seed(seed):
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return seed


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


def generate_poems(first_line: str | None = None, num: int = 1, *, model_dir: str | Path | None = None,
                   line_length: int | None = None, **options) -> list[str]:
    """`num` whole poems that begin with `first_line`, e.g. generate_poems("床前明月光", 3, seed=1)."""
    if line_length is None:
        line_length = len(normalise_first_line(first_line)) if first_line is not None else 5
    return get_poet(model_dir, line_length).poems(first_line, num, **options)


def generate_poetry(first_line: str | None = None, *, model_dir: str | Path | None = None, **options) -> str:
    """A whole four-line poem that begins with `first_line`: generate_poetry("月暗竹亭幽，").

    Or an acrostic (藏头诗): generate_poetry(acrostic="春夏秋冬") (add line_length=7 for 七言).
    Options: sampler ("greedy", "temperature", "top_k", "top_p", "beam"), temperature,
    top_k, top_p, beam_width, seed (same seed, same poem), no_repeat, rhyme ("pingshui",
    "xin", "none"), rhyme_first_line, tonal, no_copy, rerank (draw this many and keep
    the most probable). Characters of the first line that the model's vocabulary lacks
    are read as <unk> but kept in the poem as given. Bad input raises ValueError.
    """
    return generate_poems(first_line, 1, model_dir=model_dir, **options)[0]
