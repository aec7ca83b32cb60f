"""Data-parallel training (train.distribution) and mixed precision (train.mixed_precision).

The data-parallel runs use two devices on this CPU, each in a fresh process (the devices must
be set up before the framework starts, see tests/distributed_check.py): TensorFlow's logical
CPU devices for mirrored, two worker processes on localhost for multi_worker, and
XLA_FLAGS=--xla_force_host_platform_device_count=2 for JAX's data_parallel. With the same seed
and data, a data-parallel step is the single-device step, so losses and weights must agree.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from jueju.cli import main
from jueju.config import ConfigError, load_config
from jueju.model import distribute
from jueju.model.distribute import DistributionError, Plan

from conftest import tiny_overrides

TESTS = Path(__file__).resolve().parent
CHECK = TESTS / "distributed_check.py"
TWO_JAX_DEVICES = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed: pip install -r requirements-backends.txt"
)


# -- choosing the engine -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, backend, says",
    [
        ("mirrored", "jax", ["mirrored", "tensorflow", "jax", "data_parallel"]),
        ("multi_worker", "torch", ["multi_worker", "tensorflow", "torch", "none"]),
        ("data_parallel", "tensorflow", ["data_parallel", "jax", "tensorflow", "mirrored or multi_worker"]),
        ("data_parallel", "torch", ["data_parallel", "jax", "torch"]),
        ("ring", "tensorflow", ["ring", "none, mirrored, multi_worker, data_parallel"]),
    ],
)
def test_a_distribution_the_backend_lacks_is_refused_naming_both(name, backend, says):
    with pytest.raises(DistributionError) as error:
        distribute.check(name, backend)
    for word in says:
        assert word in str(error.value)


@pytest.mark.parametrize(
    "name, backend",
    [
        ("none", "tensorflow"),
        ("none", "jax"),
        ("none", "torch"),
        ("mirrored", "tensorflow"),
        ("multi_worker", "tensorflow"),
        ("data_parallel", "jax"),
    ],
)
def test_the_engines_that_exist(name, backend):
    distribute.check(name, backend)


@pytest.mark.parametrize("key, value", [("train.distribution", "horovod"), ("train.mixed_precision", "float16")])
def test_config_refuses_unknown_values_listing_the_valid_ones(key, value):
    with pytest.raises(ConfigError, match="is not one of"):
        load_config(overrides=[f"{key}={value}"])


def test_defaults_are_one_device_in_float32():
    config = load_config()
    assert (config.train.distribution, config.train.mixed_precision) == ("none", "none")


def test_train_refuses_a_mismatch_before_any_work(tmp_path, capsys):
    other = "data_parallel" if keras.backend.backend() != "jax" else "mirrored"
    code = main(
        [
            "train",
            *sum((["--set", item] for item in tiny_overrides(tmp_path)), []),
            "--set",
            f"train.distribution={other}",
        ]
    )
    assert code == 2
    assert f"train.distribution = {other} needs the" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # nothing was prepared


def test_batch_must_split_evenly_and_the_last_batch_is_trimmed():
    plan = Plan("data_parallel", "jax", 4, ["cpu:0", "cpu:1", "cpu:2", "cpu:3"])
    plan.check_batch(1024)
    with pytest.raises(DistributionError, match="multiple of 4"):
        plan.check_batch(1022)
    x, y = plan.trim(np.zeros((1003, 6)), np.zeros(1003))
    assert len(x) == len(y) == 1000
    mirrored = Plan("mirrored", "tensorflow", 2, ["cpu:0", "cpu:1"])
    # tf.distribute splits an uneven last batch of windows, but fails to add up the losses of sequences
    assert len(mirrored.trim(np.zeros((1003, 24)))[0]) == 1002
    assert len(Plan("none", "tensorflow", 1, ["cpu:0"]).trim(np.zeros(1003))[0]) == 1003


def test_several_steps_per_call_only_where_keras_would_wait_for_each_loss():
    tf = Plan("none", "tensorflow", 1, ["gpu:0"])
    assert tf.steps_per_execution(0) == distribute.TF_STEPS_PER_EXECUTION
    assert tf.steps_per_execution(100) == 4  # divides steps_per_epoch, so epochs keep their length
    assert tf.steps_per_execution(7) == 1
    assert Plan("multi_worker", "tensorflow", 2, []).steps_per_execution(0) == 1
    assert Plan("none", "jax", 1, []).steps_per_execution(0) == 1
    assert Plan("none", "torch", 1, []).steps_per_execution(0) == 1
    # on CPUs a step takes seconds, and Ctrl-C or SIGTERM waits for the whole call in flight
    assert Plan("none", "tensorflow", 1, ["cpu:0"]).steps_per_execution(0) == 1
    cpus = [f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in range(2)]  # as MirroredStrategy names them
    assert Plan("mirrored", "tensorflow", 2, cpus).steps_per_execution(0) == 1


def test_no_training_callback_waits_on_the_device_every_batch(tiny_config):
    """No batch-end hook: Keras hands those the step's logs, the loss (a host round-trip every batch).
    A batch-begin hook gets no logs (Keras's fit calls it with the step number alone): SignalStop uses
    one to stop at the next step after SIGINT or SIGTERM."""
    from jueju.train import loop as train

    classes = [
        value
        for value in vars(train).values()
        if isinstance(value, type) and issubclass(value, keras.callbacks.Callback)
    ]
    assert classes
    batch_hooks = ("on_batch_end", "on_train_batch_end", "on_test_batch_end")
    for cls in classes:
        for hook in batch_hooks:
            assert getattr(cls, hook) is getattr(keras.callbacks.Callback, hook), f"{cls.__name__}.{hook}"


def test_scope_none_is_one_device_and_sampling_uses_the_model_itself():
    with distribute.scope("none") as plan:
        assert plan.replicas == 1 and plan.chief and len(plan.devices) == 1
        model = object()
        assert distribute.for_sampling(model) is model


# -- mixed precision ---------------------------------------------------------------------------------------------


def test_precision_is_set_only_inside_and_restored_after_an_error():
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with distribute.precision("mixed_bfloat16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError
    assert keras.config.dtype_policy().name == "float32"
    with distribute.precision("none"):
        assert keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_a_step_and_generates(policy):
    from jueju.data.dataset import Vocab
    from jueju.model.network import build_model, compile_model
    from jueju.write.poet import Poet

    config = load_config(
        overrides=[
            "model.input=embedding",
            "model.lstm_units=8",
            "model.embedding_dim=8",
            f"train.mixed_precision={policy}",
            "generate.rhyme=none",
            "generate.no_copy=false",
        ]
    )
    vocab = Vocab.build(
        [
            "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
            "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
            "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
        ],
        100,
    )
    with distribute.precision(config.train.mixed_precision):
        model = compile_model(build_model(config.model, len(vocab), 6), 0.01)
    assert model.get_layer("lstm_1").compute_dtype == policy.split("_")[1]
    assert model.get_layer("lstm_1").variable_dtype == "float32"
    ids = np.random.default_rng(0).integers(0, len(vocab), (64, 7)).astype("int32")
    loss = model.train_on_batch(ids[:, :6], ids[:, 6])
    assert np.isfinite(float(np.asarray(loss).reshape(-1)[0]))
    poem = Poet(model, vocab, config).poem("床前明月光", seed=1)
    assert poem.startswith("床前明月光，") and len(poem) == 24


@pytest.mark.slow
def test_mixed_precision_training_resumes_with_its_optimizer_state(tmp_path):
    from jueju.model.network import load_model
    from jueju.train.loop import train

    overrides = tiny_overrides(tmp_path, **{"train.mixed_precision": "mixed_float16"})
    train(load_config(overrides=[*overrides, "train.epochs=1"]))
    checkpoint = tmp_path / "models" / "wuyan" / "checkpoints" / "epoch_0001.keras"
    with distribute.precision("mixed_float16"):
        assert type(load_model(checkpoint).optimizer).__name__ == "LossScaleOptimizer"
    with _no_skipped_optimizer_warning():
        state = train(load_config(overrides=[*overrides, "train.epochs=2"]), resume=True)
    assert state.epoch == 2


class _no_skipped_optimizer_warning:
    """Keras warns 'Skipping variable loading for optimizer' when a resume loses the optimizer state."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self.caught = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        skipped = [w for w in self.caught if "Skipping variable loading for optimizer" in str(w.message)]
        assert not skipped, skipped[0].message
        return False


# -- two devices against one -------------------------------------------------------------------------------------


def run_check(*args: str, env: dict | None = None, timeout: int = 600) -> list[dict]:
    result = subprocess.run(
        [sys.executable, str(CHECK), *args],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return [json.loads(line[len("RESULT ") :]) for line in result.stdout.splitlines() if line.startswith("RESULT ")]


def free_ports(count: int) -> list[str]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [str(sock.getsockname()[1]) for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_workers(*args: str, roots: list[Path] | None = None, timeout: int = 600) -> list[dict]:
    """Two `distributed_check.py` processes, workers 0 and 1 of one multi_worker job on localhost."""
    ports = free_ports(2)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    workers = [
        subprocess.Popen(
            [sys.executable, str(CHECK), *args, *([str(roots[i])] if roots else []), str(i), *ports],
            cwd=TESTS.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=timeout)
            assert worker.returncode == 0, err[-5000:]
            results += [json.loads(line[len("RESULT ") :]) for line in out.splitlines() if line.startswith("RESULT ")]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    return results


def assert_same_training(single: dict, parallel: dict, replicas: int = 2) -> None:
    assert single["replicas"] == 1 and parallel["replicas"] == replicas
    assert np.allclose(single["loss"], parallel["loss"], rtol=1e-5, atol=1e-6), (single["loss"], parallel["loss"])
    assert single["loss"][-1] < single["loss"][0]  # it did learn something
    difference = np.abs(np.array(single["weights"]) - np.array(parallel["weights"])).max()
    assert difference < 1e-4, difference


@pytest.fixture(scope="module")
def tensorflow_runs():
    return run_check("mirrored")


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(tensorflow_runs):
    single, mirrored = tensorflow_runs
    assert mirrored["distribution"] == "mirrored" and len(mirrored["devices"]) == 2
    assert_same_training(single, mirrored)


@pytest.mark.slow
def test_multi_worker_on_two_processes_matches_one_device(tensorflow_runs):
    single = tensorflow_runs[0]
    workers = run_workers("worker")
    assert [worker["chief"] for worker in workers] == [True, False]
    for worker in workers:
        assert_same_training(single, worker)


@pytest.mark.slow
@needs_jax
def test_jax_data_parallel_on_two_devices_matches_one_device():
    single, parallel = run_check("data_parallel", env=TWO_JAX_DEVICES)
    assert parallel["backend"] == "jax" and parallel["devices"] == ["cpu:0", "cpu:1"]
    assert_same_training(single, parallel)


@pytest.mark.slow
@pytest.mark.parametrize("distribution", ["mirrored", pytest.param("data_parallel", marks=needs_jax)])
def test_jueju_train_data_parallel_matches_one_device(distribution, tmp_path):
    """The whole `jueju train` (checkpoints, sample poems in model.log) on two devices."""
    env = TWO_JAX_DEVICES if distribution == "data_parallel" else {"KERAS_BACKEND": "tensorflow"}
    single, parallel = run_check("train", distribution, str(tmp_path), env=env)
    assert parallel["epoch"] == single["epoch"] == 2
    assert np.isclose(single["best_val_loss"], parallel["best_val_loss"], rtol=1e-4)
    assert parallel["poem"].startswith("床前明月光，") and len(parallel["poem"]) == 24
    assert parallel["log"].count("===== End =====") == 2  # sample poems written under the distribution


@pytest.mark.slow
def test_jueju_train_multi_worker_on_two_processes(tmp_path):
    """Each worker has its own folders (as on separate machines); they end with the same model."""
    workers = run_workers("train", "multi_worker", roots=[tmp_path / "worker0", tmp_path / "worker1"])
    assert len(workers) == 2
    assert workers[0]["best_val_loss"] == pytest.approx(workers[1]["best_val_loss"], rel=1e-6)
    assert workers[0]["poem"] == workers[1]["poem"]
    assert workers[0]["log"].count("===== End =====") == 2
