"""The trained models committed under models/ (五言 wuyan, 七言 qiyan) work right after set-up, with no training."""

import re

import pytest

from jueju.config import FORMS, PROJECT_ROOT

MODEL = PROJECT_ROOT / "models" / "wuyan"
FIVE = re.compile(r"^([\u4e00-\u9fff]{5}[，。]){4}$")
pytestmark = pytest.mark.skipif(not (MODEL / "model.keras").is_file(), reason=f"no committed model in {MODEL}")


def form_model(length: int):
    """The committed model folder of a form, skipping the test when that form has none."""
    folder = PROJECT_ROOT / "models" / FORMS[length]
    if not (folder / "model.keras").is_file():
        pytest.skip(f"no committed {FORMS[length]} model in {folder}")
    return folder


def form_pattern(length: int) -> re.Pattern:
    return re.compile(rf"^([\u4e00-\u9fff]{{{length}}}[，。]){{4}}$")


def test_generate_poetry_uses_the_committed_model():
    from jueju import generate_poetry

    poem = generate_poetry("床前明月光", seed=1)
    assert FIVE.match(poem) and poem.startswith("床前明月光，") and poem.endswith("。")


@pytest.mark.parametrize("length", FORMS)
def test_committed_model_carries_what_generation_needs(length):
    model = form_model(length)
    for name in ("model.keras", "vocab.json", "config.json", "train_lines.npz", "evaluation.json"):
        assert (model / name).is_file(), name
    size = sum(path.stat().st_size for path in model.iterdir() if path.is_file())
    assert size <= 25_000_000  # the 25 MB, in decimal megabytes


def test_qiyan_is_picked_by_the_first_lines_length_and_writes_acrostics():
    form_model(7)
    from jueju import generate_poems, generate_poetry

    seven = form_pattern(7)
    poem = generate_poetry("朝辞白帝彩云间", seed=1)
    assert seven.match(poem) and poem.startswith("朝辞白帝彩云间，")
    for poem in generate_poems(acrostic="春夏秋冬", num=3, line_length=7, seed=2, tonal=True):
        assert seven.match(poem) and [line[0] for line in re.split("[，。]", poem)[:4]] == list("春夏秋冬"), poem
    for poem in generate_poems(keywords=["秋", "故乡"], num=2, line_length=7, seed=3):
        assert seven.match(poem) and "秋" in poem and "故乡" in poem


def test_acrostic_and_every_constraint_with_the_committed_model():
    from jueju import generate_poems

    poems = generate_poems(acrostic="春夏秋冬", num=4, seed=2, tonal=True, rhyme="pingshui")
    assert all(
        FIVE.match(poem) and [line[0] for line in re.split("[，。]", poem)[:4]] == list("春夏秋冬") for poem in poems
    )


# The first lines of 16 well-known 五绝: varied, real openings.
FIRST_LINES = [
    "床前明月光",
    "白日依山尽",
    "春眠不觉晓",
    "千山鸟飞绝",
    "红豆生南国",
    "空山不见人",
    "松下问童子",
    "独坐幽篁里",
    "移舟泊烟渚",
    "向晚意不适",
    "北斗七星高",
    "君自故乡来",
    "人闲桂花落",
    "日暮苍山远",
    "山中相送罢",
    "绿蚁新醅酒",
]


@pytest.fixture(scope="module")
def poet():
    from jueju.write.poet import get_poet

    return get_poet(MODEL)  # the same Poet generate_poetry uses (loaded once)


def later_lines(poem):
    return [line for line in re.split("[，。]", poem) if line][1:]


def copied_lines(poet, poems):
    """Lines 2-4 of the poems found in the training corpus's lines (train_lines.npz, what no_copy checks)."""
    import numpy as np

    from jueju.write.constraints import LineIndex

    lines = [line for poem in poems for line in later_lines(poem)]
    ids = np.array([poet.vocab.encode(line) for line in lines], dtype=np.int64)
    found = poet.train_lines.contains(LineIndex.hash(ids).astype(np.uint32))
    return [line for line, hit in zip(lines, found) if hit]


def test_rhyme_with_the_committed_model(poet):
    from jueju.data import prosody

    poems = poet.batch(FIRST_LINES, seed=3, rhyme="pingshui", tonal=False)
    for poem in poems:
        assert FIVE.match(poem), poem
        # True, not None: a character the table lacks is never chosen for a rhyme position
        assert prosody.poem_rhymes(poem, "pingshui") is True, poem
        assert all("平" in prosody.tones(line[-1]) for line in later_lines(poem)[::2]), poem  # lines 2 and 4


def test_tonal_pattern_with_the_committed_model(poet):
    from jueju.data import prosody, tonal

    poems = poet.batch(FIRST_LINES, seed=4, rhyme="pingshui", tonal=True)
    for poem in poems:
        assert FIVE.match(poem), poem
        # lines 2-4 (the model's) follow a standard pattern, 一三五不论; the given first lines do not all
        assert tonal.tonal_compliance(poem, lines_checked=(1, 2, 3)) is True, poem
        assert prosody.poem_rhymes(poem, "pingshui") is True, poem


def test_no_copy_with_the_committed_model(poet):
    assert poet.train_lines is not None and len(poet.train_lines.hashes) > 100_000
    options = dict(sampler="greedy", rhyme="pingshui", tonal=False)
    # greedy decoding from real first lines reproduces training lines (measured: 5 of these 48 lines) ...
    assert copied_lines(poet, poet.batch(FIRST_LINES, no_copy=False, **options))
    # ... and no_copy rules every one of them out
    poems = poet.batch(FIRST_LINES, no_copy=True, **options)
    assert all(FIVE.match(poem) for poem in poems)
    assert copied_lines(poet, poems) == []
    assert copied_lines(poet, poet.batch(FIRST_LINES, seed=5, no_copy=True)) == []  # and with the default sampler


