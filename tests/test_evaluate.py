"""Evaluation: the Kneser-Ney baseline, perplexity, generation metrics, and a whole run on a tiny model."""

import json
import math

import keras
import numpy as np
import pytest

from jueju.cli import main
from jueju.data.dataset import Vocab, make_windows
from jueju.measure.evaluate import format_table, run_evaluation, write_results
from jueju.measure.metrics import bleu2, copy_rate, distinct, form_pattern, generate_batch, generation_metrics
from jueju.measure.perplexity import lstm_log_probs, lstm_perplexity, scored_targets, trigram_kn, trigram_perplexity

from conftest import tiny_overrides

POEMS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "红豆生南国，春来发几枝。愿君多采撷，此物最相思。",
    "空山不见人，但闻人语响。返景入深林，复照青苔上。",
]


@pytest.fixture(scope="module")
def vocab():
    return Vocab.build(POEMS, 200)


# -- Kneser-Ney ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "context", ["", "床", "床前", "明月", "，疑", "龘龘", "月龘", ["<pad>", "床"], ("<unk>", "光")]
)
def test_kn_is_a_proper_distribution_over_the_vocabulary(vocab, context):
    kn = trigram_kn(POEMS, vocab)
    probs = kn.probs(context)
    assert probs.shape == (len(vocab),)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert (probs > 0).all()
    assert np.allclose(np.exp(kn.log_probs(context)), probs)


def test_kn_hand_computed_values():
    vocab = Vocab(["<pad>", "<unk>", "a", "b"])
    kn = trigram_kn(["ab"], vocab)  # <pad> <pad> a b
    # P1: continuation counts a=1, b=1 over 2 bigram types; 0.75 * 2 / 2 spread uniformly over 4 tokens
    p1 = {"a": 0.125 + 0.1875, "b": 0.125 + 0.1875, "<pad>": 0.1875, "<unk>": 0.1875}
    assert kn.probs("zz") == pytest.approx([p1["<pad>"], p1["<unk>"], p1["a"], p1["b"]])  # unseen: P1
    p2_a = 0.25 + 0.75 * p1["a"]  # P2(a | <pad>)
    assert kn.prob(["<unk>", "<pad>"], "a") == pytest.approx(p2_a)
    assert kn.prob("", "a") == pytest.approx(0.25 + 0.75 * p2_a)  # P3(a | <pad> <pad>)
    assert kn.prob("a", "b") == pytest.approx(0.25 + 0.75 * (0.25 + 0.75 * p1["b"]))


def test_kn_reads_unknown_characters_as_unk(vocab):
    kn = trigram_kn(POEMS + ["龘龘明月光，疑是地上霜。举头望明月，低头思故乡。"], vocab)
    assert kn.prob("", "龘") == kn.prob("", "<unk>") > kn.prob("", "鸟")
    assert np.array_equal(kn.probs("龘龘"), kn.probs(["<unk>", "<unk>"]))


def test_kn_prefers_a_training_poem_to_its_shuffle(vocab):
    kn = trigram_kn(POEMS, vocab)
    poem = POEMS[0]
    chars = [i for i, char in enumerate(poem) if char not in "，。" and i > 5]
    shuffled = list(poem)
    for i, j in zip(chars, np.random.default_rng(0).permutation(chars)):
        shuffled[i] = poem[j]
    shuffled = "".join(shuffled)
    assert shuffled != poem and shuffled[:6] == poem[:6]
    assert trigram_perplexity(kn, vocab, [poem]) < trigram_perplexity(kn, vocab, [shuffled]) / 2


def test_scored_targets_are_the_known_han_characters_of_lines_2_to_4(vocab):
    ids, mask, unknown = scored_targets(vocab, [POEMS[0], "床前明月光，龘是地上霜。举头望明月，低头思故乡。"])
    assert ids.shape == (2, 24) and mask.sum(axis=1).tolist() == [15, 14] and unknown == 1
    assert not mask[:, :6].any() and not mask[:, [11, 17, 23]].any()


# -- LSTM perplexity ----------------------------------------------------------------------------


