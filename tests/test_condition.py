"""Conditioning: titles and keywords read before the poem (jueju.data.condition), from the corpus's titles
to a conditioned model's poems in Python, the CLI and the API, bad input included."""

import json
import re

import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient

from jueju.cli import main
from jueju.data import condition
from jueju.data.condition import MAX_KEYWORDS
from jueju.data.corpus import MAX_TITLE, clean_corpus, clean_title, read_titles
from jueju.data.dataset import PAD_ID, Vocab, Windows, make_sequences
from jueju.model.network import build_model, compile_model
from jueju.options import OptionError
from jueju.rank.scores import MI_WEIGHT
from jueju.serve import app as serve
from jueju.text import is_han, split_lines
from test_device_loop import on_device, on_host
from test_serve import save_tiny_model

from conftest import tiny_quatrains, untrained_poet

FIVE = re.compile(r"^([\u4e00-\u9fff]{5}[，。]){4}$")
QUIET = dict(rhyme="none", no_copy=False)


@pytest.fixture(scope="module")
def poet():
    return untrained_poet(tiny_quatrains(), conditioned=True)


# ---------------------------------------------------------------------------------------------
# Titles from the corpus, and from users


@pytest.mark.parametrize(
    "raw, title",
    [
        ("静夜思", "静夜思"),
        ("杂诗三首 其二", "杂诗三首"),
        ("绝句（其二）", "绝句"),
        ("  春晓", "春晓"),
        ("（无题）", ""),
        ("", ""),
        ("送李少府贬峡中王少府贬长沙", "送李少府贬峡中王少府贬长"),  # cut at MAX_TITLE
        (None, ""),
    ],
)
def test_clean_title(raw, title):
    assert clean_title(raw) == title and len(title) <= MAX_TITLE


