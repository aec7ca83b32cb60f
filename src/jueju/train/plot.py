"""Training pictures: logs/training.png from logs/metrics.csv (or, for older runs, logs/model.log).

metrics.csv is written by training (train.MetricsLog), one row per epoch:
epoch, loss, val_loss, val_perplexity, seconds, learning_rate. Runs that predate it are read
from model.log's lines "Epoch N  loss X  val_loss Y  val_ppl Z". In both, an epoch that appears
twice (an epoch re-run after --resume) counts once, with its last values.

Drawn with matplotlib's Agg backend (no display needed, safe in threads: no pyplot state).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from jueju.files import atomic_path

# The columns of logs/metrics.csv, which training writes (train.MetricsLog) and read_metrics reads.
METRICS_FIELDS = ("epoch", "loss", "val_loss", "val_perplexity", "seconds", "learning_rate")
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"
_EPOCH_LINE = re.compile(
    rf"Epoch (\d+)\s+loss {_NUMBER}\s+val_loss {_NUMBER}\s+val_ppl {_NUMBER}"
    rf"(?:\s+{_NUMBER}s)?",
    re.IGNORECASE,
)
_RUN_HEADER = re.compile(r"#####\s*training an? (\w+) model from epoch (\d+)")


def read_metrics(log_dir: str | Path) -> list[dict]:
    """Per epoch (ascending): epoch, loss, val_loss, val_perplexity, seconds, learning_rate (None if unknown).

    From <log_dir>/metrics.csv, else parsed from <log_dir>/model.log; [] when neither holds an epoch.
    """
    log_dir = Path(log_dir)
    csv_path, log_path = log_dir / "metrics.csv", log_dir / "model.log"
    if csv_path.is_file():
        rows = _read_csv(csv_path)
        if rows:
            return rows
    if log_path.is_file():
        return parse_model_log(log_path.read_text("utf-8", errors="replace"))
    return []


def _read_csv(path: Path) -> list[dict]:
    by_epoch: dict[int, dict] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            try:
                epoch = int(record["epoch"])
            except (KeyError, TypeError, ValueError):
                continue  # a header repeated or a line cut short by a crash
            row = {"epoch": epoch}
            for name in METRICS_FIELDS[1:]:
                row[name] = _float(record.get(name))
            if row["val_perplexity"] is None and row["val_loss"] is not None:
                row["val_perplexity"] = _perplexity(row["val_loss"])
            by_epoch[epoch] = row
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def parse_model_log(text: str) -> list[dict]:
    """The epochs of the last training run in model.log text (its form's run, resumed runs joined)."""
    runs: dict[str, dict[int, dict]] = {}  # form -> epoch -> row
    form = None
    for line in text.splitlines():
        header = _RUN_HEADER.search(line)
        if header:
            form, start = header.group(1), int(header.group(2))
            epochs = runs.setdefault(form, {})
            for epoch in [e for e in epochs if e >= start]:  # a new run from scratch, or epochs done again
                del epochs[epoch]
            runs.pop(form)
            runs[form] = epochs  # the form trained last comes last
            continue
        match = _EPOCH_LINE.search(line)
        if match:
            epoch = int(match.group(1))
            loss, val_loss, ppl, seconds = (_float(match.group(i)) for i in (2, 3, 4, 5))
            runs.setdefault(form, {})[epoch] = {
                "epoch": epoch,
                "loss": loss,
                "val_loss": val_loss,
                "val_perplexity": ppl,
                "seconds": seconds,
                "learning_rate": None,
            }
    if not runs:
        return []
    last = runs[list(runs)[-1]]
    return [last[epoch] for epoch in sorted(last)]


def plot_training(log_dir: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Draw loss and validation perplexity per epoch to `out` (default <log_dir>/training.png).

    Raises FileNotFoundError when there is nothing to draw.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    log_dir = Path(log_dir)
    rows = read_metrics(log_dir)
    if not rows:
        raise FileNotFoundError(
            f"no epochs to plot: neither {log_dir / 'metrics.csv'} nor {log_dir / 'model.log'} "
            "holds one (train first with `jueju train`)"
        )
    out = Path(out) if out is not None else log_dir / "training.png"
    epochs = [row["epoch"] for row in rows]

    def series(name):
        return [math.nan if row[name] is None else row[name] for row in rows]

    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, ppl_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, series("loss"), "o-", label="training loss", color="#1d5fb8", markersize=3)
    loss_axes.plot(epochs, series("val_loss"), "s-", label="validation loss", color="#b8322a", markersize=3)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("cross-entropy (nats per character)")
    loss_axes.set_title("loss")
    loss_axes.grid(alpha=0.3)
    loss_axes.legend()
    perplexity = series("val_perplexity")
    ppl_axes.plot(epochs, perplexity, "s-", color="#7b3fa0", markersize=3)
    finite = [p for p in perplexity if math.isfinite(p) and p > 0]
    if finite and max(finite) / min(finite) > 20:
        ppl_axes.set_yscale("log")
    best = min(
        range(len(rows)),
        key=lambda i: (
            rows[i]["val_loss"] if rows[i]["val_loss"] is not None and math.isfinite(rows[i]["val_loss"]) else math.inf
        ),
    )
    if math.isfinite(perplexity[best]):
        ppl_axes.annotate(
            f"best: epoch {epochs[best]}, {perplexity[best]:.1f}",
            (epochs[best], perplexity[best]),
            textcoords="offset points",
            xytext=(0, 12),
            ha="center",
            fontsize=9,
        )
        ppl_axes.plot([epochs[best]], [perplexity[best]], "*", color="#8a5a2b", markersize=12)
    ppl_axes.set_xlabel("epoch")
    ppl_axes.set_ylabel("perplexity")
    ppl_axes.set_title("validation perplexity")
    ppl_axes.grid(alpha=0.3)
    for axes in (loss_axes, ppl_axes):
        axes.xaxis.get_major_locator().set_params(integer=True)
    if title:
        figure.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png")
    return out


def _float(value) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
