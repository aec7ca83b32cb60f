"""Poem generation: `Poet` (a model loaded once) and `generate_poetry` (one call, one poem).

`Poet` is the task, in the spirit of KerasHub's preprocessor / backbone / task: the text side
(`preprocess.PoemPreprocessor`: first lines and acrostics in, poems out), the model side
(`stepper.Stepper`: next-character log-probabilities), and here what joins them: the options,
checked once against `options.DecodingOptions`, the constraints, the sampler, the reranking.

The format is guaranteed by decoding, not hoped for: punctuation is forced at the end of each
line, and every other position may only take a Han character of the vocabulary. Many poems
are written at once as one batch, with one compiled model step per character.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jueju import options as schema
from jueju.config import FORMS, Config, load_config, load_config_json, training_command
from jueju.data import condition
from jueju.data.dataset import Vocab
from jueju.model.network import load_model
from jueju.model.stepper import CHUNK, SequenceReader, Stepper
from jueju.options import OptionError
from jueju.rank.critic import CRITIC, Critic
from jueju.rank.reader import READER, Reader
from jueju.rank.scores import SCORERS, Ranker, backward_dir, reranking_weights
from jueju.text import is_han
from jueju.write.constraints import LineIndex
from jueju.write.device_loop import DeviceLoop, decode
from jueju.write.givens import NothingFits, check_rhymes, decoding_constraints, settings_sampler, stuck_field
from jueju.write.keywords import keyword_poems
from jueju.write.preprocess import (
    FORM_NAMES,
    LINE_ENDS,
    PoemPreprocessor,
    normalise_acrostic,
    normalise_first_line,
    normalise_template,
    template_form,
    template_of,
)
from jueju.write.redraw import redraw
from jueju.write.sampling import ConstraintError, Sampler

__all__ = [
    "Poet",
    "generate_poetry",
    "generate_poems",
    "get_poet",
    "normalise_first_line",
    "normalise_acrostic",
    "normalise_template",
    "FORM_NAMES",
    "LINE_ENDS",
    "SequenceReader",
    "OptionError",
]


NOTHING_FITS = (
    "no character of this model's vocabulary fits the rhyme, tonal and no-repeat constraints together here; "
    "try rhyme none, tonal off or other given characters"
)


@dataclass(frozen=True)
class Request:
    """What every chunk of one `Poet.batch` call decodes and chooses by."""

    settings: dict  # Poet.settings
    sampler: Sampler
    start: int  # the first position scored: after a given first line, else 0
    weights: dict  # the ranker's (rank.scores.reranking_weights)
    rng: np.random.Generator  # the call's seed, drawn from chunk after chunk
    stuck: str  # the field to blame where no character fits (givens.stuck_field)


class Poet:
    """A trained model with its vocabulary and config, ready to write many poems."""

    def __init__(
        self,
        model,
        vocab: Vocab,
        config: Config,
        train_lines: LineIndex | None = None,
        backward=None,
        reader: Reader | None = None,
        critic: Critic | None = None,
    ):
        if config.model.direction != "forward":
            raise ValueError(
                "this is a backward model (model.direction = backward): it scores poems for reranking "
                "and writes none; load the forward model it serves, which finds it in <model>-backward"
            )
        if model.output_shape[-1] != len(vocab):
            raise ValueError(
                f"the vocabulary has {len(vocab)} tokens but the model predicts {model.output_shape[-1]}: "
                "they come from different training runs"
            )
        self.model, self.vocab, self.config = model, vocab, config
        self.train_lines = train_lines  # for no_copy
        self.line_length = config.corpus.line_length
        self.preprocessor = PoemPreprocessor(vocab, self.line_length, config.corpus.simplify, config.dataset.pad_start)
        self.layout = self.preprocessor.layout
        self.conditioned = condition.is_conditioned(vocab)  # it reads a title / keywords block before each poem
        self.stepper = Stepper(model, config.dataset.pad_start, condition.BLOCK if self.conditioned else 0)
        self.window = self.stepper.window  # None for a sequence model
        self.device_loop = DeviceLoop.of(self.stepper)  # decoding on the device; None: the host loop (sampling)
        # the backward model (reads each poem right to left, same vocabulary and block): a reranking scorer
        backward_stepper = None
        if backward is not None:
            if backward.output_shape[-1] != len(vocab):
                raise ValueError(f"the backward model predicts {backward.output_shape[-1]} tokens, not {len(vocab)}")
            # a backward model always reads a start token (train.directed refuses one without pad_start)
            backward_stepper = Stepper(backward, True, condition.BLOCK if self.conditioned else 0)
        if (reader is not None or critic is not None) and self.window is not None:
            raise ValueError("a reader model or critic reads a sequence model's features: this is a window model")
        self.ranker = Ranker(self.stepper, self.line_length, backward_stepper, reader, critic)  # chooses candidates
        self.han = np.zeros(len(vocab), dtype=bool)
        self.han[vocab.han_ids()] = True
        self._lock = threading.Lock()  # one model, many callers: a batch at a time

    @classmethod
    def load(cls, model_dir: str | Path) -> Poet:
        model_dir = Path(model_dir)
        files = [model_dir / name for name in ("model.keras", "vocab.json", "config.json")]
        if not all(path.is_file() for path in files):
            raise FileNotFoundError(
                f"no trained model in {model_dir} (it needs model.keras, vocab.json and "
                f"config.json): train one with `{training_command(model_dir)}`"
            )
        lines = model_dir / LineIndex.FILE
        if not lines.is_file():
            lines = model_dir / "train_lines.npy"  # what model folders trained before 2026-12-02 hold
        train_lines = LineIndex.load(lines) if lines.is_file() else None
        vocab, backward = Vocab.load(files[1]), backward_dir(model_dir)
        if backward is not None and Vocab.load(backward / "vocab.json").tokens != vocab.tokens:
            raise ValueError(f"{backward} has another vocabulary than {model_dir}: train both on one data set")
        return cls(
            load_model(files[0]),
            vocab,
            load_config_json(files[2]),
            train_lines,
            None if backward is None else load_model(backward / "model.keras"),
            Reader.load(model_dir / READER) if (model_dir / READER).is_file() else None,
            Critic.load(model_dir) if (model_dir / CRITIC).is_file() else None,
        )

    @property
    def poem_length(self) -> int:
        return self.layout.length

    def poem(self, first_line: str | None = None, **options) -> str:
        return self.poems(first_line, num=1, **options)[0]

    def poems(
        self,
        first_line: str | None = None,
        num: int = 1,
        *,
        acrostic: str | None = None,
        template: str | None = None,
        keywords: Sequence[str] | str | None = None,
        title: str | None = None,
        **options,
    ) -> list[str]:
        """`num` poems continuing `first_line`, with `acrostic` characters opening the four lines, or
        filling the blanks (＿) of `template`; with `keywords` (alone or after a first line), each
        keyword stands within one line of every poem. With `title` (alone or with any of these),
        a conditioned model writes every line toward it."""
        if num is None:  # here None is no default: the caller asked for a number of poems
            raise OptionError("num", f"num must be {schema.describe('num')}, got None")
        num = self.settings({**options, "num": num})["num"]
        title = self.title(title)
        if keywords is not None:
            if acrostic is not None or template is not None:
                field = "acrostic" if acrostic is not None else "template"
                raise OptionError(
                    field,
                    "keywords combine with a first line (or stand alone), not with an "
                    f"{field}: keep the characters you want in the {field} instead",
                )
            return keyword_poems(self, first_line, num, keywords, title, options)
        inputs = {"first_lines": first_line, "acrostics": acrostic, "templates": template}
        given = {kind: [value] * num for kind, value in inputs.items() if value is not None}
        if not given and title:  # a title alone: the model writes every line
            given = {"templates": [self.preprocessor.template({})] * num}
        if len(given) != 1:
            raise OptionError(
                "first_line",
                "give one of a first line, acrostic characters (e.g. acrostic='春夏秋冬'), a template "
                "(e.g. template='床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。'), keywords or a title, "
                "not several and not none",
            )
        return self.batch(**given, blocks=self.blocks(num, title), **options)

    def title(self, title: str | None) -> str:
        """A poem's title as given (None: "" for none), checked; raises OptionError (field title)."""
        if title is None:
            return ""
        title = condition.normalise_title(title, self.config.corpus.simplify)
        if not self.conditioned:
            raise OptionError(
                "title",
                "this model was trained without titles (its vocabulary has no conditioning tokens): "
                "use a model trained with dataset.condition = true, such as the committed models/wuyan",
            )
        return title

    def blocks(self, count: int, title: str = "", keywords: Sequence[str] = ()) -> np.ndarray | None:
        """`count` copies of the conditioning block for `title` and `keywords`; None for a model that reads none."""
        if not self.conditioned:
            return None
        return np.repeat(condition.block_ids(self.vocab, title, keywords)[None], count, axis=0)

    def rank(self, poems: Sequence[str], blocks: np.ndarray | None, weights: dict) -> np.ndarray:
        """Per poem, its reranking score (rank.scores.Ranker.scores with `weights`), read after its
        block (one per poem, or None), one batch at a time."""
        tokens = np.stack([self.vocab.encode(poem) for poem in poems])
        with self._lock:
            return self.ranker.scores(tokens, 0, blocks, weights)

    def score(self, poems: Sequence[str], blocks: np.ndarray | None = None) -> np.ndarray:
        """Per poem, the model's mean log-probability of all its characters, read after its block
        (one per poem; None: unconditioned), in one model call."""
        tokens = np.stack([self.vocab.encode(poem) for poem in poems])
        with self._lock, self.stepper.reading(blocks):
            return self.stepper.score(tokens, 0)

    def revise(
        self, poem: str, keep: Sequence[int] = (), *, keep_lines: Sequence[int] = (), num: int = 1, **options
    ) -> list[str]:
        """`num` rewrites of `poem` that keep its characters at `keep` (0-based, counting Han characters
        only) and its whole lines `keep_lines` (0-3), and write the rest anew."""
        n = self.line_length
        if not isinstance(poem, str):
            raise OptionError("poem", f"poem must be a string, a {FORM_NAMES[n]} quatrain, got {type(poem).__name__}")
        text = "".join(poem.split())
        places = [position for position, char in enumerate(text) if is_han(char)]
        if len(places) != 4 * n:  # first: the bounds of keep below are the poem's
            raise OptionError(
                "poem", f"poem must be a {FORM_NAMES[n]} quatrain of {4 * n} Han characters, got {len(places)}"
            )
        chosen = set()
        for field, picks, valid in (("keep", keep, len(places)), ("keep_lines", keep_lines, 4)):
            for pick in picks:
                if isinstance(pick, bool) or not isinstance(pick, (int, np.integer)) or not 0 <= pick < valid:
                    raise OptionError(field, f"{field} must list whole numbers from 0 to {valid - 1}, got {pick!r}")
                chosen |= {int(pick)} if field == "keep" else set(range(int(pick) * n, int(pick) * n + n))
        return self.poems(template=template_of(text, {places[i] for i in chosen}), num=num, **options)

    def batch(
        self,
        first_lines: Sequence[str] | None = None,
        *,
        acrostics: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        blocks: np.ndarray | None = None,
        sampler: str | Sampler | None = None,
        **options,
    ) -> list[str]:
        """One poem per first line, acrostic or template, decoded together; with `blocks` (one per poem,
        `Poet.blocks`), each written toward its title and keywords. Any number of poems: they stream
        through in chunks of CHUNK candidates, so memory stays bounded.

        `options` are those of `options.DecodingOptions` (temperature, top_k, rhyme, tonal,
        rerank, seed, ...); those left out or None come from the model's [generate] config.
        `sampler` is a sampler's name or a `sampling.Sampler`. With rerank > 1, each poem's
        candidates are scored as whole poems by the model, kept characters included.
        """
        settings = self.settings({**options, "sampler": None if isinstance(sampler, Sampler) else sampler})
        givens = self._givens(first_lines, acrostics, templates, settings)
        chooser = sampler if isinstance(sampler, Sampler) else settings_sampler(settings)
        start, rng = self.line_length if first_lines is not None else 0, np.random.default_rng(settings["seed"])
        weights = reranking_weights(settings, first_lines is not None)
        request = Request(settings, chooser, start, weights, rng, stuck_field(settings, templates))
        # streamed: a chunk's poems are decoded, scored and chosen before the next chunk's are written
        step = max(1, CHUNK // settings["rerank"])
        poems = []
        for row in range(0, len(givens), step):
            part = slice(row, row + step)
            poems += self._write(request, givens[part], None if blocks is None else blocks[part])
        if settings["redraw"]:  # each written line redrawn, kept where the reranking score prefers it
            decoding = {**options, "sampler": sampler}
            poems = redraw(self, poems, givens, blocks, decoding, request.weights, settings["redraw"])
        return poems

    def _write(self, request: Request, givens: list[dict[int, str]], blocks: np.ndarray | None) -> list[str]:
        """The poems of one chunk: `rerank` candidates a poem (CHUNK rows at most), decoded together, each
        scored as a whole by the ranker (from what decoding read of it, where it can tell), the best kept."""
        settings, rerank = request.settings, request.settings["rerank"]
        rows = [given for given in givens for _ in range(rerank)]
        tokens, forced = self.preprocessor.prompt(rows)
        constraints = decoding_constraints(
            settings, rows, request.rng, self.vocab, self.layout, self.han, self.train_lines
        )
        blocks = None if blocks is None else np.repeat(blocks, rerank, axis=0)
        decoder = (self.device_loop, self.stepper, request.sampler)
        with self._lock, self.stepper.reading(blocks):
            try:
                tokens, reading = decode(*decoder, tokens, request.start, forced, constraints, request.rng, rerank > 1)
            except ConstraintError as err:
                raise NothingFits(request.stuck, f"{err}: {NOTHING_FITS}") from None
            scores = np.zeros(len(tokens))
            if rerank > 1:
                if reading is not None:  # what decoding read of the candidates: the scorers need not read them again
                    self.stepper.remember(tokens, reading)
                scores = self.ranker.scores(tokens, request.start, blocks, request.weights)
        best = np.arange(len(givens)) * rerank + scores.reshape(-1, rerank).argmax(axis=-1)
        return [self.preprocessor.decode(tokens[row], rows[row]) for row in best]

    def check(
        self,
        first_lines: Sequence[str] | None = None,
        *,
        acrostics: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        **options,
    ) -> dict:
        """Every check `batch` makes of its input, without writing: returns the settings it would use.

        Raises OptionError naming the field (first_line, acrostic, template or an option) of the first problem.
        """
        settings = self.settings(options)
        self._givens(first_lines, acrostics, templates, settings)
        return settings

    def _givens(self, first_lines, acrostics, templates, settings: dict) -> list[dict[int, str]]:
        givens = self.preprocessor.givens(first_lines, acrostics, templates)
        if settings["rhyme"] != "none":
            field = "template" if templates is not None else "first_line"
            for given in givens:
                check_rhymes(given, self.layout, settings["rhyme"], settings["rhyme_first_line"], field)
        return givens

    def settings(self, given: dict) -> dict:
        """Every option: the call's, else the model's [generate] config; checked against the schema.

        Raises OptionError naming the first bad option.
        """
        unknown = sorted(set(given) - set(schema.NAMES))
        if unknown:
            raise OptionError(unknown[0], f"unknown option {unknown[0]!r}; valid options: {', '.join(schema.NAMES)}")
        defaults = self.config.generate
        values = {
            name: getattr(defaults, name) if given.get(name) is None else _plain(given[name]) for name in schema.NAMES
        }
        values = schema.check(values)
        for name in SCORERS:
            what = self.ranker.missing(name)
            if what and given.get(name) is None:
                values[name] = 0.0  # the model's default needs its scorer (a copied folder may lack it)
            if values[name] and what:
                raise OptionError(name, f"{name} = {values[name]} needs {what}: set {name} = 0")
        return values


def _plain(value):
    """NumPy scalars as Python numbers, so the strict schema takes them as a caller means them."""
    return value.item() if isinstance(value, np.generic) else value


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


def generate_poems(
    first_line: str | None = None,
    num: int = 1,
    *,
    model_dir: str | Path | None = None,
    line_length: int | None = None,
    **options,
) -> list[str]:
    """`num` whole poems that begin with `first_line`, e.g. generate_poems("床前明月光", 3, seed=1).

    The first line's length (or the template's) picks the form's model; give line_length=7 for a 七言 acrostic.
    """
    if line_length is None:
        if first_line is not None:
            line_length = len(normalise_first_line(first_line))
        elif options.get("template") is not None:
            line_length = template_form(options["template"])
        else:
            line_length = 5
    return get_poet(model_dir, line_length).poems(first_line, num, **options)


def generate_poetry(first_line: str | None = None, *, model_dir: str | Path | None = None, **options) -> str:
    """A whole four-line poem that begins with `first_line`: generate_poetry("月暗竹亭幽，").

    Or an acrostic (藏头诗): generate_poetry(acrostic="春夏秋冬") (add line_length=7 for 七言); or a
    template, its blanks (＿, _ or □) written and the rest kept where it stands:
    generate_poetry(template="床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。").
    Options: sampler ("greedy", "temperature", "top_k", "top_p", "beam"), temperature,
    top_k, top_p, beam_width, seed (same seed, same poem), no_repeat, rhyme ("pingshui",
    "xin", "none"), rhyme_first_line, tonal, no_copy, rerank (draw this many and keep
    the most probable). Characters of the first line that the model's vocabulary lacks
    are read as <unk> but kept in the poem as given. Bad input raises ValueError.
    """
    return generate_poems(first_line, 1, model_dir=model_dir, **options)[0]
