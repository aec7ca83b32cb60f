"""Bad input never crashes generation: every call returns poems of the exact format or raises ValueError.

Property-based (hypothesis) over arbitrary strings, objects and options, on a small
untrained model (the format is enforced by decoding, whatever the weights), used through
`Poet` directly and, saved to a folder, through `generate_poetry(model_dir=...)`; then
the command line's errors, and generation from many threads at once.
"""

from __future__ import annotations

import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import jueju.write.poet as jg
import jueju.write.preprocess as jueju_preprocess
from jueju.cli import main
from jueju.config import load_config
from jueju.data.dataset import Vocab
from jueju.model.network import build_model
from jueju.text import HAN
from jueju.write.poet import Poet, generate_poems, generate_poetry, normalise_first_line

POEMS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
]
# The model's [generate] settings: the plain decoder, so that every first line can succeed
# (rhyme and no_copy have their own tests elsewhere).
SETTINGS = ["generate.rhyme=none", "generate.no_copy=false", "generate.tonal=false"]
IN_VOCAB = sorted(set("".join(POEMS)) - set("，。"))
TRADITIONAL = list("牀頭舉鄉萬蹤獨釣鳥處聞風聲葉見東廣門車馬")
OUT_OF_VOCAB = ["龘", "𠀀", "鑫", "㐀", "﨎"]  # incl. extension B, extension A, a compatibility ideograph
PUNCTUATION = list("，,。.？?！!；;、：:“”《》()（）-—…·") + [" ", "\u3000", "\t", "\n", "\u200b"]
ODD = ["a", "Z", "1", "９", "🌙", "😀", "é", "\x00", "\ufeff", "\U0010ffff", "ㄅ", "あ", "한"]
HYPOTHESIS = settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])


def poem_pattern(n: int) -> re.Pattern:
    line = f"({HAN.pattern}{{{n}}})"
    return re.compile(f"^{line}，{line}。{line}，{line}。$")


def assert_poem(poem: str, first_line: str, vocab: Vocab) -> None:
    match = poem_pattern(len(first_line)).match(poem)
    assert match, poem
    assert match.group(1) == first_line  # kept as given (after normalising), even outside the vocabulary
    assert all(char in vocab for char in "".join(match.groups()[1:])), poem


def outcome(call, *args, **kwargs):
    """("ok", result) or ("ValueError", message); anything else is raised, failing the test."""
    try:
        result = "ok", call(*args, **kwargs)
    except ValueError as err:
        message = str(err)
        assert message and "\n" not in message, repr(message)
        result = "ValueError", message
    event(result[0])  # shown by --hypothesis-show-statistics
    return result


@pytest.fixture(scope="module")
def poet():
    config = load_config(overrides=["model.input=embedding", "model.lstm_units=16", "model.embedding_dim=8", *SETTINGS])
    vocab = Vocab.build(POEMS, 200)
    poet = Poet(build_model(config.model, len(vocab), config.dataset.window), vocab, config)
    poet.poems("床前明月光", seed=0)  # compile the model step once, outside any deadline
    return poet


@pytest.fixture(scope="module")
def model_dir(poet, tmp_path_factory):
    """The same model saved the way training saves it, for generate_poetry(model_dir=...)."""
    folder = tmp_path_factory.mktemp("model")
    poet.model.save(folder / "model.keras")
    poet.vocab.save(folder / "vocab.json")
    poet.config.save_json(folder / "config.json")
    yield folder
    jg._poets.pop(folder.resolve(), None)


han_like = st.text(alphabet=st.sampled_from(IN_VOCAB + TRADITIONAL + OUT_OF_VOCAB + PUNCTUATION + ODD), max_size=12)


@st.composite
def near_lines(draw) -> str:
    """Mostly 5 Han characters, spelled every which way; sometimes one length or character off."""
    n = draw(st.sampled_from([5, 5, 5, 5, 0, 1, 4, 6, 7, 10]))
    chars = draw(st.lists(st.sampled_from(IN_VOCAB + TRADITIONAL + OUT_OF_VOCAB), min_size=n, max_size=n))
    for _ in range(draw(st.integers(0, 2))):  # spaces anywhere
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from([" ", "\u3000", "\t", "\n"])))
    if draw(st.integers(0, 4)) == 0:  # now and then a character that is not Han
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from(ODD + PUNCTUATION)))
    end = draw(st.sampled_from(["", "", "，", ",", "。", ".", "！", "?", "，。", " ，", "；", "、"]))
    return "".join(chars) + end