def uniform_model(vocab_size: int, window: int) -> keras.Model:
    ids = keras.Input(shape=(window,), dtype="int32")
    x = keras.layers.Flatten()(keras.layers.Embedding(vocab_size, 4)(ids))
    probs = keras.layers.Dense(vocab_size, activation="softmax", kernel_initializer="zeros")(x)
    return keras.Model(ids, probs)


@pytest.mark.parametrize("pad_start, window", [(True, 6), (False, 6), (False, 8)])
def test_uniform_model_perplexity_is_the_number_of_han_tokens(vocab, pad_start, window):
    model = uniform_model(len(vocab), window)
    ppl = lstm_perplexity(model, vocab, POEMS, window=window, pad_start=pad_start)
    assert ppl == pytest.approx(len(vocab.han_ids()), rel=1e-5)


class OracleModel:
    """Puts probability 0.5 on the true next id of the poem each window comes from: tests the target alignment."""

    def __init__(self, vocab, poems, window):
        ids = vocab.encode("".join(poems)).reshape(len(poems), -1)
        x, y = make_windows(ids, window, pad_start=True)
        self.next = {tuple(row): target for row, target in zip(x.tolist(), y.tolist())}
        self.size = len(vocab)

    def predict(self, x, batch_size=None, verbose=0):
        probs = np.full((len(x), self.size), 0.5 / (self.size - 1))
        probs[np.arange(len(x)), [self.next[tuple(row)] for row in np.asarray(x).tolist()]] = 0.5
        return probs


@pytest.mark.parametrize("pad_start", [True, False])
def test_each_target_is_scored_from_the_window_before_it(vocab, pad_start):
    model = OracleModel(vocab, POEMS, 6)
    scores = lstm_log_probs(model, vocab, POEMS, window=6, pad_start=pad_start, batch_size=7)
    size, han = len(vocab), len(vocab.han_ids())
    expected = math.log(0.5 / (0.5 + (han - 1) * 0.5 / (size - 1)))
    assert len(scores) == 15 * len(POEMS) and np.allclose(scores, expected)


# -- generation metrics -------------------------------------------------------------------------


def test_form_pattern_is_strict():
    five = form_pattern(5)
    assert all(five.fullmatch(poem) for poem in POEMS)
    for bad in [
        "床前明月光，疑是地上霜。举头望明月，低头思故乡",
        "床前明月光。疑是地上霜，举头望明月，低头思故乡。",
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n",
        "床前明月光，疑是地上霜。举头望明月，低头思故<unk>。",
        "床前明月，疑是地上霜。举头望明月，低头思故乡乡。",
    ]:
        assert not five.fullmatch(bad)
    assert form_pattern(7).fullmatch("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。")


def test_distinct_counts_lines_2_to_4_and_bigrams_within_lines():
    poem = "床前明月光，明月明月明。明月明月明，明月明月明。"
    assert distinct([poem], 1) == pytest.approx(2 / 15)
    assert distinct([poem], 2) == pytest.approx(2 / 12)
    assert distinct(POEMS[:1], 1) == pytest.approx(14 / 15)  # 明 twice; the first line is not counted
    assert distinct(["一二三四五，六七八九十。"] * 2, 2) == pytest.approx(
        4 / 8
    )  # 十六 spans a line break: not a bigram


def test_bleu2_known_answers():
    assert bleu2(POEMS, POEMS) == pytest.approx(1.0)
    assert bleu2(POEMS[:1], ["床前明月光，一二三四五。六七八九十，百千万亿兆。"]) == 0.0
    # one of three lines right: unigram precision 5/15, bigram precision 4/12
    hypothesis = "床前明月光，疑是地上霜。一二三四五，六七八九十。"
    assert bleu2([hypothesis], POEMS[:1]) == pytest.approx(1 / 3)
    # clipping: 明 3 and 月 2 times against one each, 明月 twice against once
    clipped = "床前明月光，明月明月明。一二三四五，六七八九十。"
    assert bleu2([clipped], POEMS[:1]) == pytest.approx(math.sqrt(2 / 15 * 1 / 12))
    with pytest.raises(ValueError):
        bleu2(POEMS, POEMS[:2])


