"""jueju serve, in process: every option, every error path, the annotations, batching and the bounded queue.

The models are small and untrained (saved to tmp the way jueju train saves one), so the poems are
random characters, but everything the server promises holds whatever the weights.
"""

import asyncio
import json
import re
import threading
import warnings

import httpx
import keras
import pytest

from jueju import options as jueju_options
from jueju.config import PROJECT_ROOT, load_config
from jueju.data import condition, prosody, tonal
from jueju.data.dataset import Vocab
from jueju.measure.loadtest import run_load
from jueju.model.network import build_model, save_inference_model
from jueju.serve import app as serve

with warnings.catch_warnings():  # starlette's notice about httpx2, raised on import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

POEMS = """
床前明月光，疑是地上霜。举头望明月，低头思故乡。 春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。
白日依山尽，黄河入海流。欲穷千里目，更上一层楼。 红豆生南国，春来发几枝。愿君多采撷，此物最相思。
空山不见人，但闻人语响。返景入深林，复照青苔上。 千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。
松下问童子，言师采药去。只在此山中，云深不知处。 独坐幽篁里，弹琴复长啸。深林人不知，明月来相照。
移舟泊烟渚，日暮客愁新。野旷天低树，江清月近人。 向晚意不适，驱车登古原。夕阳无限好，只是近黄昏。
北斗七星高，哥舒夜带刀。至今窥牧马，不敢过临洮。 君自故乡来，应知故乡事。来日绮窗前，寒梅著花未。
人闲桂花落，夜静春山空。月出惊山鸟，时鸣春涧中。 日暮苍山远，天寒白屋贫。柴门闻犬吠，风雪夜归人。
山中相送罢，日暮掩柴扉。春草明年绿，王孙归不归。 绿蚁新醅酒，红泥小火炉。晚来天欲雪，能饮一杯无。
功盖三分国，名成八阵图。江流石不转，遗恨失吞吴。 众鸟高飞尽，孤云独去闲。相看两不厌，只有敬亭山。
朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。
两个黄鹂鸣翠柳，一行白鹭上青天。窗含西岭千秋雪，门泊东吴万里船。
月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。
故人西辞黄鹤楼，烟花三月下扬州。孤帆远影碧空尽，唯见长江天际流。
少小离家老大回，乡音无改鬓毛衰。儿童相见不相识，笑问客从何处来。
清明时节雨纷纷，路上行人欲断魂。借问酒家何处有，牧童遥指杏花村。
""".split()


