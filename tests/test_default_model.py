"""The trained models committed under models/ (五言 wuyan, 七言 qiyan) work right after set-up, with no training,
and measure as their evaluation.json says: perplexity and title fidelity are measured again here on a sample
of the test split, which `jueju prepare` cuts from ../shared/data (skipped where it is absent)."""

import dataclasses
import re

import pytest

from jueju.config import FORMS, PROJECT_ROOT

from conftest import SHARED_DATA

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
    """The conditioned models (docs/results.md, Titles and keywords): by their evaluation, a title or keywords
    lower perplexity and a poem's own title ranks first above chance (measured again below)."""
    import json

    from jueju import generate_poetry

    measured = json.loads((form_model(length) / "evaluation.json").read_text("utf-8"))["conditioning"]
    perplexity, fidelity = measured["perplexity"], measured["title_fidelity"]
    assert perplexity["title"] < perplexity["none"] and perplexity["keywords"] < perplexity["none"], perplexity
    assert fidelity["titles"] == 100 and fidelity["top1"] > fidelity["chance"], fidelity
    assert form_pattern(length).match(generate_poetry(title="送友人", line_length=length, seed=1, rerank=4))


SAMPLE = 100  # test poems whose perplexity is measured again
SAMPLE_TITLES = 10  # test titles whose fidelity is measured again


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    """test_split(length): the test poems of a form and their titles, as `jueju prepare` cuts them from
    ../shared/data with the committed model's settings (into a temporary folder, once per form)."""
    if not (SHARED_DATA / "chinese-poetry").is_dir():
        pytest.skip(f"real corpus not found at {SHARED_DATA} (it sits beside the checkout in CI)")
    from jueju.config import load_config_json
    from jueju.data import pipeline
    from jueju.data.corpus import TITLES, read_titles
    from jueju.data.dataset import read_poems

    root, splits = tmp_path_factory.mktemp("prepared"), {}

    def split(length: int) -> tuple[list[str], list[str]]:
        if length not in splits:
            config = load_config_json(form_model(length) / "config.json")
            paths = dataclasses.replace(config.paths, data_dir=str(root / "data"), raw_dir=str(root / "raw"))
            crawl = dataclasses.replace(config.crawl, source=str(SHARED_DATA / "chinese-poetry"))
            config = dataclasses.replace(config, paths=paths, crawl=crawl)
            # the stages that cut the test split; its titles are the corpus's (as condition_stage reads them,
            # without the training poems' blocks, which take longer than the rest)
            pipeline.corpus_stage(config)
            pipeline.dataset_stage(config)
            poems, known = read_poems(config.data_dir / "test.txt"), read_titles(config.data_dir / TITLES)
            splits[length] = poems, [known.get(poem, "") for poem in poems]
        return splits[length]

    return split


