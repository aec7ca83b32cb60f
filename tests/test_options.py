"""The generation options are defined once (jueju.options) and every surface agrees with it:
the [generate] config section, the flags of `jueju generate`, the API's request model and
Poet's checking, each parametrised over every option."""

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from jueju import options
from jueju.cli import _parser
from jueju.config import ConfigError, load_config
from jueju.serve.app import PoemRequest
from jueju.write.poet import Poet

NUMERIC = [name for name in options.NAMES if options.kind_of(name) in (int, float) and not options.choices_of(name)]
CHOICES = [name for name in options.NAMES if options.choices_of(name)]


def poet_settings(**given):
    """Poet's own check of a call's options (the config supplies what the call leaves out), for a
    Poet with a backward model and a reader model, so that every option's whole range is valid."""
    scorers = SimpleNamespace(missing=lambda option: None)  # every scorer present
    return Poet.settings(SimpleNamespace(config=load_config(), ranker=scorers), given)


def test_known_bounds():
    assert options.bounds_of("rerank") == options.bounds_of("beam_width") == (1, options.MAX_CANDIDATES) == (1, 64)
    assert options.bounds_of("temperature") == (0.01, 10.0)
    assert options.bounds_of("num") == (1, 10_000)
    assert options.choices_of("sampler") == ("greedy", "temperature", "top_k", "top_p", "beam")
    assert options.describe("rerank") == "an integer from 1 to 64"


@pytest.mark.parametrize("name", NUMERIC)
def test_every_surface_takes_the_bounds_and_refuses_beyond_them(name):
    low, high = options.bounds_of(name)
    step = 1 if options.kind_of(name) is int else 0.001
    for value in (low, high):
        assert getattr(load_config(overrides=[f"generate.{name}={value}"]).generate, name) == value
        assert poet_settings(**{name: value})[name] == value
        if name in options.DECODING:
            assert getattr(PoemRequest.model_validate({name: value}), name) == value
    for value in (low - step, high + step):
        with pytest.raises(ConfigError, match=f"generate.{name}"):
            load_config(overrides=[f"generate.{name}={value}"])
        with pytest.raises(options.OptionError, match=f"{name} must be {options.describe(name)}") as err:
            poet_settings(**{name: value})
        assert err.value.field == name
        if name in options.DECODING:
            with pytest.raises(ValidationError) as invalid:
                PoemRequest.model_validate({name: value})
            assert invalid.value.errors()[0]["loc"] == (name,)


@pytest.mark.parametrize("name", CHOICES)
def test_every_surface_takes_exactly_the_choices(name):
    flags = {action.dest: action for action in _generate_parser()._actions}
    assert tuple(flags[name].choices) == options.choices_of(name)
    for value in options.choices_of(name):
        assert getattr(load_config(overrides=[f"generate.{name}={value}"]).generate, name) == value
        assert poet_settings(**{name: value})[name] == value
    with pytest.raises(ConfigError, match="is not one of"):
        load_config(overrides=[f"generate.{name}=nope"])
    with pytest.raises(options.OptionError) as err:
        poet_settings(**{name: "nope"})
    assert err.value.field == name
    with pytest.raises(ValidationError):
        PoemRequest.model_validate({name: "nope"})


def _generate_parser():
    commands = next(action for action in _parser()._actions if action.dest == "command")
    return commands.choices["generate"]


@pytest.mark.parametrize("name", options.NAMES)
def test_every_option_has_a_flag_a_config_key_and_an_api_field(name):
    flags = {action.dest for action in _generate_parser()._actions}
    assert name in flags
    assert hasattr(load_config().generate, name)
    assert name in PoemRequest.model_fields or name == "num"
    if name in options.DECODING:
        assert PoemRequest.model_fields[name].description == options.FIELDS[name].description


@pytest.mark.parametrize("value", [True, "3", 2.5, None])
def test_poet_takes_integers_strictly(value):
    if value is None:  # None is "the config's default", not a bad value
        assert poet_settings(rerank=None)["rerank"] == load_config().generate.rerank
        return
    with pytest.raises(options.OptionError) as err:
        poet_settings(rerank=value)
    assert err.value.field == "rerank" and repr(value) in str(err.value)


def test_unknown_options_are_named():
    with pytest.raises(options.OptionError, match="unknown option 'colour'") as err:
        poet_settings(colour="red")
    assert err.value.field == "colour"