def test_copy_rate_counts_lines_2_to_4_found_in_training():
    train_lines = {"疑是地上霜", "低头思故乡", "床前明月光"}
    assert copy_rate(POEMS[:1], train_lines) == pytest.approx(2 / 3)
    assert copy_rate(["床前明月光，一二三四五。六七八九十，百千万亿兆。"], train_lines) == 0.0


def stub_prosody(patch: pytest.MonkeyPatch) -> None:
    """Make jueju.data.prosody's tables know no character (every verdict None)."""
    import jueju.data.prosody
    import jueju.data.tonal

    patch.setattr(jueju.data.prosody, "poem_rhymes", lambda poem, **kwargs: None)
    patch.setattr(jueju.data.tonal, "tonal_compliance", lambda poem, **kwargs: None)


@pytest.fixture
def prosody_stub(monkeypatch):
    stub_prosody(monkeypatch)


def test_generation_metrics_keys_and_unjudged_rhymes(prosody_stub):
    metrics = generation_metrics(POEMS + ["not a poem"], POEMS + ["not a poem"], set(), 5)
    assert metrics["poems"] == 7 and metrics["format"] == pytest.approx(6 / 7)
    assert metrics["rhyme_pingshui"] is None and metrics["rhyme_pingshui_judged"] == 0
    assert metrics["rhyme_xin_judged"] == 0 and metrics["tonal_judged"] == 0
    assert metrics["bleu_2"] == pytest.approx(1.0) and metrics["copy_rate"] == 0.0
    assert generation_metrics(POEMS, None, set(), 5)["bleu_2"] is None


def test_generation_metrics_judge_rhyme_with_the_tables():
    # 霜/乡 (阳), 流/楼 (尤)
    metrics = generation_metrics(POEMS[:1] + POEMS[2:3], None, set(), 5)
    assert metrics["rhyme_pingshui"] == 1.0 and metrics["rhyme_pingshui_judged"] == 2
    assert metrics["rhyme_xin"] == 1.0 and metrics["rhyme_xin_judged"] == 2
    mismatch = "床前明月光，疑是地上霜。举头望明月，低头思故人。"  # 霜 (阳) / 人 (真)
    assert generation_metrics([mismatch], None, set(), 5)["rhyme_pingshui"] == 0.0


# -- a whole run on a tiny trained model --------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    # rhyme off in the model's config, so mode {} needs no prosody tables to generate
    sets = [arg for item in tiny_overrides(root, **{"generate.rhyme": "none"}) for arg in ("--set", item)]
    assert main([*sets, "train"]) == 0
    return root


@pytest.fixture(scope="module")
def results(trained):
    return run_evaluation(
        trained / "models" / "wuyan",
        trained / "data" / "wuyan",
        limit=5,
        modes={"sample": {}, "greedy": {"sampler": "greedy"}},
        seed=3,
    )


@pytest.mark.slow
def test_run_evaluation_end_to_end(results, tmp_path):
    assert results["test_poems"] == 5
    ppl = results["perplexity"]
    assert {"lstm", "trigram_kn", "targets", "oov_targets", "han_tokens"} <= set(ppl)
    assert all(1 < ppl[name] < math.inf for name in ("lstm", "trigram_kn"))
    assert ppl["targets"] + ppl["oov_targets"] == 5 * 15
    assert list(results["generation"]) == ["sample", "greedy", "real"]
    keys = {
        "poems",
        "format",
        "rhyme_pingshui",
        "rhyme_pingshui_judged",
        "rhyme_xin",
        "rhyme_xin_judged",
        "tonal",
        "tonal_judged",
        "distinct_1",
        "distinct_2",
        "copy_rate",
        "bleu_2",
    }
    for name, metrics in results["generation"].items():
        assert keys <= set(metrics), name
        assert metrics["poems"] == 5 and metrics["format"] == 1.0, name
        assert 0 <= metrics["copy_rate"] <= 1 and 0 < metrics["distinct_1"] <= 1
    assert results["generation"]["real"]["bleu_2"] is None
    assert 0 <= results["generation"]["greedy"]["bleu_2"] <= 1
    kept = results["templates"]
    assert kept["poems"] + kept["failed"] == 5 and kept["poems"] >= 1
    assert kept["kept_in_place"] == 1.0 and kept["format"] == 1.0 and kept["kept_per_poem"] > 0
    words = results["keywords"]
    assert words["poems"] == 5 and words["keywords_present"] == 1.0 and words["format"] == 1.0
    assert words["log_prob_per_position"] < 0 and words["log_prob_per_position_without_keywords"] < 0
    path = tmp_path / "out" / "evaluation.json"
    write_results(results, path)
    text = path.read_text("utf-8")
    assert json.loads(text) == results and "\\u" not in text  # characters written as themselves
    table = format_table(results)
    for name in ("sample", "greedy", "real", "LSTM", "trigram KN", "BLEU-2", "templates", "keywords"):
        assert name in table


