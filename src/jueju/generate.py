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
from pathlib import Path

import numpy as np

from . import condition, prosody
from . import options as schema
from .config import FORMS, Config, load_config, load_config_json
from .constraints import Characters, Constraint, LineIndex, NoCopy, NoRepeat, Rhyme, Tones, choose_patterns
from .dataset import UNK_ID, Vocab
from .device_loop import DeviceLoop, decode
from .model import load_model
from .options import OptionError
from .plan import normalise_keywords, plans
from .preprocess import (
    FORM_NAMES,
    LINE_ENDS,
    PoemPreprocessor,
    normalise_acrostic,
    normalise_first_line,
    normalise_template,
    template_form,
    template_of,
)
from .reader import READER, Reader, poem_features
from .sampling import ConstraintError, Sampler, make_sampler
from .stepper import SequenceReader, Stepper
from .text import is_han

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


KEYWORD_PLANS = 8  # plans drawn, and poems written, per keyword poem asked for (at least rerank)
MI_WEIGHT = 1.0  # reranking poems written toward a title or keywords: weight of their mutual information with it


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
        self.backward = None
        if backward is not None:
            if backward.output_shape[-1] != len(vocab):
                raise ValueError(f"the backward model predicts {backward.output_shape[-1]} tokens, not {len(vocab)}")
            # a backward model always reads a start token (train.directed refuses one without pad_start)
            self.backward = Stepper(backward, True, condition.BLOCK if self.conditioned else 0)
        self.reader = reader  # the reader model (jueju.reader): how a blind reader would score a poem
        if reader is not None and self.window is not None:
            raise ValueError("a reader model reads a sequence model's features: this is a window model")
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
            return self._keyword_poems(first_line, num, keywords, title, options)
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

    def _keyword_poems(self, first_line: str | None, num: int, keywords, title: str, options: dict) -> list[str]:
        """Per poem, KEYWORD_PLANS plans (plan.plans: where each keyword stands), a poem written for
        each as a template, and the one the model finds most probable as a whole kept."""
        settings = self.settings(options)
        words = normalise_keywords(keywords, self.config.corpus.simplify)
        given = {}
        if first_line is not None:
            given = dict(enumerate(normalise_first_line(first_line, self.line_length, self.config.corpus.simplify)))
        draws = max(settings["rerank"], KEYWORD_PLANS)
        rng = np.random.default_rng(settings["seed"])
        drafts = plans(
            words,
            self.layout,
            num * draws,
            rng,
            given,
            settings["rhyme"],
            settings["rhyme_first_line"],
            settings["tonal"],
        )
        templates = [self.preprocessor.template(draft) for draft in drafts]
        blocks = self.blocks(len(templates), title, words)
        written = self.batch(templates=templates, blocks=blocks, **{**options, "rerank": 1})
        tokens = np.stack([self.vocab.encode(poem) for poem in written])
        with self._lock, self.stepper.reading(blocks):
            backward = backward_weight(settings, first_line is not None)
            scores = self._choice_scores(tokens, 0, blocks, backward, settings["reader"])
        best = scores.reshape(num, draws).argmax(axis=-1) + np.arange(num) * draws
        return [written[row] for row in best]

    def score(self, poems: Sequence[str], blocks: np.ndarray | None = None) -> np.ndarray:
        """Per poem, the model's mean log-probability of all its characters, read after its block
        (one per poem; None: unconditioned), in one model call."""
        tokens = np.stack([self.vocab.encode(poem) for poem in poems])
        with self._lock, self.stepper.reading(blocks):
            return self.stepper.score(tokens, 0)

    def _choice_scores(
        self, tokens: np.ndarray, start: int, blocks: np.ndarray | None, backward: float = 0.0, reader: float = 0.0
    ) -> np.ndarray:
        """What reranking compares (the stepper conditioned on `blocks`): each whole poem's mean
        log-probability, plus MI_WEIGHT times how much more probable its block makes it (the pointwise
        mutual information of poem and title/keywords: a poem about its title beats a generic one),
        plus `backward` times how much lines 2-4 tell of line 1 (`first_line_information`: do the
        later lines explain the first? the one score of these that prefers real poems to ours,
        docs/results.md), plus `reader` times how a blind reader would score it (the reader model:
        what readers see among our poems and the other scores barely do, docs/results.md)."""
        scores = self.stepper.score(tokens, start)
        if blocks is not None:
            with self.stepper.reading(None):
                plain = self.stepper.score(tokens, start)
            scores = scores + MI_WEIGHT * (scores - plain)
        # settings() made sure there is a backward model and a reader model where their weights are set
        if backward:
            scores = with_information(scores, self.first_line_information(tokens, blocks), backward)
        if reader:
            scores = scores + reader * self.reader.predict(poem_features(self.stepper, tokens, self.line_length))
        return scores

    def first_line_information(self, tokens: np.ndarray, blocks: np.ndarray | None = None) -> np.ndarray:
        """Per poem (ids, read after `blocks`), how much its lines 2-4 tell of its first line: the
        backward model's mean log-probability of line 1's characters read after the rest, right to
        left. Among poems of one first line this orders them as the pointwise mutual information of
        line 1 and the rest, as log P(line 1) is the same for all of them."""
        with self.backward.reading(blocks):
            return self.backward.score(tokens[:, ::-1], tokens.shape[1] - self.line_length)

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
        """One poem per first line, acrostic or template, all decoded together as one batch; with
        `blocks` (one per poem, `Poet.blocks`), each written toward its title and keywords.

        `options` are those of `options.DecodingOptions` (temperature, top_k, rhyme, tonal,
        rerank, seed, ...); those left out or None come from the model's [generate] config.
        `sampler` is a sampler's name or a `sampling.Sampler`. With rerank > 1, each poem's
        candidates are scored as whole poems by the model, kept characters included.
        """
        settings = self.settings({**options, "sampler": None if isinstance(sampler, Sampler) else sampler})
        givens = self._givens(first_lines, acrostics, templates, settings)
        givens = [given for given in givens for _ in range(settings["rerank"])]
        tokens, forced = self.preprocessor.prompt(givens)
        start = self.line_length if first_lines is not None else 0
        rng = np.random.default_rng(settings["seed"])
        constraints = self._constraints(settings, givens, rng)
        chooser = sampler if isinstance(sampler, Sampler) else self._sampler(settings)
        rows = None if blocks is None else np.repeat(blocks, settings["rerank"], axis=0)
        with self._lock, self.stepper.reading(rows):
            try:
                tokens = decode(self.device_loop, self.stepper, chooser, tokens, start, forced, constraints, rng)
            except ConstraintError as err:
                raise NothingFits(
                    _stuck_field(settings, templates),
                    f"{err}: no character of this model's vocabulary fits the "
                    "rhyme, tonal and no-repeat constraints together here; try rhyme none, tonal "
                    "off or other given characters",
                ) from None
            scores = (
                self._choice_scores(
                    tokens, start, rows, backward_weight(settings, first_lines is not None), settings["reader"]
                )
                if settings["rerank"] > 1
                else np.zeros(len(tokens))
            )
        best = scores.reshape(-1, settings["rerank"]).argmax(axis=-1)
        rows = np.arange(len(best)) * settings["rerank"] + best
        return [self.preprocessor.decode(tokens[row], givens[row]) for row in rows]

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
                self._check_rhymes(given, settings["rhyme"], settings["rhyme_first_line"], field)
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
        needs = {
            "backward": (
                self.backward,
                "a backward model beside this one (<model>-backward, trained with model.direction = backward)",
            ),
            "reader": (self.reader, f"a reader model in the model's folder ({READER}, scripts/fit_reader.py)"),
        }
        for name, (scorer, what) in needs.items():
            if scorer is None and given.get(name) is None:
                values[name] = 0.0  # the model's default needs its scorer (a copied folder may lack it)
            if values[name] and scorer is None:
                raise OptionError(name, f"{name} = {values[name]} needs {what}: set {name} = 0")
        return values

    def _sampler(self, settings: dict) -> Sampler:
        return make_sampler(
            settings["sampler"],
            temperature=settings["temperature"],
            top_k=settings["top_k"],
            top_p=settings["top_p"],
            beam_width=settings["beam_width"],
        )

    def _constraints(self, settings: dict, givens: list[dict[int, str]], rng) -> list[Constraint]:
        """The decoding constraints, most important first: where they cannot all hold, the last give way."""
        constraints: list[Constraint] = [Characters(self.han)]
        scheme = settings["rhyme"]
        if scheme != "none":
            constraints.append(Rhyme(self.vocab.tokens, self.layout, scheme, settings["rhyme_first_line"]))
        if settings["tonal"]:  # tones of the rhyme scheme's era: classical unless 中华新韵 is asked for
            tone_scheme = "xin" if scheme == "xin" else "pingshui"
            patterns = choose_patterns(givens, self.layout, rng, settings["rhyme_first_line"], tone_scheme)
            constraints.append(Tones(self.vocab.tokens, self.layout, patterns, tone_scheme))
        if settings["no_copy"]:
            if self.train_lines is None:
                raise OptionError(
                    "no_copy",
                    "no_copy needs the training corpus's lines (train_lines.npz beside the "
                    "model, written by jueju train); pass no_copy=False to go without",
                )
            constraints.append(NoCopy(self.train_lines, self.layout, len(self.vocab)))
        if settings["no_repeat"]:
            constraints.append(NoRepeat(len(self.vocab), exempt=(UNK_ID,)))
        return constraints

    def _check_rhymes(self, given: dict[int, str], scheme: str, first_line: bool, field: str) -> None:
        """Given characters at rhyme positions must be level-tone (平) and share a rhyme group, or the
        rhyme cannot hold: refused, naming them, before any writing."""
        lines = (0, 1, 3) if first_line else (1, 3)
        kept = [(line, given[self.layout.end(line)]) for line in lines if self.layout.end(line) in given]
        for line, char in kept:
            if prosody.PING not in prosody.tones(char, scheme):
                where = "the first line ends" if line == 0 and field == "first_line" else f"line {line + 1} ends"
                raise OptionError(
                    field,
                    f"{where} in {char!r}, which is not a level-tone (平) character known to the {scheme} table, "
                    f"so it cannot rhyme: turn {'rhyme_first_line' if line == 0 else 'rhyme'} off or "
                    "end it differently",
                )
        groups = [prosody.rhyme_groups(char, scheme) for _, char in kept]
        if groups and not frozenset.intersection(*groups):
            shown = "、".join(char for _, char in kept)
            raise OptionError(
                field,
                f"the kept rhyme characters {shown} share no rhyme group in the {scheme} "
                "table: keep characters that rhyme, or turn rhyme off",
            )


