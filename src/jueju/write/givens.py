"""The givens and constraints of a request: what decoding must keep and must not write.

From the checked settings (jueju.options) and the givens (characters kept where they stand:
a first line, acrostic characters, a template's), the constraints each decoding step masks by,
most important first (where they cannot all hold, the last give way), the sampler, and the
checks that refuse a request no poem can meet before any writing.
"""

from __future__ import annotations

import numpy as np

from jueju.data import prosody
from jueju.data.dataset import UNK_ID, Vocab
from jueju.options import OptionError
from jueju.write.constraints import (
    Characters,
    Constraint,
    Layout,
    LineIndex,
    NoCopy,
    NoRepeat,
    Rhyme,
    Tones,
    choose_patterns,
)
from jueju.write.sampling import ConstraintError, Sampler, make_sampler


def settings_sampler(settings: dict) -> Sampler:
    """The sampler the settings name, with its parameters."""
    return make_sampler(
        settings["sampler"],
        temperature=settings["temperature"],
        top_k=settings["top_k"],
        top_p=settings["top_p"],
        beam_width=settings["beam_width"],
    )


def decoding_constraints(
    settings: dict,
    givens: list[dict[int, str]],
    rng,
    vocab: Vocab,
    layout: Layout,
    han: np.ndarray,
    train_lines: LineIndex | None,
) -> list[Constraint]:
    """The decoding constraints, most important first: where they cannot all hold, the last give way."""
    constraints: list[Constraint] = [Characters(han)]
    scheme = settings["rhyme"]
    if scheme != "none":
        constraints.append(Rhyme(vocab.tokens, layout, scheme, settings["rhyme_first_line"]))
    if settings["tonal"]:  # tones of the rhyme scheme's era: classical unless 中华新韵 is asked for
        tone_scheme = "xin" if scheme == "xin" else "pingshui"
        patterns = choose_patterns(givens, layout, rng, settings["rhyme_first_line"], tone_scheme)
        constraints.append(Tones(vocab.tokens, layout, patterns, tone_scheme))
    if settings["no_copy"]:
        if train_lines is None:
            raise OptionError(
                "no_copy",
                "no_copy needs the training corpus's lines (train_lines.npz beside the "
                "model, written by jueju train); pass no_copy=False to go without",
            )
        constraints.append(NoCopy(train_lines, layout, len(vocab)))
    if settings["no_repeat"]:
        constraints.append(NoRepeat(len(vocab), exempt=(UNK_ID,)))
    return constraints


def check_rhymes(given: dict[int, str], layout: Layout, scheme: str, first_line: bool, field: str) -> None:
    """Given characters at rhyme positions must be level-tone (平) and share a rhyme group, or the
    rhyme cannot hold: refused, naming them, before any writing."""
    lines = (0, 1, 3) if first_line else (1, 3)
    kept = [(line, given[layout.end(line)]) for line in lines if layout.end(line) in given]
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
    and still a sampling.ConstraintError for callers that retry in smaller batches (jueju.measure.evaluate)."""


def stuck_field(settings: dict, templates) -> str:
    """The option to blame when no character fits: the last constraint asked for that cannot give way."""
    if settings["tonal"]:
        return "tonal"
    if settings["rhyme"] != "none":
        return "rhyme"
    return "template" if templates is not None else "first_line"
