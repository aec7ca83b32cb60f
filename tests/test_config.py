"""The config loads from cfg.ini, layers files and overrides, and refuses bad keys and values by name."""

import pytest

from jueju.config import DEFAULT_CONFIG, ConfigError, load_config


def test_defaults_load_and_resolve_paths():
    config = load_config()
    assert config.corpus.line_length == 5 and config.dataset.window == 6
    assert (
        config.model.lstm_units == [384, 384]
        and config.dataset.context == "sequence"
        and config.model.dense_units == []
    )
    assert config.generate.seed is None
    assert config.data_dir == DEFAULT_CONFIG.parents[1] / "data" / "wuyan"


def test_every_key_in_cfg_ini_has_a_comment():
    lines = DEFAULT_CONFIG.read_text("utf-8").splitlines()
    for previous, line in zip(lines, lines[1:]):
        if "=" in line and not line.startswith(";"):
            assert previous.startswith(";"), f"key without a comment above it: {line}"


def test_overrides_and_user_file(tmp_path):
    user = tmp_path / "mine.ini"
    user.write_text("[train]\nepochs = 7\n[corpus]\nline_length = 7\n", "utf-8")
    config = load_config(user, ["train.epochs=9", "model.lstm_units=64, 32", "generate.seed=3"])
    assert config.train.epochs == 9 and config.corpus.line_length == 7
    assert config.model.lstm_units == [64, 32] and config.generate.seed == 3
    assert config.form == "qiyan" and config.model_dir.name == "qiyan"


@pytest.mark.parametrize(
    "override, named",
    [
        ("train.epochs=0", "train.epochs"),
        ("train.epochs=two", "train.epochs"),
        ("train.epochs=1.5", "train.epochs"),
        ("train.epoch=3", "train.epoch"),
        ("trian.epochs=3", "[trian]"),
        ("model.input=glove", "word2vec, embedding, one-hot"),
        ("corpus.line_length=6", "5, 7"),
        ("corpus.stanzas=maybe", "true or false"),
        ("model.lstm_units=64,x", "model.lstm_units"),
        ("dataset.valid_fraction=0.9", "between 0.0 and 0.5"),
        ("no_equals_sign", "section.key=value"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(override, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace(".", r"\.")):
        load_config(overrides=[override])


def test_unknown_key_in_a_file_is_refused(tmp_path):
    user = tmp_path / "bad.ini"
    user.write_text("[model]\nlayers = 3\n", "utf-8")
    with pytest.raises(ConfigError, match="unknown config key model.layers; valid keys"):
        load_config(user)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.ini")


def test_config_round_trips_through_json(tmp_path):
    from jueju.config import load_config_json

    config = load_config(overrides=["model.dense_units=128", "generate.seed=5"])
    config.save_json(tmp_path / "config.json")
    assert load_config_json(tmp_path / "config.json") == config
