"""End to end on the tiny corpus: prepare -> word2vec -> train 2 epochs -> resume -> generate."""

import re
import shutil

import pytest

from jueju.cli import main
from jueju.config import load_config
from jueju.data import condition
from jueju.data.dataset import PAD_ID, Vocab, Windows
from jueju.train.loop import training_samples
from jueju.write.poet import generate_poems, generate_poetry

from conftest import tiny_overrides

FIVE = re.compile(r"^[\u4e00-\u9fff]{5}，[\u4e00-\u9fff]{5}。[\u4e00-\u9fff]{5}，[\u4e00-\u9fff]{5}。$")
pytestmark = pytest.mark.slow


def cli(root, *args, **overrides):
    sets = [arg for item in tiny_overrides(root, **overrides) for arg in ("--set", item)]
    return main([*sets, *args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    assert cli(root, "train") == 0
    return root


def test_training_writes_model_log_checkpoints_and_model(trained):
    models = trained / "models" / "wuyan"
    assert {p.name for p in models.iterdir()} >= {
        "model.keras",
        "vocab.json",
        "config.json",
        "checkpoints",
        "train_state.json",
    }
    assert sorted(p.name for p in (models / "checkpoints").glob("*.keras")) == ["epoch_0001.keras", "epoch_0002.keras"]
    log = (trained / "logs" / "model.log").read_text("utf-8")
    for epoch in (1, 2):
        block = re.search(
            rf"===== Epoch {epoch}  loss [\d.]+  val_loss [\d.]+  val_ppl [\d.]+  [\d.]+s =====\n"
            r"((?:.+\n)+?)===== End =====",
            log,
        )
        assert block, log
        poems = block.group(1).splitlines()
        assert len(poems) == 2 and all(FIVE.match(poem) for poem in poems)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed (scripts/setup.sh installs it)")
def test_model_diagram_is_drawn(trained):
    assert (trained / "models" / "wuyan" / "model.png").read_bytes()[:4] == b"\x89PNG"


def test_word2vec_similar_prints_neighbours(trained, capsys):
    assert cli(trained, "word2vec", "--similar", "月", "--topn", "5") == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 5 and all(len(char) == 1 and -1 <= float(score) <= 1 for char, score in rows)


def test_finetune_starts_from_a_given_model(trained, tmp_path):
    source = trained / "models" / "wuyan" / "model.keras"
    root = tmp_path / "tuned"
    shutil.copytree(trained / "data", root / "data")  # the same data set, hence the same vocabulary
    assert cli(root, "train", "--finetune", str(source), **{"train.epochs": 1}) == 0
    assert (root / "models" / "wuyan" / "model.keras").is_file()
    log = (root / "logs" / "model.log").read_text("utf-8")
    assert "===== Epoch 1 " in log


def test_finetune_with_another_vocabulary_carries_the_shared_tokens_over(trained, tmp_path, caplog):
    source = trained / "models" / "wuyan" / "model.keras"
    with caplog.at_level("INFO", logger="jueju"):
        assert cli(tmp_path, "train", "--finetune", str(source), **{"dataset.vocab_size": 300, "train.epochs": 1}) == 0
    assert "carried 300 of 300 tokens over" in caplog.text  # its 300 most frequent are among the first 400
    assert len(Vocab.load(tmp_path / "models" / "wuyan" / "vocab.json")) == 300


def test_finetune_of_a_model_without_its_vocabulary_that_does_not_fit_is_refused(trained, tmp_path, capsys):
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(trained / "models" / "wuyan" / "model.keras", lone / "model.keras")  # no vocab.json beside it
    assert cli(tmp_path, "train", "--finetune", str(lone / "model.keras"), **{"dataset.vocab_size": 300}) == 2
    assert "vocabulary" in capsys.readouterr().err


def test_prepared_artefacts(trained):
    data = trained / "data" / "wuyan"
    train = Windows.load(data / "train.npz")  # the default: one sequence per poem, a target at every position
    poems = len((data / "train.txt").read_text("utf-8").split())
    assert train.x.shape == train.y.shape == (poems, 24) and (train.x[:, 0] == 0).all()
    assert (data / "word2vec.txt").is_file() and (data / "manifest.json").is_file()


def test_quatrains_only_trains_on_the_real_quatrains_alone(trained):
    data = trained / "data" / "wuyan"
    quatrains = set((data / "poems.txt").read_text("utf-8").split())
    train_poems = (data / "train.txt").read_text("utf-8").split()
    assert not set(train_poems) <= quatrains  # the tiny corpus has stanza cuts too
    config = load_config(overrides=tiny_overrides(trained, **{"train.quatrains_only": "true"}))
    samples, vocab = training_samples(config), Vocab.load(data / "vocab.json")
    assert config.dataset.condition  # each poem's targets follow its block's (ignored) ones
    assert (samples.y[:, : condition.BLOCK] == PAD_ID).all()
    expected = [vocab.decode(vocab.encode(poem)) for poem in train_poems if poem in quatrains]
    assert sorted(map(vocab.decode, samples.y[:, condition.BLOCK :])) == sorted(expected)


def test_resume_continues_at_epoch_3(trained):
    assert cli(trained, "train", "--resume", **{"train.epochs": 3}) == 0
    log = (trained / "logs" / "model.log").read_text("utf-8")
    assert "from epoch 3" in log and "===== Epoch 3 " in log
    assert log.count("===== Epoch 1 ") == 1
    assert (trained / "models" / "wuyan" / "checkpoints" / "epoch_0003.keras").is_file()


def test_generate_poetry_gives_the_format_for_many_seeds(trained):
    model_dir = trained / "models" / "wuyan"
    for seed in range(20):
        poem = generate_poetry("月暗竹亭幽，", model_dir=model_dir, seed=seed)
        assert FIVE.match(poem) and poem.startswith("月暗竹亭幽，")
    assert generate_poetry("月暗竹亭幽", model_dir=model_dir, seed=4) == generate_poetry(
        "月暗竹亭幽", model_dir=model_dir, seed=4
    )
    assert len(generate_poems("春眠不觉晓", 5, model_dir=model_dir)) == 5


def test_cli_generate_prints_poems(trained, capsys):
    assert cli(trained, "generate", "床前明月光", "白日依山尽", "--num", "3", "--seed", "1") == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 6 and all(FIVE.match(line) for line in lines)


def test_cli_errors_are_one_line(trained, capsys):
    assert cli(trained, "generate", "床前明月") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "5 (五言)" in err and "Traceback" not in err
    assert main(["--set", "train.nope=1", "train"]) == 2
    assert "unknown config key train.nope" in capsys.readouterr().err


def test_missing_model_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="jueju train"):
        generate_poetry("床前明月光", model_dir=tmp_path)