objects = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=20),
    st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.builds(bytearray, st.binary(max_size=5)),
    st.builds(object),
    st.just(["床前明月光"]),
)


# --------------------------------------------------------------------------
# First lines


@HYPOTHESIS
@given(text=st.one_of(st.text(max_size=20), han_like, near_lines(), near_lines()))
def test_any_string_gives_poems_of_the_format_or_a_value_error(poet, text):
    kind, result = outcome(poet.poems, text, num=2, seed=1)
    if kind == "ok":
        line = normalise_first_line(text, 5)
        assert len(result) == 2
        for poem in result:
            assert_poem(poem, line, poet.vocab)
    else:
        assert "first line" in result


@HYPOTHESIS
@given(text=st.one_of(han_like, near_lines()))
def test_generate_poetry_agrees_with_the_poet(poet, model_dir, text):
    kind, result = outcome(generate_poetry, text, model_dir=model_dir, seed=3)
    expected = outcome(poet.poem, text, seed=3)
    if kind == "ok":
        assert expected == ("ok", result)
        assert_poem(result, normalise_first_line(text, 5), poet.vocab)
    else:
        assert "first line" in result
        # generate_poetry also reads 7 characters as a 七言 line, which this 五言 model then refuses
        assert expected[0] == "ValueError"


@settings(max_examples=60, deadline=5000)
@given(thing=objects)
def test_any_non_string_is_a_value_error_saying_it_must_be_a_string(poet, model_dir, thing):
    for call in (lambda: poet.poems(thing), lambda: generate_poetry(thing, model_dir=model_dir)):
        kind, message = outcome(call)
        assert kind == "ValueError" and "first line" in message


@pytest.mark.parametrize(
    "given_line, first_line",
    [
        ("床前明月光", "床前明月光"),
        ("床前明月光，", "床前明月光"),  # full-width comma
        ("床前明月光,", "床前明月光"),  # half-width comma
        ("床前明月光。", "床前明月光"),
        ("  床前 明月光\u3000", "床前明月光"),  # spaces, ideographic space
        ("牀前明月光", "床前明月光"),  # traditional
        ("舉頭望明月", "举头望明月"),
        ("龘龘明月光", "龘龘明月光"),  # outside the vocabulary: read as <unk>, kept as given
        ("𠀀山鸟飞绝", "𠀀山鸟飞绝"),
    ],
)
def test_good_first_lines_in_every_spelling(poet, model_dir, given_line, first_line):
    for poem in poet.poems(given_line, num=3, seed=5):
        assert_poem(poem, first_line, poet.vocab)
    assert_poem(generate_poetry(given_line, model_dir=model_dir, seed=5), first_line, poet.vocab)


@pytest.mark.parametrize(
    "bad, says",
    [
        ("", "empty"),
        (" \t\n\u3000", "empty"),
        ("，。,.", "empty"),
        ("床前明月", "5"),
        ("床前明月光疑", "5"),
        ("朝辞白帝彩云间", "5"),
        ("床前明月光疑是地上霜", "5"),
        ("moonlight", "Han"),
        ("床前明月1", "Han"),
        ("床前明月１", "Han"),
        ("床前🌙月光", "Han"),
        ("床前😀月光", "Han"),
        ("床前,明月光", "Han"),
        ("床前明月光，疑是地上霜。", "Han"),
        ("床前「明月」光", "Han"),
        ("床前\u200b明月光", "Han"),
        ("ㄅㄆㄇㄈㄉ", "Han"),
        ("あいうえお", "Han"),
        (None, "first line"),
        (b"\xe5\xba\x8a\xe5\x89\x8d", "string"),
        (bytearray(b"ab"), "string"),
        (12345, "string"),
        (3.14, "string"),
        (["床前明月光"], "string"),
        (True, "string"),
    ],
)
def test_bad_first_lines_say_what_is_wrong(poet, model_dir, bad, says):
    with pytest.raises(ValueError, match=says):
        poet.poems(bad)
    with pytest.raises(ValueError):
        generate_poetry(bad, model_dir=model_dir)


@pytest.mark.parametrize(
    "text",
    [
        "床" * 1_000_000,
        "牀" * 1_000_000,
        "a" * 1_000_000,
        "床前明月光" + " " * 1_000_000,
        "床前明月光" + "，" * 1_000_000,
    ],
)
def test_a_megabyte_of_input_is_refused_quickly_without_conversion(poet, model_dir, monkeypatch, text):
    converted = []
    real = jueju_preprocess.to_simplified
    monkeypatch.setattr(jueju_preprocess, "to_simplified", lambda s: converted.append(len(s)) or real(s))
    started = time.perf_counter()
    with pytest.raises(ValueError, match="first line") as err:
        poet.poems(text)
    with pytest.raises(ValueError):
        generate_poetry(text, model_dir=model_dir)
    assert time.perf_counter() - started < 2
    assert all(n <= 64 for n in converted), converted  # nothing long went through OpenCC
    assert len(str(err.value)) < 300  # and the message does not echo the megabyte


