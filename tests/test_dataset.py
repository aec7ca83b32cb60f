"""Vocabulary, split and sliding windows: known answers, round trips, disjointness."""

import numpy as np
import pytest

from jueju.data.dataset import (
    PAD_ID,
    UNK_ID,
    Vocab,
    Windows,
    build_dataset,
    encode_poems,
    make_samples,
    make_windows,
    quatrain_samples,
    split_poems,
)

POEM = "菩提本无树，明镜亦非台。本来无一物，何处惹尘埃。"


def test_windows_known_answer_as_in_the_original():
    vocab = Vocab.build([POEM], 100)
    x, y = make_windows(encode_poems([POEM], vocab), window=6, pad_start=False)
    rows = [(vocab.decode(features), vocab.decode([label])) for features, label in zip(x, y)]
    assert rows[:2] == [("菩提本无树，", "明"), ("提本无树，明", "镜")]
    assert rows[-1] == (POEM[-7:-1], "。")
    assert len(rows) == len(POEM) - 6


def test_pad_start_makes_every_character_a_target():
    vocab = Vocab.build([POEM], 100)
    x, y = make_windows(encode_poems([POEM], vocab), window=6, pad_start=True)
    assert len(y) == len(POEM)
    assert x[0].tolist() == [PAD_ID] * 6 and vocab.decode([y[0]]) == "菩"
    assert x[1].tolist()[:5] == [PAD_ID] * 5 and vocab.decode(x[1][-1:]) == "菩"
    assert (vocab.decode(x[6]), vocab.decode([y[6]])) == ("菩提本无树，", "明")


def test_windows_of_many_poems_never_cross_poems():
    poems = [POEM, "床前明月光，疑是地上霜。举头望明月，低头思故乡。"]
    vocab = Vocab.build(poems, 100)
    x, y = make_windows(encode_poems(poems, vocab), window=6, pad_start=False)
    assert x.dtype == np.int32 and x.shape == (2 * 18, 6)
    assert vocab.decode(x[18]) == "床前明月光，"


def test_vocab_round_trip_and_reserved_tokens(tmp_path):
    vocab = Vocab.build([POEM, "床前明月光"], 10)
    assert vocab.tokens[:2] == ["<pad>", "<unk>"] and len(vocab) == 10
    assert vocab.tokens[2] in "，。无本"  # the most frequent characters come first
    known = "".join(vocab.tokens[2:])
    assert vocab.decode(vocab.encode(known)) == known
    assert vocab.encode("龘")[0] == UNK_ID
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json").tokens == vocab.tokens
    assert set(vocab.tokens[i] for i in vocab.han_ids()) == set(known) - set("，。")


def test_vocab_build_is_deterministic():
    texts = ["甲乙丙", "丙乙甲", "丁"]
    assert Vocab.build(texts, 6).tokens == Vocab.build(list(reversed(texts)), 6).tokens


def test_split_is_disjoint_and_keeps_stanzas_in_train():
    quatrains = [f"{i:05d}" for i in range(1000)]
    stanzas = [f"s{i}" for i in range(50)] + quatrains[:5]
    splits = split_poems(quatrains, stanzas, 0.1, 0.05, seed=1)
    sets = {name: set(poems) for name, poems in splits.items()}
    assert len(sets["valid"]) == 100 and len(sets["test"]) == 50
    assert not sets["train"] & sets["valid"] and not sets["train"] & sets["test"] and not sets["valid"] & sets["test"]
    assert all(poem.startswith("s") is False for poem in sets["valid"] | sets["test"])
    assert len(splits["train"]) == 850 + 50
    assert split_poems(quatrains, stanzas, 0.1, 0.05, seed=1) == splits


def test_build_dataset_writes_what_the_trainer_reads(tmp_path):
    quatrains = [
        POEM,
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
        "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
    ] * 1
    counts = build_dataset(
        quatrains,
        [],
        tmp_path,
        vocab_size=50,
        window=6,
        pad_start=True,
        valid_fraction=0.34,
        test_fraction=0.34,
        seed=0,
    )
    assert counts["train_poems"] + counts["valid_poems"] + counts["test_poems"] == 3
    train = Windows.load(tmp_path / "train.npz")
    assert train.x.shape == (counts["train_windows"], 6) and train.x.shape[0] == 24 * counts["train_poems"]
    assert Vocab.load(tmp_path / "vocab.json").tokens[:2] == ["<pad>", "<unk>"]


@pytest.mark.parametrize("context", ["sequence", "window"])
def test_quatrain_samples_are_those_of_the_training_quatrains(tmp_path, context):
    quatrains = [
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
        "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
        "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
        POEM,
    ]
    stanzas = ["红豆生南国，春来发几枝。愿君多采撷，此物最相思。", "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"]
    counts = build_dataset(
        quatrains,
        stanzas,
        tmp_path,
        vocab_size=100,
        window=6,
        pad_start=True,
        context=context,
        valid_fraction=0.25,
        test_fraction=0.25,
        seed=0,
    )
    assert counts["train_quatrains"] == 2 and counts["train_poems"] == 4
    train_poems = (tmp_path / "train.txt").read_text("utf-8").split()
    vocab = Vocab.load(tmp_path / "vocab.json")
    only = Windows(*make_samples(encode_poems(train_poems[:2], vocab), context, 6, True))
    assert set(train_poems[:2]) <= set(quatrains) and not set(train_poems[2:]) & set(quatrains)
    kept = quatrain_samples(Windows.load(tmp_path / "train.npz"), counts)
    assert np.array_equal(kept.x, only.x) and np.array_equal(kept.y, only.y)


@pytest.mark.parametrize(
    "counts, message",
    [({"train_poems": 4}, "jueju prepare --force"), ({"train_poems": 4, "train_quatrains": 0}, "no real quatrains")],
)
def test_quatrain_samples_refused_say_what_to_do(counts, message):
    with pytest.raises(ValueError, match=message):
        quatrain_samples(Windows(np.zeros((4, 24), np.int32), np.zeros((4, 24), np.int32)), counts)


def test_unequal_poem_lengths_are_refused():
    with pytest.raises(ValueError, match="same length"):
        encode_poems(["一二三", "一二"], Vocab.build(["一二三"], 10))