class NothingFits(OptionError, ConstraintError):
    """No character satisfies the constraints somewhere: an OptionError naming the option to relax,
    and still a sampling.ConstraintError for callers that retry in smaller batches (jueju.evaluate)."""


def _stuck_field(settings: dict, templates) -> str:
    """The option to blame when no character fits: the last constraint asked for that cannot give way."""
    if settings["tonal"]:
        return "tonal"
    if settings["rhyme"] != "none":
        return "rhyme"
    return "template" if templates is not None else "first_line"


def _plain(value):
    """NumPy scalars as Python numbers, so the strict schema takes them as a caller means them."""
    return value.item() if isinstance(value, np.generic) else value


def with_information(forward: np.ndarray, information: np.ndarray, backward: float) -> np.ndarray:
    """A reranking score: the forward score plus `backward` times `Poet.first_line_information`."""
    return forward + backward * information


def backward_weight(settings: dict, first_line_given: bool) -> float:
    """The weight of `Poet.first_line_information` in reranking: `settings`' backward where line 1 is
    given, else 0. Where line 1 is written too, the score would favour unlikely first lines (and
    readers scored such poems lower, docs/results.md)."""
    return settings["backward"] if first_line_given else 0.0


BACKWARD = "{}-backward"  # the folder of a model's backward scorer, beside it: models/wuyan -> models/wuyan-backward


def backward_dir(model_dir: str | Path) -> Path | None:
    """The folder of the backward model that reranks for the model in `model_dir`; None if it has none."""
    folder = Path(model_dir).with_name(BACKWARD.format(Path(model_dir).name))
    return folder if (folder / "model.keras").is_file() else None


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
