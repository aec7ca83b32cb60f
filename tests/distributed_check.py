"""A few steps of training, on one device and data-parallel, for tests/test_distributed.py.

Run in a fresh process (the devices must be set up before the framework starts):

    python tests/distributed_check.py mirrored          TensorFlow: none, then mirrored on 2 logical CPUs
    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \
    python tests/distributed_check.py data_parallel     JAX: none, then DataParallel on 2 CPU devices
    python tests/distributed_check.py worker I PORT0 PORT1   TensorFlow: worker I of a 2-worker job on this machine
    python tests/distributed_check.py train DIST ROOT [I PORT0 PORT1]
                                                        `jueju train` on the tiny corpus under ROOT: with
                                                        none, then DIST (or, with a worker index, as
                                                        that worker of a multi_worker job)

Prints a line "RESULT {json}" per run on stdout: replicas, devices, chief, losses and the final weights
(or for train: the training state, model.log and a poem). Same seed, same data, no dropout and
no shuffling, so the runs of the first three modes must agree to rounding.
"""

import json
import os
import sys
from pathlib import Path

MODE = sys.argv[1]
DISTRIBUTION = sys.argv[2] if MODE == "train" else MODE
if MODE == "worker" or (MODE == "train" and len(sys.argv) > 4):
    index, ports = int(sys.argv[-3]), sys.argv[-2:]
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": [f"localhost:{port}" for port in ports]}, "task": {"type": "worker", "index": index}}
    )
if DISTRIBUTION == "mirrored":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from jueju.config import load_config  # noqa: E402
from jueju.model import distribute  # noqa: E402
from jueju.model.network import build_model, compile_model  # noqa: E402

VOCAB, WINDOW, SAMPLES, BATCH, EPOCHS = 50, 6, 1000, 64, 3  # 1000 / 64: the last batch is partial (40)


def run(distribution: str) -> dict:
    spec = load_config(
        overrides=["model.input=embedding", "model.lstm_units=16,16", "model.embedding_dim=8", "model.dropout=0"]
    ).model
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (SAMPLES, WINDOW)).astype("int32")
    # learnable, so the loss moves; never <pad> (id 0), which the loss ignores, as no poem holds one
    y = (1 + (x[:, -1] + x[:, -2]) % (VOCAB - 1)).astype("int32")
    with distribute.scope(distribution) as plan:
        keras.utils.set_random_seed(7)
        model = compile_model(build_model(spec, VOCAB, WINDOW), 0.01)
        model.steps_per_execution = plan.steps_per_execution(0)
        history = model.fit(*plan.trim(x, y), batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
        weights = np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in model.get_weights()])
    return {
        "distribution": distribution,
        "backend": plan.backend,
        "replicas": plan.replicas,
        "devices": plan.devices,
        "chief": plan.chief,
        "loss": history.history["loss"],
        "weights": weights.tolist(),
    }


def run_train(distribution: str, root: Path) -> dict:
    from jueju.train.loop import train
    from jueju.write.poet import Poet

    from conftest import tiny_overrides

    config = load_config(
        # unconditioned: with ignored (block) targets Keras normalises each replica's loss by its own count of
        # targets, so a partial batch split unevenly between replicas gives a slightly other loss (docs/speed.md)
        overrides=tiny_overrides(
            root,
            **{"train.distribution": distribution, "train.epochs": 2, "model.dropout": 0, "dataset.condition": "false"},
        )
    )
    state = train(config)
    return {
        "distribution": distribution,
        "epoch": state.epoch,
        "best_val_loss": state.best_val_loss,
        "log": (config.log_dir / "model.log").read_text("utf-8"),
        "poem": Poet.load(config.model_dir).poem("床前明月光", seed=1),
    }


if __name__ == "__main__":
    if MODE == "train":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        root = Path(sys.argv[3])
        runs = [DISTRIBUTION] if DISTRIBUTION == "multi_worker" else ["none", DISTRIBUTION]
        for name in runs:
            print("RESULT", json.dumps(run_train(name, root / name)), flush=True)
    else:
        for name in ["multi_worker"] if MODE == "worker" else ["none", MODE]:
            print("RESULT", json.dumps(run(name)), flush=True)
