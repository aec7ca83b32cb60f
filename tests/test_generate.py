"""Generation guarantees the format whatever the weights: tested on a small untrained model."""

import re

import pytest

from jueju.config import load_config
from jueju.data.dataset import Vocab
from jueju.model.network import build_model
from jueju.write.poet import Poet, normalise_first_line

POEMS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
]
FIVE = re.compile(r"^([\u4e00-\u9fff]{5})，([\u4e00-\u9fff]{5})。([\u4e00-\u9fff]{5})，([\u4e00-\u9fff]{5})。$")


@pytest.fixture(scope="module", params=["window", "sequence"])
def poet(request):
    """A window model and a sequence model: the format guarantees hold for both."""
    config = load_config(
        overrides=[
            "model.input=embedding",
            "model.lstm_units=16",
            "model.embedding_dim=8",
            "generate.rhyme=none",
            "generate.no_copy=false",
            f"dataset.context={request.param}",
        ]
    )
    vocab = Vocab.build(POEMS, 200)
    return Poet(build_model(config.model, len(vocab), config.model_window), vocab, config)


@pytest.mark.parametrize("sampler", ["greedy", "temperature", "top_k", "top_p"])
def test_every_poem_has_the_exact_format(poet, sampler):
    poems = poet.poems("床前明月光", num=64, sampler=sampler, seed=3)
    assert len(poems) == 64
    for poem in poems:
        match = FIVE.match(poem)
        assert match, poem
        assert match.group(1) == "床前明月光"
        assert all(char in poet.vocab for char in poem[6:])


def test_no_repeat_means_no_character_twice(poet):
    for poem in poet.poems("床前明月光", num=32, seed=1, no_repeat=True):
        chars = [c for c in poem if c not in "，。"]
        assert len(chars) == len(set(chars)), poem


def test_same_seed_same_poem_and_different_seeds_differ(poet):
    assert poet.poem("白日依山尽", seed=11) == poet.poem("白日依山尽", seed=11)
    assert len(set(poet.poems("白日依山尽", num=8, seed=2, sampler="temperature", temperature=2.0))) > 1


@pytest.mark.parametrize("given", ["床前明月光", "床前明月光，", "床前明月光,", " 床前 明月光。", "牀前明月光"])
def test_first_line_is_normalised(poet, given):
    assert poet.poem(given, seed=0).startswith("床前明月光，")


def test_characters_outside_the_vocabulary_are_kept_as_given(poet):
    poem = poet.poem("龘龘明月光", seed=0)
    assert FIVE.match(poem) and poem.startswith("龘龘明月光，")


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("，", "empty"),
        ("床前明月", "5"),
        ("床前明月光光", "5"),
        ("moon light", "Han"),
        ("床前明月1", "Han"),
        ("床前🌙月光", "Han"),
        (None, "a first line, acrostic characters"),
        (b"abc", "string"),
        (12345, "string"),
        ("床前明月光疑是地上霜", "5"),
    ],
)
def test_bad_first_lines_are_value_errors_that_say_why(poet, bad, message):
    with pytest.raises(ValueError, match=message):
        poet.poem(bad)


def test_normalise_without_a_model_accepts_five_or_seven():
    assert normalise_first_line("朝辞白帝彩云间，") == "朝辞白帝彩云间"
    with pytest.raises(ValueError, match="5 .五言. or 7 .七言."):
        normalise_first_line("朝辞白帝彩云")


def test_a_vocabulary_that_does_not_match_the_model_is_refused(poet):
    with pytest.raises(ValueError, match="different training runs"):
        Poet(poet.model, Vocab.build(POEMS[:1], 20), poet.config)


def test_the_inference_model_has_no_optimizer_state(poet, tmp_path):
    import keras

    from jueju.model.network import compile_model, load_model, save_inference_model

    model = compile_model(keras.models.clone_model(poet.model), 0.01)
    x = poet.vocab.encode("床前明月光，" * 2).reshape(2, 6)
    y = x if poet.window is None else poet.vocab.encode("疑是")  # a sequence model: a target per position
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "full.keras")
    save_inference_model(model, tmp_path / "slim.keras")
    slim = load_model(tmp_path / "slim.keras")
    assert not slim.compiled
    assert (tmp_path / "slim.keras").stat().st_size < 0.6 * (tmp_path / "full.keras").stat().st_size  # Adam: 3x