def common_characters():
    """The 3755 common characters of GB 2312 level 1 (rows 0xB0-0xD7), from Python's codec: no data file."""
    found = []
    for high in range(0xB0, 0xD8):
        for low in range(0xA1, 0xFF):
            try:
                found.append(bytes([high, low]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return found


# enough of the rhyme table's characters that every rhyme group has members to spare
RHYME_CHARS = "".join(char for char in common_characters() if prosody.rhyme_groups(char))
HAN = "[\u4e00-\u9fff]"
FORMAT = {n: re.compile(rf"^({HAN}{{{n}}})，({HAN}{{{n}}})。({HAN}{{{n}}})，({HAN}{{{n}}})。$") for n in (5, 7)}
TONES = {"平", "仄", "平仄", "unknown"}


def save_tiny_model(folder, line_length=5, conditioned=False):
    """A small untrained model folder as jueju train writes one (no train_lines: no_copy is off);
    a conditioned one is a sequence model that reads a title / keywords block (jueju.data.condition)."""
    config = load_config(
        overrides=[
            "model.input=embedding",
            "model.lstm_units=16",
            "model.embedding_dim=8",
            f"corpus.line_length={line_length}",
            "generate.no_copy=false",
            "generate.rhyme=pingshui",
            "generate.sampler=top_k",
        ]
    )
    # the poems' characters first, then common characters of the rhyme table
    vocab = Vocab.build(POEMS + [RHYME_CHARS], 4000, condition.TOKENS if conditioned else ())
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(line_length)  # the same weights every run (a stable screenshot)
    window = None if conditioned else config.dataset.window
    save_inference_model(build_model(config.model, len(vocab), window), folder / "model.keras")
    vocab.save(folder / "vocab.json")
    config.save_json(folder / "config.json")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    return serve.load_models([save_tiny_model(root / "wuyan", 5), save_tiny_model(root / "qiyan", 7)])


@pytest.fixture(scope="module")
def client(models):
    with TestClient(serve.create_app(models)) as client:
        yield client


def post(client, **body):
    return client.post("/api/poems", json=body)


def ok(client, **body):
    response = post(client, **body)
    assert response.status_code == 200, response.text
    return response.json()


def texts(data):
    return [poem["text"] for poem in data["poems"]]


# --- health, page, schema ---------------------------------------------------------------------------
def test_health_names_the_models_and_vocabularies(client, models):
    data = client.get("/api/health").json()
    assert data["status"] == "ok" and data["max_batch"] == 64 and data["queue_size"] == 256
    assert [(m["form"], m["name"]) for m in data["models"]] == [(5, "五言"), (7, "七言")]
    first = data["models"][0]
    assert first["model"].endswith("wuyan") and first["vocabulary"].endswith("wuyan/vocab.json")
    assert first["vocab_size"] == len(models[0].poet.vocab) and len(first["model_sha256"]) == 16


def test_the_page_is_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<form" in html and "api/poems" in html and 'name="viewport"' in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page must load nothing external"
    assert "@import" not in html and "url(" not in html and "@font-face" not in html
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_openapi_documents_request_and_response(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"PoemRequest", "PoemResponse", "Poem", "CharInfo", "Health"} <= set(schemas)
    assert {"first_line", "acrostic", "form", "rhyme", "tonal", "sampler", "temperature", "seed", "num"} <= set(
        schemas["PoemRequest"]["properties"]
    )


# --- options ---------------------------------------------------------------------------------------
def test_a_seeded_request_is_exactly_what_the_poet_writes(client, models):
    data = ok(client, first_line="床前明月光，", num=3, seed=5)
    assert data["form"] == 5 and data["seed"] == 5 and len(data["poems"]) == 3
    assert texts(data) == models[0].poet.poems("床前明月光", 3, seed=5, **data["options"])
    assert texts(ok(client, first_line="床前明月光", num=3, seed=5)) == texts(data)
    for poem in texts(data):
        assert FORMAT[5].match(poem) and poem.startswith("床前明月光，")


def test_options_left_out_are_the_models_defaults(client, models):
    options = ok(client, first_line="白日依山尽", seed=1)["options"]
    defaults = models[0].poet.config.generate
    assert options == {name: getattr(defaults, name) for name in jueju_options.DECODING if name != "seed"}


@pytest.mark.parametrize(
    "options",
    [
        {"sampler": "greedy"},
        {"sampler": "temperature", "temperature": 1.5},
        {"sampler": "top_k", "top_k": 3},
        {"sampler": "top_p", "top_p": 0.5},
        {"sampler": "beam", "beam_width": 3},
        {"temperature": 0.3},
        {"rerank": 3},
        {"no_repeat": False},
        {"rhyme": "none"},
        {"num": 20},
    ],
)
def test_each_sampler_and_option(client, options):
    data = ok(client, first_line="春眠不觉晓", seed=2, **options)
    assert len(data["poems"]) == options.get("num", 1)
    for name, value in options.items():
        if name != "num":
            assert data["options"][name] == value
    for poem in texts(data):
        assert FORMAT[5].match(poem) and poem.startswith("春眠不觉晓，")
        if options.get("no_repeat", True):
            chars = [c for c in poem if c not in "，。"]
            assert len(chars) == len(set(chars)), poem


@pytest.mark.parametrize("scheme", ["pingshui", "xin"])
def test_rhyme_schemes_rhyme(client, scheme):
    data = ok(client, first_line="红豆生南国", rhyme=scheme, num=4, seed=3)
    assert data["scheme"] == scheme and data["options"]["rhyme"] == scheme
    for poem in data["poems"]:
        assert prosody.poem_rhymes(poem["text"], scheme) is True, poem["text"]
        assert poem["rhyme_group"], poem["text"]


def test_tonal_pattern_and_first_line_rhyme(client):
    data = ok(client, first_line="床前明月光", tonal=True, rhyme_first_line=True, num=3, seed=4)
    for poem in data["poems"]:
        # True, not merely "not False": the tonal mask admits only characters of a known tone where the tone
        # is fixed, so every poem is decidable (None would mean an unknown character got through)
        assert tonal.tonal_compliance(poem["text"], lines_checked=(1, 2, 3)) is True, poem["text"]
        assert prosody.poem_rhymes(poem["text"], "pingshui", first_line=True) is True, poem["text"]
        assert poem["lines"][0]["chars"][-1]["rhyme"], "line 1 rhymes: its last character is marked"


@pytest.mark.parametrize("form", [5, 7])
def test_acrostic_of_either_form(client, form):
    data = ok(client, acrostic="春夏秋冬", form=form, num=2, seed=6)
    assert data["form"] == form
    for poem in texts(data):
        assert FORMAT[form].match(poem)
        assert [line[0] for line in re.split("[，。]", poem)[:4]] == list("春夏秋冬")


def test_acrostic_without_form_takes_the_first_model(client):
    assert ok(client, acrostic="春 夏 秋 冬", seed=1)["form"] == 5


def test_a_seven_character_first_line_picks_the_seven_character_model(client):
    data = ok(client, first_line="朝辭白帝彩雲間", seed=1)  # traditional: converted
    assert data["form"] == 7 and data["model"].endswith("qiyan")
    assert FORMAT[7].match(texts(data)[0]) and texts(data)[0].startswith("朝辞白帝彩云间，")


def test_unseeded_requests_differ(client):
    poems = {texts(ok(client, first_line="白日依山尽", sampler="temperature", temperature=2.0))[0] for _ in range(4)}
    assert len(poems) > 1


# --- annotations -----------------------------------------------------------------------------------
def expected_tone(char, scheme):
    found = prosody.tones(char, scheme)
    return {frozenset({"平"}): "平", frozenset({"仄"}): "仄", frozenset({"平", "仄"}): "平仄"}.get(found, "unknown")


@pytest.mark.parametrize("rhyme", ["pingshui", "xin", "none"])
def test_every_character_carries_its_tone_and_rhyme_characters_their_groups(client, rhyme):
    data = ok(client, first_line="床前明月光", rhyme=rhyme, num=5, seed=8)
    scheme = "pingshui" if rhyme == "none" else rhyme
    assert data["scheme"] == scheme
    for poem in data["poems"]:
        lines = poem["lines"]
        assert "".join(line["text"] + line["punctuation"] for line in lines) == poem["text"]
        assert [line["punctuation"] for line in lines] == ["，", "。", "，", "。"]
        for index, line in enumerate(lines):
            assert "".join(c["char"] for c in line["chars"]) == line["text"]
            for column, info in enumerate(line["chars"]):
                assert info["tone"] in TONES and info["tone"] == expected_tone(info["char"], scheme)
                at_end = column == len(line["chars"]) - 1
                if at_end and index in (1, 3):
                    assert info["rhyme"]
                if not (at_end and index in (0, 1, 3)):
                    assert not info["rhyme"] and info["rhyme_groups"] == []
                if info["rhyme"]:
                    assert info["rhyme_groups"] == sorted(prosody.rhyme_groups(info["char"], scheme))
        ends = [line["text"][-1] for line in lines]
        shared = prosody.rhyme_groups(ends[1], scheme) & prosody.rhyme_groups(ends[3], scheme)
        assert set(poem["rhyme_group"]) <= shared | prosody.rhyme_groups(ends[0], scheme)
        if rhyme != "none":
            assert set(poem["rhyme_group"]) & shared


def test_annotate_marks_both_readings_and_unknown_characters():
    both = next(c for c in "看思过长相" if prosody.tones(c) == {"平", "仄"})
    poem = serve.annotate(f"{both}龘明月光，疑是地上霜。举头望明月，低头思故乡。")
    first = poem["lines"][0]["chars"]
    assert first[0]["tone"] == "平仄" and first[1]["tone"] == "unknown" and first[4]["tone"] == "平"
    assert first[4]["rhyme"], "光 shares 下平七阳 with 霜 and 乡: line 1 rhymes"
    assert poem["rhyme_group"] == ["下平七阳"]
    assert not poem["lines"][2]["chars"][-1]["rhyme"]


def test_a_first_line_that_does_not_rhyme_is_not_marked():
    poem = serve.annotate("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。")
    assert not poem["lines"][0]["chars"][-1]["rhyme"]
    assert poem["lines"][1]["chars"][-1]["rhyme_groups"] == ["下平十一尤"]


# --- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, field, says",
    [
        ({"first_line": "床前明月"}, "first_line", "5 .五言. or 7 .七言."),
        ({"first_line": "床前明月光疑"}, "first_line", "has 6"),
        ({"first_line": "moon light"}, "first_line", "Han"),
        ({"first_line": "   "}, "first_line", "empty"),
        ({"first_line": 12345}, "first_line", "string"),
        ({"first_line": "床" * 101}, "first_line", "at most 100"),
        ({}, "first_line", "give one of: a first line"),
        ({"first_line": "床前明月光", "acrostic": "春夏秋冬"}, "acrostic", "give one of"),
        ({"acrostic": "春夏秋"}, "acrostic", "4 Han characters"),
        ({"acrostic": "春夏秋x"}, "acrostic", "4 Han characters"),
        ({"template": "床前明月光，＿＿＿＿＿。"}, "template", "4 lines"),
        ({"template": "床前明月光，＿＿＿＿月。举头＿＿＿，＿＿＿＿＿。"}, "template", "level-tone"),
        ({"template": "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。", "form": 7}, "form", "decides the form"),
        (
            {"template": "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。", "acrostic": "春夏秋冬"},
            "template",
            "one of",
        ),
        ({"first_line": "床前明月光", "form": 7}, "form", "decides the form"),
        ({"acrostic": "春夏秋冬", "form": 6}, "form", "5 or 7"),
        ({"first_line": "床前明月光", "rhyme": "modern"}, "rhyme", "pingshui"),
        ({"first_line": "床前明月光", "sampler": "best"}, "sampler", "greedy"),
        ({"first_line": "床前明月光", "temperature": 0}, "temperature", "greater than or equal"),
        ({"first_line": "床前明月光", "temperature": 11}, "temperature", "less than or equal"),
        ({"first_line": "床前明月光", "top_k": 0}, "top_k", "greater than or equal"),
        ({"first_line": "床前明月光", "top_p": 1.5}, "top_p", "less than or equal"),
        ({"first_line": "床前明月光", "beam_width": 99}, "beam_width", "less than or equal"),
        ({"first_line": "床前明月光", "rerank": 65}, "rerank", "less than or equal to 64"),
        ({"first_line": "床前明月光", "num": 21}, "num", "less than or equal to 20"),
        ({"first_line": "床前明月光", "num": 0}, "num", "greater than or equal"),
        ({"first_line": "床前明月光", "seed": -1}, "seed", "greater than or equal"),
        ({"first_line": "床前明月光", "seed": "x"}, "seed", "integer"),
        ({"first_line": "床前明月光", "tonal": "maybe"}, "tonal", "boolean"),
        ({"first_line": "床前明月光", "colour": "red"}, "colour", "Extra inputs"),
        ({"first_line": "床前明月光", "no_copy": True}, "no_copy", "train_lines"),
        ({"first_line": "床前明月光", "rerank": 2, "backward": 1.0}, "backward", "needs a backward model"),
        ({"first_line": "床前明月光", "rerank": 2, "reader": 1.0}, "reader", "needs a reader model"),
        ({"first_line": "床前明月光", "reader": 10.5}, "reader", "less than or equal to 10"),
        ({"first_line": "白日依山尽", "rhyme_first_line": True}, "first_line", "level-tone"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(client, body, field, says):
    response = client.post("/api/poems", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", field]
    assert re.search(says, detail["msg"]), detail["msg"]


@pytest.mark.parametrize(
    "form, template",
    [
        (5, "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。"),
        (7, "朝辞白帝彩云间，＿＿＿＿＿＿＿。＿＿＿＿＿＿＿，＿＿＿＿＿＿还。"),
    ],
)
def test_a_template_keeps_its_characters_and_picks_its_form(client, form, template):
    data = ok(client, template=template, num=3, seed=2, rerank=2)
    assert data["form"] == form and data["options"]["rerank"] == 2
    for text in texts(data):
        assert len(text) == len(template) and all(t == "＿" or t == c for t, c in zip(template, text)), text


def test_a_form_without_a_model_is_a_422(models):
    with TestClient(serve.create_app(models[:1])) as client:
        for body, field in [
            ({"acrostic": "春夏秋冬", "form": 7}, "form"),
            ({"first_line": "朝辞白帝彩云间"}, "first_line"),
        ]:
            response = client.post("/api/poems", json=body)
            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["body", field]
            assert "no 七言" in response.json()["detail"][0]["msg"]


def test_constraints_nothing_fits_is_a_422_not_a_500(client, models, monkeypatch):
    from jueju.write.sampling import ConstraintError

    class Unsatisfiable:
        def run(self, *args, **kwargs):
            raise ConstraintError("no character satisfies the constraints at this position")

    monkeypatch.setattr("jueju.write.poet.settings_sampler", lambda settings: Unsatisfiable())
    response = post(client, first_line="床前明月光", tonal=True, seed=1)
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "tonal"] and "try rhyme none" in detail["msg"]


@pytest.mark.parametrize("content", [b"{bad json", b"", b"[1, 2]", b'"text"'])
def test_bad_json_is_a_422(client, content):
    response = client.post("/api/poems", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_a_body_over_the_limit_is_a_413_declared_or_streamed(client):
    big = b'{"first_line": "' + "床".encode() * 6000 + b'"}'  # 18 KB > 16 KB
    assert client.post("/api/poems", content=big, headers={"content-type": "application/json"}).status_code == 413

    def chunks():  # no Content-Length: sent chunked
        for start in range(0, len(big), 1024):
            yield big[start : start + 1024]

    response = client.post("/api/poems", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "16 KB" in response.json()["detail"]
    assert post(client, first_line="床前明月光", seed=1).status_code == 200  # and the server is fine


def test_wrong_method_and_path(client):
    assert client.get("/api/poems").status_code == 405
    assert client.get("/api/nothing").status_code == 404


# --- what one request may cost -------------------------------------------------------------------
LINE = {"first_line": "床前明月光"}


@pytest.mark.parametrize(
    "body, fields, rows",
    [
        (
            {**LINE, "num": 20, "rerank": 64, "sampler": "beam", "beam_width": 16},
            ["num", "rerank", "beam_width"],
            "20,480",
        ),
        ({**LINE, "num": 6, "rerank": 64}, ["num", "rerank"], "384"),
        ({**LINE, "rerank": 64, "sampler": "beam", "beam_width": 6}, ["num", "rerank", "beam_width"], "384"),
        ({"acrostic": "春夏秋冬", "num": 11, "rerank": 30}, ["num", "rerank"], "330"),
        # each of the four lines redrawn: 10 x (16 + 4 x 8)
        ({**LINE, "num": 10, "rerank": 16, "redraw": 8}, ["num", "rerank", "redraw"], "480"),
        # keywords draw at least 8 candidates a poem, whatever rerank says
        (
            {"keywords": ["秋"], "num": 20, "rerank": 1, "sampler": "beam", "beam_width": 3},
            ["num", "rerank", "beam_width"],
            "480",
        ),
    ],
)
def test_a_request_over_the_row_budget_is_a_422_naming_the_fields(client, body, fields, rows):
    response = post(client, **body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [item["loc"] for item in detail] == [["body", field] for field in fields]
    for item in detail:
        assert f"decode {rows} rows" in item["msg"] and f"budget of {serve.MAX_ROWS} rows" in item["msg"]
        assert all(field in item["msg"] for field in fields), item["msg"]


@pytest.mark.parametrize(
    "body",
    [
        {**LINE, "num": 20, "rerank": 16},  # 320 rows: the committed defaults, at the most poems
        {**LINE, "num": 5, "rerank": 64},
        {"acrostic": "春夏秋冬", "rerank": 64, "sampler": "beam", "beam_width": 5},
        {"keywords": ["秋"], "num": 10, "rerank": 4, "sampler": "beam", "beam_width": 4},  # 10 x 8 x 4
    ],
)
def test_a_request_at_the_row_budget_is_written(client, body):
    assert len(ok(client, seed=3, rhyme="none", **body)["poems"]) == body.get("num", 1)


@pytest.mark.parametrize("form", ["wuyan", "qiyan"])
def test_the_committed_defaults_fit_the_budget_at_the_most_poems(form):
    config = PROJECT_ROOT / "models" / form / "config.json"
    settings = json.loads(config.read_text("utf-8"))["generate"]
    serve.check_cost(serve.MAX_POEMS, settings)  # no OverBudget
    with pytest.raises(serve.OverBudget, match="20,480 rows"):
        serve.check_cost(serve.MAX_POEMS, {**settings, "rerank": 64, "sampler": "beam", "beam_width": 16})


# --- batching and the queue ------------------------------------------------------------------------
class Spy:
    """Records every Poet.batch call (rows and seed), optionally holding calls until released."""

    def __init__(self, poet, monkeypatch, hold=False):
        self.calls, self.real = [], poet.batch
        self.release = threading.Event()
        if not hold:
            self.release.set()
        monkeypatch.setattr(poet, "batch", self)

    def __call__(self, first_lines=None, *, acrostics=None, seed=None, **options):
        self.calls.append({"rows": list(first_lines or acrostics), "seed": seed})
        assert self.release.wait(30)
        return self.real(first_lines, acrostics=acrostics, seed=seed, **options)


async def gather_posts(app, bodies):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
        return await asyncio.gather(*(client.post("/api/poems", json=body) for body in bodies))


LINES = ["床前明月光", "白日依山尽", "春眠不觉晓", "千山鸟飞绝", "红豆生南国", "空山不见人", "独坐幽篁里", "移舟泊烟渚"]


def test_concurrent_seeded_requests_each_get_their_own_poems(models, monkeypatch):
    poet = models[0].poet
    bodies = [{"first_line": LINES[i % len(LINES)], "seed": i, "num": 2} for i in range(12)]
    expected = [poet.poems(body["first_line"], 2, seed=body["seed"], rhyme="none") for body in bodies]
    spy = Spy(poet, monkeypatch)
    app = serve.create_app(models, max_wait_ms=50)
    responses = asyncio.run(gather_posts(app, [{**body, "rhyme": "none"} for body in bodies]))
    got = [texts(response.json()) for response in responses]
    assert got == expected  # each answer went to its own request, deterministic per seed
    assert len({tuple(poems) for poems in got}) == len(got)
    assert sorted(call["seed"] for call in spy.calls) == list(range(12)), "a seeded request is decoded alone"
    assert all(len(call["rows"]) == 2 for call in spy.calls)


def test_concurrent_unseeded_requests_share_batch_calls(models, monkeypatch):
    spy = Spy(models[0].poet, monkeypatch)
    app = serve.create_app(models, max_wait_ms=100)
    bodies = [{"first_line": LINES[i % len(LINES)], "num": 1 + i % 3, "rhyme": "none"} for i in range(24)]
    responses = asyncio.run(gather_posts(app, bodies))
    assert all(response.status_code == 200 for response in responses)
    for body, response in zip(bodies, responses):
        poems = texts(response.json())
        assert len(poems) == body["num"] and all(p.startswith(body["first_line"] + "，") for p in poems)
    assert len(spy.calls) < len(bodies)
    assert sum(len(call["rows"]) for call in spy.calls) == sum(body["num"] for body in bodies)
    assert all(call["seed"] is None for call in spy.calls)


def test_batches_keep_to_max_batch_and_to_identical_options(models, monkeypatch):
    spy = Spy(models[0].poet, monkeypatch)
    app = serve.create_app(models, max_batch=4, max_wait_ms=100)
    bodies = [{"first_line": LINES[i % len(LINES)], "rhyme": ("none", "xin")[i % 2]} for i in range(16)]
    responses = asyncio.run(gather_posts(app, bodies))
    assert all(response.status_code == 200 for response in responses)
    assert all(len(call["rows"]) <= 4 for call in spy.calls) and len(spy.calls) >= 4
    for body, response in zip(bodies, responses):
        assert response.json()["options"]["rhyme"] == body["rhyme"]
        if body["rhyme"] == "xin":
            assert prosody.poem_rhymes(texts(response.json())[0], "xin") is True


def test_max_batch_one_means_one_request_per_call(models, monkeypatch):
    spy = Spy(models[0].poet, monkeypatch)
    app = serve.create_app(models, max_batch=1, max_wait_ms=50)
    responses = asyncio.run(gather_posts(app, [{"first_line": line, "rhyme": "none"} for line in LINES]))
    assert all(response.status_code == 200 for response in responses)
    assert len(spy.calls) == len(LINES)


def test_one_bad_request_in_a_batch_fails_alone(models, monkeypatch):
    poet = models[0].poet
    real = poet.batch

    def picky(first_lines=None, **kwargs):
        if first_lines and "千山鸟飞绝" in first_lines:
            raise jueju_options.OptionError("first_line", "the first line 千山鸟飞绝 is refused by this test")
        return real(first_lines, **kwargs)

    monkeypatch.setattr(poet, "batch", picky)
    app = serve.create_app(models, max_wait_ms=100)
    responses = asyncio.run(gather_posts(app, [{"first_line": line, "rhyme": "none"} for line in LINES]))
    for line, response in zip(LINES, responses):
        if line == "千山鸟飞绝":
            assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "first_line"]
        else:
            assert response.status_code == 200 and texts(response.json())[0].startswith(line)


def test_a_full_queue_answers_503_with_retry_after(models, monkeypatch):
    spy = Spy(models[0].poet, monkeypatch, hold=True)
    app = serve.create_app(models, queue_size=2, max_wait_ms=0)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            accepted = [
                asyncio.create_task(client.post("/api/poems", json={"first_line": line, "seed": i}))
                for i, line in enumerate(LINES[:2])
            ]
            while len(spy.calls) < 1:  # the first is being written (held), the second waits
                await asyncio.sleep(0.01)
            refused = [await client.post("/api/poems", json={"first_line": line}) for line in LINES[2:5]]
            health = (await client.get("/api/health")).json()
            spy.release.set()
            return await asyncio.gather(*accepted), refused, health

    accepted, refused, health = asyncio.run(run())
    assert health["pending"] == 2
    for response in refused:
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1 and "busy" in response.json()["detail"]
    assert [response.status_code for response in accepted] == [200, 200]


# --- the load run and the command line -------------------------------------------------------------
def test_run_load_returns_throughput_and_latencies(models):
    app = serve.create_app(models, max_wait_ms=5)
    with serve.serving(app) as url:
        result = run_load(url, clients=3, requests=6, batching=True)
        with pytest.raises(ValueError, match="max_batch"):
            run_load(url, clients=1, requests=1, batching=False)
    assert {"poems_per_s", "p50_ms", "p99_ms"} <= set(result)
    assert result["ok"] == 6 and result["errors"] == {} and result["poems_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_cli_serve_passes_host_port_and_models(monkeypatch, tmp_path):
    from jueju import cli

    seen = {}
    monkeypatch.setattr(serve, "run", lambda config, model_dirs, **kw: seen.update(dirs=model_dirs, **kw))
    assert cli.main(["serve", "--port", "9001", "--model", str(tmp_path), "--set", "serve.host=0.0.0.0"]) == 0
    assert seen == {"dirs": [str(tmp_path)], "host": None, "port": 9001, "workers": 1}
    assert cli.main(["serve", "--port", "0"]) == 2
    assert cli.main(["serve", "--set", "serve.max_batch=0"]) == 2


def test_serve_settings_come_from_the_config(tmp_path, monkeypatch, models):
    config = load_config(
        overrides=["serve.max_batch=8", "serve.max_wait_ms=1", "serve.queue_size=9", "serve.max_body_kb=2"]
    )
    monkeypatch.setattr(serve, "load_models", lambda dirs: models)
    with TestClient(serve.create_app_from_config(config, ["unused"])) as client:
        health = client.get("/api/health").json()
        assert (health["max_batch"], health["max_wait_ms"], health["queue_size"], health["max_body_kb"]) == (8, 1, 9, 2)
        assert client.post("/api/poems", content=b" " * 3000).status_code == 413