@pytest.mark.parametrize("length", FORMS)
def test_the_committed_evaluation_meets_the_readme(length):
    """models/<form>/evaluation.json's headline figures (docs/results.md): what `jueju evaluate` measured."""
    import json

    results = json.loads((form_model(length) / "evaluation.json").read_text("utf-8"))
    perplexity, generation, modes = results["perplexity"], results["generation"], results["modes"]
    assert results["test_poems"] >= 800
    assert perplexity["lstm"] <= 0.7 * perplexity["trigram_kn"], perplexity  # at least 30 % below the trigram
    assert set(modes) == {"sample", "rhyme", "rhyme+tone"} and set(generation) == {*modes, "real"}
    for name, mode in modes.items():
        metrics = generation[name]
        assert metrics["poems"] == results["test_poems"] and metrics["failed"] == 0, name
        assert metrics["format"] == 1.0, name
        assert metrics["copy_rate"] <= 0.02, name
        if mode["rhyme"] == "pingshui":
            assert metrics["rhyme_pingshui"] == 1.0 and metrics["rhyme_pingshui_judged"] == metrics["poems"], name
        if mode["rhyme"] == "pingshui" and mode["tonal"]:
            assert metrics["tonal_234"] == 1.0 and metrics["tonal_234_judged"] == metrics["poems"], name
    assert modes["rhyme"]["rhyme"] == modes["rhyme+tone"]["rhyme"] == "pingshui" and modes["rhyme+tone"]["tonal"]
    assert generation["real"]["format"] == 1.0  # the test poems themselves are well-formed quatrains
    kept, words = results["templates"], results["keywords"]
    assert kept["failed"] == 0 and kept["kept_in_place"] == kept["format"] == kept["rhyme_pingshui"] == 1.0
    assert words["keywords_present"] == words["format"] == words["rhyme_pingshui"] == 1.0


@pytest.mark.parametrize("length", FORMS)
def test_the_committed_models_write_toward_a_title(length):
    """The conditioned models (docs/results.md, Titles and keywords): conditioning lowers perplexity,
    a poem's own title ranks first far above chance, and unconditioned use is no worse than before."""
    import json

    from jueju import generate_poetry

    before = {5: 221.8, 7: 163.3}[length]  # each form's unconditioned model's perplexity
    measured = json.loads((form_model(length) / "evaluation.json").read_text("utf-8"))["conditioning"]
    perplexity, fidelity = measured["perplexity"], measured["title_fidelity"]
    assert perplexity["title"] < perplexity["none"] and perplexity["keywords"] < perplexity["none"], perplexity
    assert perplexity["none"] <= before * 1.01
    assert fidelity["titles"] == 100 and fidelity["top1"] >= 2 * fidelity["chance"], fidelity
    assert form_pattern(length).match(generate_poetry(title="送友人", line_length=length, seed=1, rerank=4))


@pytest.mark.parametrize("length", FORMS)
def test_the_committed_backward_models_judge_first_lines_better_than_chance(length):
    """models/<form>-backward (docs/results.md, Choosing among whole poems): of the reranking scores,
    how much lines 2-4 tell of line 1 finds the real poem among 15 of ours far more often than chance,
    and the committed defaults use it."""
    import json

    from jueju.write.poet import Poet

    measured = json.loads((form_model(length) / "evaluation.json").read_text("utf-8"))["reranking"]
    scores, chance = measured["scores"], measured["chance"]
    assert measured["poems"] >= 190 and chance == pytest.approx(1 / 16)
    assert scores["first_line_information"]["real_first"] >= 1.5 * chance, scores
    assert scores["backward=0"]["real_first"] < chance, scores  # the forward model prefers our poems
    poet = Poet.load(form_model(length))
    assert poet.ranker.backward is not None and poet.settings({})["backward"] > 0
    first = {5: "白日依山尽", 7: "朝辞白帝彩云间"}[length]
    assert form_pattern(length).match(poet.poem(first, seed=1))


def test_the_committed_reader_model_orders_rated_poems_as_readers_did():
    """models/wuyan/reader.npz (docs/results.md, A reader model): fitted to readers' scores of 960
    of our poems (docs/ratings/), it agrees with them better than the forward model alone, and the
    committed 五言 defaults rerank by it; 七言 has no ratings, so no reader model."""
    import csv

    import numpy as np

    from jueju.rank.reader import poem_features
    from jueju.write.poet import Poet

    poet = Poet.load(MODEL)
    assert poet.ranker.reader is not None and poet.settings({})["reader"] > 0
    with open(PROJECT_ROOT / "docs" / "ratings" / "wuyan-2026-12-04.tsv", encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    tokens = np.stack([poet.vocab.encode(row["poem"]) for row in rows])
    features = poem_features(poet.stepper, tokens, poet.line_length)
    coherence = np.array([float(row["C"]) for row in rows])

    def agreement(score):
        return np.corrcoef(np.argsort(np.argsort(score)), np.argsort(np.argsort(coherence)))[0, 1]

    assert agreement(poet.ranker.reader.predict(features)) > agreement(features[:, -1]) + 0.1  # in-sample
    assert FIVE.match(poet.poem("白日依山尽", seed=1))
    qiyan = PROJECT_ROOT / "models" / "qiyan"
    if (qiyan / "model.keras").is_file():
        assert Poet.load(qiyan).settings({})["reader"] == 0.0
