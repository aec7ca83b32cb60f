"""Training pictures: metrics.csv written per epoch (appended across --resume), training.png drawn from it
or, for runs that predate it, from model.log."""

import math
from types import SimpleNamespace

import keras
import pytest

from jueju import cli
from jueju.config import load_config
from jueju.train.loop import METRICS_FIELDS, MetricsLog, TrainState, extra_callbacks, plot_after_training
from jueju.train.plot import parse_model_log, plot_training, read_metrics

PNG = b"\x89PNG\r\n\x1a\n"

MODEL_LOG = """\
##### training a wuyan model from epoch 1 (2024-01-01 10:00:00) #####
===== Epoch 1  loss 6.1000  val_loss 5.9000  val_ppl 365.0  120.5s =====
床前明月光，疑是地上霜。举头望明月，低头思故乡。
===== End =====
Epoch 2  loss 5.2000  val_loss 5.3000  val_ppl 200.3  118.0s
Epoch 3  loss 4.9000  val_loss 5.5000  val_ppl 244.7  119.1s
##### training a wuyan model from epoch 3 (2024-01-01 11:00:00) #####
Epoch 3  loss 4.8000  val_loss 5.1000  val_ppl 164.0  117.2s
Epoch 4  loss 4.6000  val_loss 5.0500  val_ppl 156.0  116.0s
"""


def write_csv(path, rows):
    lines = [",".join(METRICS_FIELDS)] + [",".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n", "utf-8")


def test_metrics_csv_to_training_png(tmp_path):
    write_csv(
        tmp_path / "metrics.csv", [(1, 6.0, 5.8, math.exp(5.8), 10.5, 0.002), (2, 5.0, 5.2, math.exp(5.2), 10.1, 0.002)]
    )
    out = plot_training(tmp_path)
    assert out == tmp_path / "training.png"
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 5000
    assert not list(tmp_path.glob(".*tmp*")), "written under a temporary name, then renamed"


def test_model_log_is_the_fallback_and_resumed_epochs_count_once(tmp_path):
    (tmp_path / "model.log").write_text(MODEL_LOG, "utf-8")
    rows = read_metrics(tmp_path)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert rows[2]["loss"] == 4.8 and rows[2]["val_perplexity"] == 164.0  # the resumed run's epoch 3
    assert rows[0]["seconds"] == 120.5 and rows[0]["learning_rate"] is None
    out = plot_training(tmp_path, tmp_path / "pictures" / "curves.png")
    assert out.read_bytes()[:8] == PNG


def test_model_log_keeps_only_the_last_run_and_its_form():
    text = MODEL_LOG + (
        "##### training a qiyan model from epoch 1 (2024-01-02) #####\n"
        "Epoch 1  loss 7.0  val_loss 6.9  val_ppl 992.3  50.0s\n"
        "##### training a wuyan model from epoch 1 (2024-01-03) #####\n"
        "Epoch 1  loss 6.5  val_loss 6.4  val_ppl 601.8  40.0s\n"
    )
    rows = parse_model_log(text)
    assert [(row["epoch"], row["loss"]) for row in rows] == [(1, 6.5)]


def test_csv_wins_over_model_log_and_nothing_to_plot_is_an_error(tmp_path):
    (tmp_path / "model.log").write_text(MODEL_LOG, "utf-8")
    write_csv(tmp_path / "metrics.csv", [(1, 6.0, 5.8, "", 10.5, "")])
    rows = read_metrics(tmp_path)
    assert len(rows) == 1 and rows[0]["val_perplexity"] == pytest.approx(math.exp(5.8))
    with pytest.raises(FileNotFoundError, match="no epochs to plot"):
        plot_training(tmp_path / "empty")


def test_jueju_plot_command(tmp_path, capsys):
    (tmp_path / "model.log").write_text(MODEL_LOG, "utf-8")
    assert cli.main(["plot", "--log-dir", str(tmp_path)]) == 0
    assert (tmp_path / "training.png").read_bytes()[:8] == PNG
    assert "training.png" in capsys.readouterr().out
    assert cli.main(["plot", "--log-dir", str(tmp_path / "none")]) == 2


def fake_model(rate=0.002):
    return SimpleNamespace(optimizer=SimpleNamespace(learning_rate=keras.Variable(rate)))


def run_epochs(config, state, epochs, val_loss=5.0):
    callback = MetricsLog(config, state)
    callback.set_model(fake_model())
    for epoch in epochs:
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 6.0 - epoch / 10, "val_loss": val_loss})
    return callback.path


def test_metrics_log_writes_a_row_per_epoch_and_appends_across_resume(tmp_path):
    config = load_config(overrides=[f"paths.log_dir={tmp_path / 'logs'}"])
    path = run_epochs(config, TrainState(), range(3))
    lines = path.read_text("utf-8").splitlines()
    assert lines[0] == "epoch,loss,val_loss,val_perplexity,seconds,learning_rate"
    first = dict(zip(METRICS_FIELDS, lines[1].split(",")))
    assert first["epoch"] == "1" and float(first["loss"]) == 6.0
    assert float(first["val_perplexity"]) == pytest.approx(math.exp(5.0), rel=1e-6)
    assert float(first["learning_rate"]) == pytest.approx(0.002) and float(first["seconds"]) >= 0
    # resumed after epoch 2 (epoch 3's checkpoint was lost): epoch 3 is run again and replaces its row
    run_epochs(config, TrainState(epoch=2), range(2, 4), val_loss=4.0)
    rows = read_metrics(tmp_path / "logs")
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert [row["val_loss"] for row in rows] == [5.0, 5.0, 4.0, 4.0]
    assert len(path.read_text("utf-8").splitlines()) == 5
    # a run from scratch starts the file anew
    run_epochs(config, TrainState(), range(1))
    assert [row["epoch"] for row in read_metrics(tmp_path / "logs")] == [1]
    assert plot_after_training(config) == tmp_path / "logs" / "training.png"


def test_tensorboard_is_an_option(tmp_path):
    base = [f"paths.log_dir={tmp_path}"]
    assert [type(c).__name__ for c in extra_callbacks(load_config(overrides=base), TrainState())] == ["MetricsLog"]
    callbacks = extra_callbacks(load_config(overrides=base + ["train.tensorboard=true"]), TrainState())
    assert isinstance(callbacks[-1], keras.callbacks.TensorBoard)
    assert callbacks[-1].log_dir == str(tmp_path / "tensorboard")


def test_a_failed_plot_only_warns(tmp_path, caplog):
    config = load_config(overrides=[f"paths.log_dir={tmp_path / 'nothing'}"])
    assert plot_after_training(config) is None
    assert "could not draw" in caplog.text