def test_test_templates_keep_a_share_and_leave_the_rhyme_ends_blank():
    from jueju.measure.conditions import TEMPLATE_KEEP, sample_templates

    poems = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。"] * 200
    templates = sample_templates(poems, 5, seed=1)
    assert all(t[10] == "＿" and t[22] == "＿" for t in templates)
    share = sum(c not in "＿，。" for t in templates for c in t) / (200 * 18)
    assert abs(share - TEMPLATE_KEEP) < 0.03
    assert sample_templates(poems, 5, seed=1) == templates


@pytest.mark.slow
def test_generate_batch_writes_one_poem_per_first_line(trained):
    from jueju.write.poet import Poet

    poet = Poet.load(trained / "models" / "wuyan")
    lines = ["床前明月光", "白日依山尽", "春眠不觉晓", "千山鸟飞绝", "红豆生南国"]
    greedy = {"sampler": "greedy", "rhyme": "none", "no_copy": False}
    one_by_one = [poet.poem(line, **greedy) for line in lines]
    assert generate_batch(poet, lines, greedy, seed=0, batch=2) == one_by_one
    poems = generate_batch(poet, lines, {"rhyme": "none"}, seed=3)
    assert [poem[:5] for poem in poems] == lines and poems == generate_batch(poet, lines, {"rhyme": "none"}, seed=3)


@pytest.mark.slow
def test_run_evaluation_refuses_a_missing_split(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="jueju prepare"):
        run_evaluation(trained / "models" / "wuyan", tmp_path, modes={})


def test_sample_keywords_are_the_rules_words_of_two_lines():
    from jueju.data.condition import KeywordRule
    from jueju.measure.conditions import sample_keywords

    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    rule = KeywordRule([poem] * 30)  # every pair and character common enough
    lines = poem.replace("。", "，").split("，")[:4]
    drawn = sample_keywords([poem] * 50, rule, seed=2)
    for words in drawn:
        assert 1 <= len(words) <= 2 and all(word in {rule.word(line) for line in lines} for word in words)
    assert len({tuple(words) for words in drawn}) > 1  # drawn, not fixed
    assert sample_keywords([poem], KeywordRule([]), seed=2) == [["床前"]]  # no word known: the opening pair


# -- what the conditions keep: titles ---------------------------------------------------------------

TITLES = ["春晓", "秋夜", "送别", "登楼"]
# how poem i (written for TITLES[i]) scores read after the block of TITLES[j]
SCORES = [
    [-1.0, -2.0, -2.0, -3.0],  # its own title first
    [-2.0, -1.0, -1.0, -3.0],  # its own title tied with one rival
    [-1.0, -1.5, -2.0, -3.0],  # two rivals above its own title
    [-1.0, -1.0, -1.0, -2.0],  # every rival above
]