# --------------------------------------------------------------------------
# Options


@pytest.mark.parametrize(
    "options, names",
    [
        ({"num": 0}, "num"),
        ({"num": -1}, "num"),
        ({"num": "3"}, "num"),
        ({"num": 2.0}, "num"),
        ({"num": True}, "num"),
        ({"num": None}, "num"),
        ({"num": 10_001}, "num"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": "1"}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"temperature": 1e308}, "temperature"),
        ({"temperature": 1e-300}, "temperature"),  # these wrote <pad> poems
        ({"top_k": 0}, "top_k"),
        ({"top_k": -3}, "top_k"),
        ({"top_k": "5"}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"sampler": "top_p", "top_p": 0}, "top_p"),
        ({"sampler": "top_p", "top_p": 1.5}, "top_p"),
        ({"sampler": "top_p", "top_p": math.nan}, "top_p"),
        ({"sampler": "top_p", "top_p": "0.9"}, "top_p"),
        ({"sampler": "nope"}, "sampler"),
        ({"sampler": ""}, "sampler"),
        ({"sampler": 3}, "sampler"),
        ({"sampler": ["greedy"]}, "sampler"),
        ({"seed": "x"}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": [1, 2]}, "seed"),
    ],
)
def test_bad_options_are_value_errors_naming_the_option(poet, model_dir, options, names):
    with pytest.raises(ValueError, match=names):
        poet.poems("床前明月光", **{"num": 1, **options})
    with pytest.raises(ValueError, match=names):
        generate_poems("床前明月光", **{"num": 1, **options}, model_dir=model_dir)


def mostly(good, bad):
    """Three draws in four from `good`, so that whole calls often succeed."""
    return st.one_of(good, good, good, bad)


good_or_bad = {
    "num": mostly(st.integers(1, 4), st.one_of(st.integers(-2, 0), st.just("3"), st.floats(allow_nan=True), st.none())),
    "sampler": mostly(
        st.sampled_from(["greedy", "temperature", "top_k", "top_p", None]),
        st.one_of(st.sampled_from(["nope", "", "TOP_K"]), st.integers(), st.lists(st.integers(), max_size=1)),
    ),
    "temperature": mostly(
        st.floats(0.01, 10),
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 0), st.just("0.8")),
    ),
    "top_k": mostly(st.integers(1, 300), st.one_of(st.integers(-2, 0), st.floats(allow_nan=True), st.just("20"))),
    "top_p": mostly(st.floats(0.01, 1), st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just("0.9"))),
    "seed": mostly(
        st.one_of(st.integers(0, 2**64), st.none()),
        st.one_of(st.integers(-5, -1), st.just("x"), st.floats(allow_nan=True)),
    ),
}


@HYPOTHESIS
@given(options=st.fixed_dictionaries({}, optional=good_or_bad))
def test_any_options_give_poems_or_a_value_error_naming_an_option(poet, options):
    kind, result = outcome(poet.poems, "床前明月光", **options)
    if kind == "ok":
        assert len(result) == (options.get("num") or 1)
        for poem in result:
            assert_poem(poem, "床前明月光", poet.vocab)
    else:
        assert any(name in result for name in good_or_bad), result


# --------------------------------------------------------------------------
# The command line