def test_the_corpus_keeps_each_poem_its_title():
    poems = [
        {"title": "靜夜思", "paragraphs": ["牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
        {"title": "again", "paragraphs": ["牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},  # a duplicate
        {"paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]},  # no title
    ]
    titles = {}
    quatrains, _, _ = clean_corpus(poems, titles=titles)
    assert titles == {quatrains[0]: "静夜思", quatrains[1]: ""}


def test_prepare_writes_titles_beside_the_poems(tiny_config):
    from jueju.data.pipeline import prepare

    prepare(tiny_config)
    data = tiny_config.data_dir
    known = read_titles(data / "titles.tsv")
    for split in condition.SPLITS:
        poems = (data / f"{split}.txt").read_text("utf-8").splitlines()
        titles = condition.read_titles_of(data, split)
        assert len(titles) == len(poems) and titles == [known.get(poem, "") for poem in poems]
    assert any(condition.read_titles_of(data, "train"))
    blocks = np.load(data / condition.BLOCKS)
    vocab = Vocab.load(data / "vocab.json")
    assert blocks.shape == (len(condition.read_titles_of(data, "train")), condition.BLOCK)
    assert condition.is_conditioned(vocab) and (blocks == PAD_ID).all(axis=1).any()  # some poems unconditioned
    assert (blocks == vocab.ids[condition.TITLE]).any()  # (a corpus this small has no word common enough)


@pytest.mark.parametrize(
    "given, title", [("送友人", "送友人"), (" 靜夜 思 ", "静夜思"), ("春" * MAX_TITLE, "春" * MAX_TITLE)]
)
def test_titles_are_read_as_typed(given, title):
    assert condition.normalise_title(given) == title


@pytest.mark.parametrize("given", ["", "   ", "moon", "送友人!", "春" * (MAX_TITLE + 1), 7, ["送"]])
def test_bad_titles_name_the_field(given):
    with pytest.raises(OptionError) as err:
        condition.normalise_title(given)
    assert err.value.field == "title" and str(MAX_TITLE) in str(err.value)


# ---------------------------------------------------------------------------------------------
# Blocks and keywords


def test_a_block_is_markers_and_characters_left_padded(poet):
    vocab = poet.vocab
    block = condition.block_ids(vocab, "春晓", ["明月", "秋"])
    assert len(block) == condition.BLOCK
    expected = [vocab.ids[condition.TITLE], *vocab.encode("春晓")]
    expected += [vocab.ids[condition.KEYWORD], *vocab.encode("明月"), vocab.ids[condition.KEYWORD], *vocab.encode("秋")]
    assert block[-len(expected) :].tolist() == expected and (block[: -len(expected)] == PAD_ID).all()
    assert (condition.block_ids(vocab) == PAD_ID).all()  # nothing asked: unconditioned
    longest = condition.block_ids(vocab, "春" * MAX_TITLE, ["明月", "清风", "白云", "青山"])
    assert (longest != PAD_ID).all()  # the longest title and keywords fill the block exactly


LINES = ["明月照高楼，", "明月满江天。", "明月出天山，", "明月松间照。"] * 10 + ["不见故人来，", "何处是归程。"] * 5


def test_the_keyword_rule_picks_a_word_on_the_beat():
    rule = condition.KeywordRule(["".join(LINES)])
    assert rule.word("明月照高楼") == "明月"
    assert rule.word("高明月楼照") is None  # 明月 straddles a beat there; no character is common enough
    assert rule.word("不见故人来") is None  # 不见 holds a function character, the rest are rare


def test_keywords_come_from_distinct_lines_in_order():
    rule = condition.KeywordRule(["".join(LINES)])
    words = rule.keywords("明月照高楼，明月满江天。明月出天山，明月松间照。", 4, np.random.default_rng(0))
    assert words == ["明月"]  # one word a line, the same word kept once


# a corpus whose lines each open with a word common enough to be a keyword (KeywordRule)
WORDS = ["明月", "清风", "白云", "青山", "流水", "江南", "芳草", "孤舟"]
ENDS = ["照高楼", "满江天", "出天山", "松间照", "落花深", "过前溪"]


def corpus_with_words(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    lines = [[WORDS[i] + ENDS[j] for i, j in zip(rng.integers(0, 8, 4), rng.integers(0, 6, 4))] for _ in range(count)]
    return [f"{a}，{b}。{c}，{d}。" for a, b, c, d in lines]


def read_block(vocab, block) -> tuple[str, list[str]]:
    """A block's title and keywords, read back from its ids."""
    markers = {vocab.ids[condition.TITLE]: "T", vocab.ids[condition.KEYWORD]: "K"}
    text = "".join(markers.get(i, vocab.tokens[i]) for i in block if i != PAD_ID)
    title = text[1:].split("K")[0] if text.startswith("T") else ""
    return title, text.split("K")[1:]


def in_line_order(words: list[str], lines: list[str]) -> bool:
    """Whether each word stands within a line of its own, the lines in the words' order."""
    rest = iter(lines)
    return all(any(word in line for line in rest) for word in words)


def test_training_blocks_follow_the_mixture_with_keywords_from_each_poems_own_lines():
    poems = corpus_with_words(2000, seed=0)
    titles = ["春晓" if i % 2 else "" for i in range(len(poems))]  # half the poems have no title
    vocab = Vocab.build(poems + ["春晓"], 100, condition.TOKENS)
    blocks = condition.training_blocks(vocab, poems, titles, condition.KeywordRule(poems), seed=3)
    assert np.array_equal(blocks, condition.training_blocks(vocab, poems, titles, condition.KeywordRule(poems), 3))
    kinds = {"titled": [], "untitled": []}
    for poem, title, block in zip(poems, titles, blocks):
        read, words = read_block(vocab, block)
        assert read in ("", title)  # a poem's own title, or none
        assert len(words) <= MAX_KEYWORDS and len(set(words)) == len(words)
        assert in_line_order(words, split_lines(poem)), (poem, words)  # each from a line of its own poem
        kind = {(False, False): "none", (True, False): "title", (False, True): "keywords", (True, True): "both"}
        kinds["titled" if title else "untitled"].append(kind[bool(read), bool(words)])
    # shares within 0.05 of the mixture's (about 3.5 standard deviations of 1,000 draws)
    titled = {kind: kinds["titled"].count(kind) / len(kinds["titled"]) for kind in condition.MIXTURE}
    assert all(abs(titled[kind] - share) < 0.05 for kind, share in condition.MIXTURE.items()), titled
    # a poem without a title gets keywords where the draw asked for its title
    untitled = {kind: kinds["untitled"].count(kind) / len(kinds["untitled"]) for kind in ("none", "keywords")}
    assert abs(untitled["none"] - condition.MIXTURE["none"]) < 0.05, untitled
    assert abs(untitled["keywords"] - (1 - condition.MIXTURE["none"])) < 0.05, untitled


def test_with_blocks_reads_the_block_first_and_never_predicts_it():
    samples = Windows(*make_sequences(np.array([[5, 6, 7], [8, 9, 10]]), pad_start=True))
    blocks = np.arange(2 * condition.BLOCK).reshape(2, -1) + 100
    joined = condition.with_blocks(samples, blocks)
    assert (joined.x[:, : condition.BLOCK] == blocks).all() and (joined.x[:, condition.BLOCK :] == samples.x).all()
    assert (joined.y[:, : condition.BLOCK] == PAD_ID).all() and (joined.y[:, condition.BLOCK :] == samples.y).all()
    empty = condition.with_blocks(samples)
    assert (empty.x[:, : condition.BLOCK] == PAD_ID).all()
    with pytest.raises(ValueError, match="blocks"):
        condition.with_blocks(samples, blocks[:1])


def test_the_loss_is_the_mean_over_poem_positions_only(tiny_config):
    model = compile_model(
        build_model(tiny_config.model.__class__(**{**vars(tiny_config.model), "input": "embedding"}), 30, None), 0.01
    )
    x = np.random.default_rng(0).integers(2, 30, size=(4, 9))
    y = x.copy()
    y[:, :4] = PAD_ID  # read, not predicted
    probs = np.asarray(model.predict_on_batch(x))
    chosen = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0][:, 4:]
    assert model.evaluate(x, y, verbose=0) == pytest.approx(float(-np.log(chosen).mean()), rel=1e-4)


# ---------------------------------------------------------------------------------------------
# A conditioned model's poems


def test_a_stepper_reads_the_block_before_the_poem(poet):
    tokens = np.stack([poet.vocab.encode("床前明月光，疑是地上霜。举头望明月，低头思故乡。")] * 2)
    blocks = np.stack([condition.block_ids(poet.vocab, "静夜思"), condition.block_ids(poet.vocab, "", ["故乡"])])
    poet.stepper.condition(blocks)
    try:
        stepped = poet.stepper.next_logits(tokens, 7)
        whole = np.concatenate([blocks, np.full((2, 1), PAD_ID), tokens[:, :7]], axis=1)
        expected = np.log(np.asarray(poet.model.predict_on_batch(whole))[:, -1])
        np.testing.assert_allclose(stepped, expected, atol=1e-4)
    finally:
        poet.stepper.forget()


def test_whole_poems_score_differently_under_different_titles(poet):
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    blocks = np.stack([condition.block_ids(poet.vocab, title) for title in ("静夜思", "送友人", "")])
    scores = poet.score([poem] * 3, blocks)
    assert len(set(np.round(scores, 6))) == 3
    assert poet.score([poem], None)[0] == pytest.approx(scores[2], abs=1e-5)  # no block: an empty one


@pytest.fixture(scope="module")
def decided():
    """The test poet, its output weights scaled so that it prefers some poems clearly (an untrained model's
    scores of two poems differ by float rounding, those of a trained one by far more)."""
    keras.utils.set_random_seed(0)
    decided = untrained_poet(tiny_quatrains(), conditioned=True)
    head = decided.model.get_layer("next_char")
    head.set_weights([weight * 30 for weight in head.get_weights()])
    return decided


def test_reranking_for_a_title_adds_each_candidates_information_about_it(decided):
    """With a title, reranking keeps the candidate of best forward score (read after the title) plus
    MI_WEIGHT times its pointwise mutual information with the title (that score less the poem's read
    after nothing), computed here from the Poet's whole-poem scores."""
    assert MI_WEIGHT > 0  # a poem about its title beats a generic one
    title, rerank, blank = "送友人", 16, decided.preprocessor.template({})
    discriminating = 0
    for seed in range(20, 30):
        candidates = decided.batch(
            templates=[blank] * rerank, blocks=decided.blocks(rerank, title), seed=seed, rerank=1, **QUIET
        )
        titled, plain = decided.score(candidates, decided.blocks(rerank, title)), decided.score(candidates)
        best = {w: int(np.argmax(titled + w * (titled - plain))) for w in (MI_WEIGHT, 0.0, -MI_WEIGHT)}
        assert decided.poems(title=title, seed=seed, rerank=rerank, **QUIET)[0] == candidates[best[MI_WEIGHT]]
        discriminating += best[0.0] != best[MI_WEIGHT] != best[-MI_WEIGHT]
    assert discriminating  # some seeds' candidates tell the term's absence and its sign apart


@pytest.mark.parametrize("sampler", ["top_k", "beam"])
def test_a_title_alone_writes_a_whole_poem(poet, sampler):
    poems = poet.poems(title="送友人", num=3, seed=1, sampler=sampler, **QUIET)
    assert len(poems) == 3 and all(FIVE.match(poem) for poem in poems)
    assert poems == poet.poems(title="送友人", num=3, seed=1, sampler=sampler, **QUIET)


def test_a_title_changes_the_poem_and_combines_with_every_input(poet):
    assert poet.poems(title="送友人", seed=3, **QUIET) != poet.poems(title="秋夜", seed=3, **QUIET)
    first = poet.poems("床前明月光", title="静夜思", seed=1, **QUIET)[0]
    assert first.startswith("床前明月光，")
    heads = poet.poems(acrostic="春夏秋冬", title="四时", seed=1, **QUIET)[0]
    assert [line[0] for line in split_lines(heads)] == list("春夏秋冬")
    kept = poet.poems(template="床前＿＿＿，＿＿＿＿＿。举头＿＿＿，＿＿＿＿乡。", title="静夜思", seed=1, **QUIET)[0]
    assert kept.startswith("床前") and kept[-2] == "乡"
    words = poet.poems(keywords=["秋", "故乡"], title="思乡", seed=1, **QUIET)[0]
    assert "秋" in words and any("故乡" in line for line in split_lines(words))


def test_a_model_without_conditioning_refuses_a_title():
    plain = untrained_poet(tiny_quatrains())
    with pytest.raises(OptionError, match="trained without titles") as err:
        plain.poems(title="送友人")
    assert err.value.field == "title"


def test_revise_keeps_a_title(poet):
    poem = poet.poems(title="送友人", seed=2, **QUIET)[0]
    again = poet.revise(poem, keep_lines=[0], title="送友人", seed=4, **QUIET)[0]
    assert again.startswith(poem[:6])
    template = poem[:6] + "＿＿＿＿＿。＿＿＿＿＿，＿＿＿＿＿。"
    assert again == poet.poems(template=template, title="送友人", seed=4, **QUIET)[0]  # written toward the title
    assert again != poet.revise(poem, keep_lines=[0], title="秋夜", seed=4, **QUIET)[0]  # which matters here


# ---------------------------------------------------------------------------------------------
# The CLI and the API


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("conditioned") / "wuyan", 5, conditioned=True)


def test_cli_title(model_dir, capsys):
    model = ["--model", str(model_dir), "--allow-copy"]  # a tiny model without train_lines
    assert main(["generate", "--title", "送友人", *model, "--seed", "1", "--num", "2"]) == 0
    poems = capsys.readouterr().out.split()
    assert len(poems) == 2 and all(FIVE.match(poem) for poem in poems)
    assert main(["generate", "床前明月光", "--title", "静夜思", "--keywords", "故乡", *model]) == 0
    poem = capsys.readouterr().out.strip()
    assert poem.startswith("床前明月光") and "故乡" in poem
    assert main(["generate", "--title", "moon", *model]) == 2
    assert "title" in capsys.readouterr().err


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(serve.create_app(serve.load_models([model_dir]))) as client:
        yield client


def keeps_what_was_given(poem: str, body: dict) -> bool:
    """The first line, acrostic heads, template characters and keywords of a request, each in the poem."""
    lines = split_lines(poem)
    return (
        lines[0] == body.get("first_line", lines[0])
        and all(line[0] == head for line, head in zip(lines, body.get("acrostic", "")))
        and all(poem[i] == char for i, char in enumerate(body.get("template", "")) if is_han(char))
        and all(any(word in line for line in lines) for word in body.get("keywords", []))
    )


@pytest.mark.parametrize(
    "body",
    [
        {"title": "送友人"},
        {"title": "送友人", "keywords": ["柳"]},
        {"title": "静夜思", "first_line": "床前明月光"},
        {"title": "四时", "acrostic": "春夏秋冬"},
        {"title": "静夜思", "template": "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。"},
    ],
)
def test_the_api_writes_toward_a_title(client, body):
    response = client.post("/api/poems", json={**body, "num": 2, "seed": 1})
    assert response.status_code == 200, response.text
    texts = [poem["text"] for poem in response.json()["poems"]]
    assert len(texts) == 2 and all(FIVE.match(text) for text in texts)
    assert all(keeps_what_was_given(text, body) for text in texts), texts
    again = client.post("/api/poems", json={**body, "num": 2, "seed": 1}).json()
    assert [poem["text"] for poem in again["poems"]] == texts


@pytest.mark.parametrize(
    "body, field",
    [
        ({"title": "moon"}, "title"),
        ({"title": "春" * (MAX_TITLE + 1)}, "title"),
        ({"title": "送友人", "first_line": "床前明月光", "acrostic": "春夏秋冬"}, "acrostic"),
        (
            {"title": "送友人", "keywords": ["秋"], "template": "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。"},
            "template",
        ),
        ({"title": "送友人", "form": 7}, "form"),
        ({"title": "送友人", "temperature": 0}, "temperature"),
    ],
)
def test_the_api_names_the_field_of_a_bad_titled_request(client, body, field):
    response = client.post("/api/poems", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]


def test_a_title_to_a_model_without_conditioning_is_a_422(tmp_path):
    plain = save_tiny_model(tmp_path / "wuyan", 5)
    with TestClient(serve.create_app(serve.load_models([plain]))) as client:
        response = client.post("/api/poems", json={"title": "送友人"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "title"]
    assert json.dumps(response.json(), ensure_ascii=False).count("trained without titles") == 1


@pytest.mark.parametrize("sampler", ["greedy", "beam"])
def test_the_device_loop_reads_the_block_as_the_host_loop_does(poet, sampler):
    assert poet.device_loop is not None  # a sequence model: decoded on the device
    write = lambda: poet.poems(title="送友人", num=3, sampler=sampler, **QUIET)  # noqa: E731
    written = on_device(poet, write)  # not a fallback to the host loop, compared with itself below
    assert on_host(poet, write) == written  # greedy and beam: the same poems on the host
    assert written != poet.poems(title="秋夜", num=3, sampler=sampler, **QUIET)  # the block is read