class TitledPoet:
    """A stand-in for a conditioned Poet: it writes poem "i" for the block of TITLES[i], and scores poem i read
    after the block of TITLES[j] as scores[i][j]."""

    def __init__(self, scores):
        from types import SimpleNamespace

        from jueju.data.condition import TOKENS, block_ids

        self.vocab = Vocab.build(POEMS + TITLES, 200, TOKENS)
        self.scores, self.batches = np.array(scores), []
        self.preprocessor = SimpleNamespace(template=lambda given: "＿")
        self.title_of = {block_ids(self.vocab, title).tobytes(): i for i, title in enumerate(TITLES)}

    def batch(self, templates, blocks, seed):
        self.batches.append((templates, blocks, seed))
        return [str(self.title_of[block.tobytes()]) for block in blocks]

    def score(self, poems, blocks):
        return np.array([self.scores[int(poem), self.title_of[block.tobytes()]] for poem, block in zip(poems, blocks)])


def test_title_fidelity_ranks_each_poem_under_its_own_title_among_the_others():
    from jueju.data.condition import block_ids
    from jueju.measure.conditions import title_fidelity

    poet = TitledPoet(SCORES)
    measured = title_fidelity(poet, TITLES, seed=3)
    [(templates, blocks, seed)] = poet.batches  # every poem written in one batch, each toward its own title
    assert seed == 3 and np.array_equal(blocks, np.stack([block_ids(poet.vocab, title) for title in TITLES]))
    assert measured["titles"] == 4 and measured["rivals"] == 4 and measured["chance"] == 0.25
    # ranks 1, 1.5 (the tie shared), 3 and 4; first: 1, 1/2 (a coin toss with the tied rival), 0 and 0
    assert measured["mean_rank"] == pytest.approx(1 + (0 + 0.5 + 2 + 3) / 4)
    assert measured["top1"] == pytest.approx((1 + 0.5) / 4)
    assert [sample["title"] for sample in measured["samples"]] == TITLES


def test_title_fidelity_of_a_model_blind_to_titles_is_chance():
    from jueju.measure.conditions import title_fidelity

    measured = title_fidelity(TitledPoet(np.zeros((4, 4))), TITLES, seed=0)  # every title reads the same
    assert measured["top1"] == pytest.approx(measured["chance"]) and measured["mean_rank"] == pytest.approx(2.5)


def test_condition_metrics_read_the_titled_poems_after_each_block_they_name(monkeypatch):
    from types import SimpleNamespace

    from jueju.data.condition import KeywordRule, block_ids
    from jueju.measure import conditions

    vocab = TitledPoet(SCORES).vocab
    read, fidelity = [], []

    def log_probs(model, vocab, poems, window, pad_start, blocks):  # one log-probability a poem, from its block
        read.append((list(poems), blocks))
        return -np.count_nonzero(blocks, axis=1) / 10

    monkeypatch.setattr(conditions, "lstm_log_probs", log_probs)
    monkeypatch.setattr(conditions, "title_fidelity", lambda poet, titles, seed: fidelity.append((titles, seed)))
    titles = ["春晓", "", "秋夜", "春晓"]  # the second poem has no title: it is left out
    train = POEMS * 30  # every pair common enough to be a keyword
    measured = conditions.condition_metrics(SimpleNamespace(model=None, vocab=vocab), POEMS[:4], titles, train, 5)
    titled = [POEMS[0], POEMS[2], POEMS[3]]
    words = conditions.sample_keywords(titled, KeywordRule(train), 5)
    assert any(len(w) > 1 for w in words)
    expected = {
        "none": [("", ())] * 3,
        "title": [("春晓", ()), ("秋夜", ()), ("春晓", ())],
        "keywords": [("", w) for w in words],
        "title_and_keywords": [(t, w) for t, w in zip(["春晓", "秋夜", "春晓"], words)],
    }
    assert measured["poems"] == 3 and list(measured["perplexity"]) == list(expected)
    for (poems, blocks), (name, given) in zip(read, expected.items()):
        assert poems == titled, name
        assert np.array_equal(blocks, np.stack([block_ids(vocab, t, w) for t, w in given])), name
        assert measured["perplexity"][name] == pytest.approx(math.exp(np.count_nonzero(blocks) / 10 / 3)), name
    assert fidelity == [(["春晓", "秋夜"], 5)]  # each title once
    assert conditions.condition_metrics(SimpleNamespace(model=None, vocab=vocab), POEMS[:2], ["", ""], POEMS, 5) == {
        "poems": 0
    }