def run_cli(capsys, *args):
    """Exit status, and stderr, of `jueju ARGS`; argparse's own exits included."""
    try:
        status = main(list(args))
    except SystemExit as exit:
        status = exit.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def assert_one_line_error(status, err, *words):
    """A user error (docs/reliability.md, Bad input): exit status 2, one `jueju ...: error: ...` line."""
    assert status == 2, f"exit status {status!r}, not 2, for {err!r}"
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("jueju ") and "error:" in err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize(
    "args, words",
    [
        (["generate", "床前明月", "--model", "MODEL"], ["5 (五言)"]),
        (["generate", "moon", "--model", "MODEL"], ["Han"]),
        (["generate", "床前明月光", "--model", "MODEL", "--num", "0"], ["num"]),
        (["generate", "床前明月光", "--model", "MODEL", "--temperature", "-1"], ["temperature"]),
        (["generate", "床前明月光", "--model", "MODEL", "--top-k", "0"], ["top_k"]),
        (["generate", "床前明月光", "--model", "MODEL", "--sampler", "nope"], ["sampler"]),
        (["generate", "床前明月光", "--model", "MODEL", "--seed", "-1"], ["seed"]),
        (["generate", "床前明月光", "--model", "/nonexistent"], ["no trained model in /nonexistent"]),
        (["--config", "missing.ini", "generate", "床前明月光"], ["config file not found", "missing.ini"]),
        (["generate", "床前明月光", "--config", "missing.ini"], ["missing.ini"]),
        (["--set", "train.nope=1", "train"], ["unknown config key train.nope"]),
        (["--set", "nope.key=1", "train"], ["unknown config section [nope]"]),
        (["--set", "train.epochs=lots", "train"], ["train.epochs"]),
        (["--set", "train.epochs", "train"], ["bad override"]),
    ],
)
def test_cli_errors_are_one_line_without_traceback(capsys, model_dir, args, words):
    args = [str(model_dir) if arg == "MODEL" else arg for arg in args]
    args = [
        *args[:1],
        *(["--set", "generate.no_copy=false", "--set", "generate.rhyme=none"] if args[0] == "generate" else []),
        *args[1:],
    ]
    assert_one_line_error(*run_cli(capsys, *args), *words)


def test_cli_unknown_keys_in_a_config_file(capsys, tmp_path):
    ini = tmp_path / "mine.ini"
    ini.write_text("[train]\nepochs = 3\nepoch = 4\n", "utf-8")
    assert_one_line_error(*run_cli(capsys, "--config", str(ini), "train"), "unknown config key train.epoch")


def test_cli_a_config_file_that_is_not_ini_is_a_one_line_error(capsys, tmp_path):
    ini = tmp_path / "mine.ini"
    ini.write_text("not an ini file at all\n", "utf-8")
    assert_one_line_error(*run_cli(capsys, "--config", str(ini), "train"), str(ini))


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nope"],
        ["generate", "床前明月光", "--num", "many"],
        ["generate", "床前明月光", "--top-k", "1.5"],
        ["train", "--resume", "--finetune", "x.keras"],
        ["generate", "--no-such-flag", "床前明月光"],
    ],
)
def test_cli_usage_errors_exit_2_with_the_error_on_the_last_line(capsys, args):
    # argparse prints its usage line first, then one "jueju ...: error: ..." line.
    status, err = run_cli(capsys, *args)
    assert status == 2
    assert err.rstrip("\n").splitlines()[-1].startswith("jueju") and "error:" in err.splitlines()[-1]


def test_cli_generates_from_a_model_folder(capsys, model_dir):
    status = main(
        [
            "generate",
            "床前明月光",
            "牀前明月光，",
            "--model",
            str(model_dir),
            "--num",
            "2",
            "--seed",
            "4",
            "--set",
            "generate.no_copy=false",
            "--set",
            "generate.rhyme=none",
        ]
    )
    poems = capsys.readouterr().out.split()
    assert status == 0 and len(poems) == 4
    assert poems[:2] == poems[2:]  # the traditional spelling is the same line
    for poem in poems:
        assert_poem(poem, "床前明月光", Vocab.build(POEMS, 200))


# --------------------------------------------------------------------------
# Many threads at once


def test_generate_poetry_from_8_threads_matches_single_threaded(model_dir, monkeypatch):
    lines = ["床前明月光", "白日依山尽", "千山鸟飞绝", "春眠不觉晓"]
    jobs = [(lines[i % len(lines)], 100 + i) for i in range(32)]  # 8 workers x 4 calls, distinct seeds
    alone = {job: generate_poetry(job[0], model_dir=model_dir, seed=job[1], sampler="temperature") for job in jobs[:8]}
    jg._poets.pop(model_dir.resolve(), None)  # the threads race to load it, too
    loads = []
    real_load = jg.Poet.load.__func__
    monkeypatch.setattr(
        jg.Poet, "load", classmethod(lambda cls, folder: loads.append(folder) or real_load(cls, folder))
    )

    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(
            pool.map(lambda job: generate_poetry(job[0], model_dir=model_dir, seed=job[1], sampler="temperature"), jobs)
        )

    vocab = Vocab.build(POEMS, 200)
    for (line, _seed), poem in zip(jobs, together):
        assert_poem(poem, line, vocab)
    for job, poem in zip(jobs, together):
        if job in alone:
            assert poem == alone[job], job
    assert len(loads) == 1  # loaded once, not once per thread