def evaluation(length: int) -> dict:
    import json

    return json.loads((form_model(length) / "evaluation.json").read_text("utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("length", FORMS)
def test_the_committed_perplexity_is_measured_again_on_a_sample(length, test_split):
    """Perplexity per character of lines 2-4 given line 1 of the first SAMPLE titled test poems, read after an
    empty block and after each poem's title, against evaluation.json's over the whole test split. Over
    random samples of 100 test poems the perplexity's standard deviation is 7.4 % (五言) and 6.5 % (七言) of
    the whole split's, so a sample must come within 25 %; the title's effect (a ratio of two perplexities of
    the same poems) varies far less, 0.005 and 0.003, so within 0.015; and the title must lower it."""
    import numpy as np

    from jueju.measure.perplexity import lstm_log_probs, perplexity_of
    from jueju.write.poet import get_poet

    poet = get_poet(form_model(length))
    poems, titles = test_split(length)
    titled = [(poem, title) for poem, title in zip(poems, titles) if title][:SAMPLE]
    sample = [poem for poem, _ in titled]

    def perplexity(blocks):
        return perplexity_of(lstm_log_probs(poet.model, poet.vocab, sample, None, True, blocks=blocks))

    none = perplexity(poet.blocks(len(sample)))
    title = perplexity(np.concatenate([poet.blocks(1, title) for _, title in titled]))
    recorded = evaluation(length)["conditioning"]["perplexity"]
    assert len(sample) == SAMPLE
    assert abs(none / recorded["none"] - 1) < 0.25, (none, recorded)
    assert title < none and abs(title / none - recorded["title"] / recorded["none"]) < 0.015, (title, none, recorded)


@pytest.mark.slow
@pytest.mark.parametrize("length", FORMS)
def test_the_committed_title_fidelity_is_measured_again_on_ten_titles(length, test_split):
    """Title fidelity (jueju.measure.conditions.title_fidelity: a poem written for each title at the model's
    defaults, ranked under its own title among 10) of the first SAMPLE_TITLES test titles, against
    evaluation.json's of 100 with the same seed. Of 10 titles, the share ranked first has a standard
    deviation of 0.15 (a binomial at evaluation.json's 0.26-0.35): it must come within 0.4; the mean rank,
    a mean of 10 ranks from 1 to 10, one of at most 0.9: within 2. A model that ignored titles, in writing
    or in scoring, would rank its poems 5.5 on average (chance)."""
    from jueju.measure.conditions import title_fidelity
    from jueju.write.poet import get_poet

    poet = get_poet(form_model(length))
    _, titles = test_split(length)
    recorded = evaluation(length)
    chosen = list(dict.fromkeys(title for title in titles if title))[:SAMPLE_TITLES]
    measured = title_fidelity(poet, chosen, recorded["seed"])
    expected = recorded["conditioning"]["title_fidelity"]
    assert measured["titles"] == SAMPLE_TITLES and measured["rivals"] == expected["rivals"]
    assert all(form_pattern(length).match(sample["poem"]) for sample in measured["samples"]), measured["samples"]
    assert abs(measured["top1"] - expected["top1"]) < 0.4, (measured, expected)
    assert abs(measured["mean_rank"] - expected["mean_rank"]) < 2, (measured, expected)


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


@pytest.fixture(scope="module")
def ratings(poet):
    """The readers' scores the committed reader model was fitted to (docs/ratings/), with what the 五言
    model reads of each poem (the reader model's features): (features, coherence, fluency, inputs)."""
    import csv

    import numpy as np

    from jueju.rank.reader import poem_features

    with open(PROJECT_ROOT / "docs" / "ratings" / "wuyan-2026-12-04.tsv", encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    tokens = np.stack([poet.vocab.encode(row["poem"]) for row in rows])
    features = poem_features(poet.stepper, tokens, poet.line_length)
    coherence, fluency, inputs = (np.array([float(row[key]) for row in rows]) for key in ("C", "F", "input"))
    return features, coherence, fluency, inputs


def agreement(score, coherence) -> float:
    """Spearman's correlation of a score with the readers' coherence."""
    import numpy as np

    return np.corrcoef(np.argsort(np.argsort(score)), np.argsort(np.argsort(coherence)))[0, 1]


def test_the_committed_reader_model_is_its_fit_to_the_committed_ratings(poet, ratings):
    """models/wuyan/reader.npz (docs/results.md, A reader model) is what studies/fit_reader.py fits to the
    1,920 readers' scores of docs/ratings/: refitted here, it comes out the same but for the float32
    rounding of the features, which differs between machines (measured: 1e-7)."""
    import numpy as np

    from jueju.rank.reader import READ_FLUENCY, READER, RIDGE, Reader

    features, coherence, fluency, _ = ratings
    assert len(features) == 1920
    refitted = Reader.fit(features, coherence + READ_FLUENCY * fluency, RIDGE)
    committed = Reader.load(MODEL / READER)
    for name in ("mean", "scale", "weights"):
        np.testing.assert_allclose(getattr(refitted, name), getattr(committed, name), rtol=0, atol=1e-6, err_msg=name)
    assert refitted.bias == pytest.approx(committed.bias, abs=1e-12)
    np.testing.assert_allclose(refitted.predict(features), committed.predict(features), rtol=0, atol=1e-5)
    assert poet.ranker.reader is not None and FIVE.match(poet.poem("白日依山尽", seed=1, rerank=4, reader=8.0))


def test_the_reader_models_recipe_orders_poems_it_was_not_fitted_to_better_than_the_forward_model(ratings):
    """Fitted on three of four folds of inputs (each input's poems in one fold, as studies/fit_reader.py
    cross-validates), the reader model predicts the fourth's readers better than the forward model's
    log-probability does: Spearman 0.39 against 0.27 held out (0.70 on the poems it was fitted to)."""
    import numpy as np

    from jueju.rank.reader import READ_FLUENCY, RIDGE, Reader

    features, coherence, fluency, inputs = ratings
    targets, folds = coherence + READ_FLUENCY * fluency, 4
    fold = np.unique(inputs, return_inverse=True)[1].reshape(-1) % folds
    held_out = np.zeros(len(features))
    for k in range(folds):
        held_out[fold == k] = Reader.fit(features[fold != k], targets[fold != k], RIDGE).predict(features[fold == k])
    forward = features[:, -1]  # the forward model's mean log-probability of lines 2-4
    assert agreement(held_out, coherence) > agreement(forward, coherence) + 0.05


def test_the_qiyan_model_has_no_reader_model():
    """七言 has too few ratings for a reader model (docs/results.md): its defaults leave the option off."""
    from jueju.write.poet import get_poet

    assert get_poet(form_model(7)).settings({})["reader"] == 0.0
