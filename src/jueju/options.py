"""The generation options: one typed schema, with every bound, from which the rest is derived.

`DecodingOptions` says what each option is and which values are valid. From it come the
[generate] section of the config (`config_fields`), the flags of `jueju generate`
(`add_flags`), the JSON API's request fields (`optional_fields`) and Poet's checking of a
call's options (`check`). A bad value raises `OptionError`, which names its field, so the
API can answer 422 for that field without reading the message.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

SAMPLERS = ("greedy", "temperature", "top_k", "top_p", "beam")
RHYME_SCHEMES = ("pingshui", "xin", "none")
MAX_CANDIDATES = 64  # rerank and beam_width: rows decoded per poem asked for, so they bound a call's work
MAX_NUM = 10_000  # poems per call: more exhausts memory instead of failing
MAX_SEED = 2**63 - 1


class OptionError(ValueError):
    """A value a caller gave that cannot be used; `field` names the option or input it came in."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class DecodingOptions(BaseModel):
    """How poems are written: the sampler, the constraints, the seed and how many."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sampler: Literal[SAMPLERS] = Field(description="decoding strategy: greedy, temperature, top_k, top_p or beam")
    # beyond this range logits / temperature overflows or is NaN, and decoding picks forbidden tokens
    temperature: float = Field(ge=0.01, le=10.0, description="softmax temperature (lower = safer)")
    top_k: int = Field(ge=1, le=100_000, description="top_k: draw among the k most likely characters")
    top_p: float = Field(ge=0.01, le=1.0, description="top_p: draw among the most likely characters up to p")
    beam_width: int = Field(ge=1, le=MAX_CANDIDATES, description="beam: partial poems kept at each step")
    rhyme: Literal[RHYME_SCHEMES] = Field(description="rhyme of lines 2 and 4: pingshui (平水韵), xin (中华新韵), none")
    rhyme_first_line: bool = Field(description="line 1 rhymes too (首句入韵)")
    tonal: bool = Field(description="follow a standard tonal pattern (平仄, 一三五不论)")
    no_copy: bool = Field(description="never output a line (after the first) of the training corpus")
    rerank: int = Field(ge=1, le=MAX_CANDIDATES, description="draw this many per poem and keep the most probable")
    backward: float = Field(
        ge=0.0,
        le=10.0,
        description="reranking poems of a given first line: weight of how much their lines 2-4 tell of it (0 = off)",
    )
    reader: float = Field(
        ge=0.0,
        le=10.0,
        description="reranking: weight of how a blind reader would score each poem, by the reader model (0 = off)",
    )
    critic: float = Field(
        ge=0.0,
        le=10.0,
        description="reranking: weight of what the critic predicts readers would say of each poem (0 = off)",
    )
    redraw: int = Field(
        ge=0,
        le=MAX_CANDIDATES,
        description="after reranking, redraw each written line this many times and keep the best version (0 = off)",
    )
    no_repeat: bool = Field(description="never repeat a character within a poem")
    num: int = Field(ge=1, le=MAX_NUM, description="poems to write")
    seed: int | None = Field(ge=0, le=MAX_SEED, description="same seed, same poems (empty: new poems each time)")


FIELDS: dict[str, FieldInfo] = DecodingOptions.model_fields
NAMES = tuple(FIELDS)  # every option, in the schema's order
DECODING = tuple(name for name in NAMES if name != "num")  # what one batch of poems is written with


def check(values: dict) -> dict:
    """`values` (every option) checked against the schema; raises OptionError for the first bad one."""
    try:
        return DecodingOptions.model_validate(values).model_dump()
    except ValidationError as err:
        raise option_error(err, values) from None


def option_error(err: ValidationError, values: dict) -> OptionError:
    """The first problem of a pydantic ValidationError as an OptionError naming field, value and what is valid."""
    problem = err.errors()[0]
    field = str(problem["loc"][0]) if problem["loc"] else "options"
    if field not in FIELDS:
        return OptionError(field, f"unknown option {field!r}; valid options: {', '.join(NAMES)}")
    return OptionError(field, f"{field} must be {describe(field)}, got {values.get(field)!r}")


def describe(name: str) -> str:
    """What values option `name` takes, in words: 'an integer from 1 to 16', 'one of: greedy, ...'."""
    kind, choices, (low, high) = kind_of(name), choices_of(name), bounds_of(name)
    if choices:
        return "one of: " + ", ".join(map(str, choices))
    words = {bool: "true or false", int: "an integer", float: "a number"}[kind]
    if low is not None and high is not None:
        words += f" from {low} to {high}"
    elif low is not None:
        words += f" of at least {low}"
    return words + (" or None" if optional(name) else "")


def kind_of(name: str) -> type:
    """The Python type of option `name` (Literal choices and None taken off)."""
    annotation = FIELDS[name].annotation
    if typing.get_origin(annotation) is Literal:
        return type(typing.get_args(annotation)[0])
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return args[0] if args else annotation


def choices_of(name: str) -> tuple | None:
    annotation = FIELDS[name].annotation
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else None


def bounds_of(name: str) -> tuple:
    """(lowest, highest) valid value of a numeric option; None where unbounded."""
    low = high = None
    for rule in FIELDS[name].metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


def optional(name: str) -> bool:
    return type(None) in typing.get_args(FIELDS[name].annotation)


def config_fields() -> list[tuple]:
    """The [generate] config section's fields for dataclasses.make_dataclass, with config's range/choices rules."""
    fields = []
    for name in NAMES:
        kind = kind_of(name) | None if optional(name) else kind_of(name)
        rules = {"choices": choices_of(name)} if choices_of(name) else {}
        if kind_of(name) in (int, float) and not choices_of(name):
            rules["range"] = bounds_of(name)
        fields.append((name, kind, dataclasses.field(metadata=rules)))
    return fields


def optional_fields() -> dict:
    """Every option as an optional field (None: the model's default), for pydantic.create_model."""
    return {
        name: (
            FIELDS[name].annotation | None,
            Field(None, description=FIELDS[name].description, ge=bounds_of(name)[0], le=bounds_of(name)[1]),
        )
        for name in DECODING
    }


def add_flags(parser: argparse.ArgumentParser, names: typing.Iterable[str] = DECODING) -> None:
    """One command-line flag per option (--top-k for top_k); left out, each is None."""
    for name in names:
        flag, kind, help_text = "--" + name.replace("_", "-"), kind_of(name), FIELDS[name].description
        if kind is bool and name.startswith("no_"):  # --no-copy / --allow-copy, not --no-no-copy
            pair = parser.add_mutually_exclusive_group()
            pair.add_argument(flag, dest=name, action="store_const", const=True, help=help_text)
            pair.add_argument(
                "--allow-" + name[3:].replace("_", "-"),
                dest=name,
                action="store_const",
                const=False,
                help="the opposite of " + flag,
            )
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=kind,
                choices=choices_of(name),
                help=help_text,
                metavar=None if choices_of(name) else name.upper(),
            )
