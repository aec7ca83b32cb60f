"""Training never overwrites a model it did not start from (README, Train your own).

A folder holding a trained model is refused unless the run starts from it (--resume with its
checkpoints, --finetune of its own model.keras) or --overwrite is given; --out DIR trains into
a folder of its own; evaluation.json never outlives the model it described.
"""

import hashlib

import pytest

from jueju.cli import main
from jueju.config import FORMS, PROJECT_ROOT

from conftest import tiny_overrides

COMMITTED = PROJECT_ROOT / "models"


def digests(folder):
    return {
        path.relative_to(folder): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def cli(root, *args, **overrides):
    sets = [arg for item in tiny_overrides(root, **{"train.epochs": 1, **overrides}) for arg in ("--set", item)]
    return main([*sets, *args])


def refusal(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("jueju train: error: ")
    return err


def committed() -> dict:
    """Every file of the committed model folders (the forward models and their backward models), by path."""
    folders = [folder for folder in sorted(COMMITTED.iterdir()) if (folder / "model.keras").is_file()]
    return {folder.name: digests(folder) for folder in folders}


WAYS = [[], ["--resume"], ["--finetune", "elsewhere/model.keras"]]  # none starts from the committed model


def backward(length: int) -> list[str]:
    """Training a form's backward model into its committed folder."""
    folder = COMMITTED / f"{FORMS[length]}-backward"
    return ["--set", "model.direction=backward", "--set", f"corpus.line_length={length}", "train", "--out", str(folder)]


@pytest.mark.parametrize(
    "args",
    [*(["train", *way] for way in WAYS), *(backward(5) + way for way in WAYS), backward(7)],
)
def test_train_in_a_checkout_leaves_every_committed_model_file_byte_identical(capsys, args):
    before = committed()
    assert {"wuyan", "wuyan-backward"} <= set(before), "a committed 五言 model is missing"
    assert main(args) == 2
    says = refusal(capsys)
    for way in ("--out DIR", "--resume", "--finetune", "--overwrite"):
        assert way in says, says
    assert committed() == before


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained into a folder of its own with --out."""
    root = tmp_path_factory.mktemp("safety")
    assert cli(root, "train", "--out", str(root / "mine")) == 0
    return root


@pytest.mark.slow
def test_out_trains_into_its_own_folder_and_generation_reads_it(trained, capsys):
    mine = trained / "mine"
    assert {"model.keras", "vocab.json", "config.json", "train_lines.npz"} <= {p.name for p in mine.iterdir()}
    assert not (trained / "models" / "wuyan").exists()  # the form folder was never touched
    capsys.readouterr()
    assert main(["generate", "床前明月光", "--model", str(mine), "--rhyme", "none", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("床前明月光，")


@pytest.mark.slow
def test_a_folder_with_a_model_is_refused_and_overwrite_replaces_it(trained, capsys):
    mine = trained / "mine"
    before = digests(mine)
    assert cli(trained, "train", "--out", str(mine)) == 2
    assert "--overwrite" in refusal(capsys)
    assert digests(mine) == before

    (mine / "evaluation.json").write_text("{}", "utf-8")  # describes the model about to be replaced
    assert cli(trained, "train", "--out", str(mine), "--overwrite", **{"train.seed": 7}) == 0
    assert not (mine / "evaluation.json").exists()
    assert (
        digests(mine)[mine.joinpath("model.keras").relative_to(mine)]
        != before[mine.joinpath("model.keras").relative_to(mine)]
    )


@pytest.mark.slow
def test_resume_and_finetune_in_place_start_from_the_folder_itself(trained, capsys):
    mine = trained / "mine"
    assert cli(trained, "train", "--out", str(mine), "--resume", **{"train.epochs": 2}) == 0
    assert "trained 2 epochs" in capsys.readouterr().out
    assert cli(trained, "train", "--out", str(mine), "--finetune", str(mine / "model.keras")) == 0

    other = trained / "other"
    assert cli(trained, "train", "--out", str(other), "--finetune", str(mine / "model.keras")) == 0
    assert cli(trained, "train", "--out", str(other), "--finetune", str(mine / "model.keras")) == 2
    assert "holds a trained model" in refusal(capsys)


@pytest.mark.slow
def test_resume_without_checkpoints_is_refused_where_a_model_is(trained, capsys):
    bare = trained / "bare"
    bare.mkdir()
    for name in ("model.keras", "vocab.json", "config.json"):
        (bare / name).write_bytes((trained / "mine" / name).read_bytes())
    before = digests(bare)
    assert cli(trained, "train", "--out", str(bare), "--resume") == 2
    assert "no checkpoint to resume from" in refusal(capsys)
    assert digests(bare) == before


def test_carry_vocabulary_keeps_the_shared_tokens_rows_and_every_other_weight():
    import numpy as np

    from jueju.config import load_config
    from jueju.model.network import build_model, carry_vocabulary

    spec = load_config(overrides=["model.input=embedding", "model.embedding_dim=8", "model.lstm_units=12"]).model
    source_tokens, target_tokens = (
        ["<pad>", "<unk>", "，", "。", "月", "光"],
        ["<pad>", "<unk>", "。", "山", "月", "，"],
    )
    source, target = build_model(spec, 6, None), build_model(spec, 6, None)
    fresh_embedding = target.get_layer("embedding").get_weights()[0].copy()
    carried = carry_vocabulary(source, source_tokens, target, target_tokens)
    pairs = {0: 0, 1: 1, 2: 3, 4: 4, 5: 2}  # target id -> source id; 山 (3) is new
    old_embedding, new_embedding = (
        source.get_layer("embedding").get_weights()[0],
        carried.get_layer("embedding").get_weights()[0],
    )
    (old_kernel, old_bias), (kernel, bias) = (
        source.get_layer("next_char").get_weights(),
        carried.get_layer("next_char").get_weights(),
    )
    for to, of in pairs.items():
        assert np.array_equal(new_embedding[to], old_embedding[of])
        assert np.array_equal(kernel[:, to], old_kernel[:, of]) and bias[to] == old_bias[of]
    assert np.array_equal(new_embedding[3], fresh_embedding[3]) and bias[3] == old_bias.min()
    for name in ("lstm_1",):
        assert all(
            np.array_equal(a, b)
            for a, b in zip(source.get_layer(name).get_weights(), carried.get_layer(name).get_weights())
        )


def test_a_missing_model_names_the_exact_command_that_trains_it(tmp_path):
    from jueju.config import training_command
    from jueju.write.poet import Poet

    assert training_command(COMMITTED / "wuyan") == "jueju train"
    assert training_command(COMMITTED / "qiyan") == "jueju train --set corpus.line_length=7"
    assert training_command(tmp_path / "mine") == f"jueju train --out {tmp_path / 'mine'}"
    with pytest.raises(FileNotFoundError, match=f"train one with `jueju train --out {tmp_path}`"):
        Poet.load(tmp_path)
