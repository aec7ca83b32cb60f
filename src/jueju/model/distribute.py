"""Where training runs: one device, or data-parallel over several, per `train.distribution`.

    none          one device: whatever the backend picks (its first GPU when it sees one)
    mirrored      TensorFlow's MirroredStrategy: a replica on every GPU of this machine
                  (on a machine without GPUs, on every logical CPU device)
    multi_worker  TensorFlow's MultiWorkerMirroredStrategy: the machines named in TF_CONFIG,
                  each with all its GPUs; every machine runs the same `jueju train`
    data_parallel JAX through keras.distribution.DataParallel: every device JAX sees (and, when
                  KERAS_DISTRIBUTION_NUM_PROCESSES > 1, keras.distribution.initialize() joins the
                  processes of a multi-host job first; that path is not tested here)

Each copy of the model gets `batch_size / replicas` windows per step and the gradients are
averaged, so one step is the same step as on one device with the whole batch:
`train.batch_size` is the global batch. `scope()` wraps building, compiling and fitting the
model; a distribution the running backend has no engine for is refused with a message that
names both. Mixed precision (`train.mixed_precision`) is a dtype policy set around building
the model (`precision()`); the softmax layer stays float32.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

log = logging.getLogger(__name__)

# distribution -> the backend that has an engine for it (None: every backend)
ENGINES: dict[str, str | None] = {
    "none": None,
    "mirrored": "tensorflow",
    "multi_worker": "tensorflow",
    "data_parallel": "jax",
}
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
# TensorFlow runs this many steps per call of the compiled train function: Keras converts the
# loss to a Python float after every call (a device -> host round-trip), so this makes it one
# per 16 batches. JAX and PyTorch hand per-batch logs to a thread and never block on them;
# PyTorch also refuses steps_per_execution > 1.
TF_STEPS_PER_EXECUTION = 16


class DistributionError(ValueError):
    """train.distribution names an engine the running Keras backend does not have."""


@dataclass
class Plan:
    """The distribution chosen for this process, as training sees it."""

    name: str
    backend: str
    replicas: int  # copies of the model taking part in each step (all machines together)
    devices: list[str]  # the devices of this process that hold a replica
    engine: Any = None  # the tf.distribute strategy or keras.distribution.DataParallel
    chief: bool = True  # the process whose files count (worker 0 / process 0)

    def check_batch(self, batch_size: int) -> None:
        """Every replica must get the same number of windows per step."""
        if batch_size % self.replicas:
            raise DistributionError(
                f"train.batch_size = {batch_size} does not split evenly over {self.replicas} replicas "
                f"({self.name} on {self.backend}): use a multiple of {self.replicas}"
            )

    def trim(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """Drop the last few samples so the last, partial batch also splits evenly (JAX shards exactly;
        tf.distribute cannot add up unequal per-replica losses of sequences)."""
        if self.replicas == 1:
            return arrays
        keep = len(arrays[0]) - len(arrays[0]) % self.replicas
        return tuple(array[:keep] for array in arrays)

    def steps_per_execution(self, steps_per_epoch: int = 0) -> int:
        """Batches per call of the compiled train function; divides steps_per_epoch (Keras would
        otherwise round every epoch up to a multiple of it). One on CPUs: there a step of a real
        model takes seconds, beside which the round-trip is nothing, and Ctrl-C or SIGTERM waits for
        the call in flight (16 steps of the 五言 model: a minute)."""
        if self.backend != "tensorflow" or self.name == "multi_worker":  # Keras's multi-step loop fails there
            return 1
        if all("cpu" in device.lower() for device in self.devices):
            return 1
        return math.gcd(steps_per_epoch, TF_STEPS_PER_EXECUTION) if steps_per_epoch else TF_STEPS_PER_EXECUTION


def backend() -> str:
    return keras.backend.backend()


def check(name: str, backend_name: str | None = None) -> None:
    """Raise DistributionError unless `name` is a distribution the backend can run."""
    backend_name = backend_name or backend()
    if name not in ENGINES:
        raise DistributionError(f"unknown train.distribution {name!r}; valid: {', '.join(ENGINES)}")
    needed = ENGINES[name]
    if needed is not None and needed != backend_name:
        other = [key for key, engine in ENGINES.items() if engine == backend_name]
        hint = (
            f"; with {backend_name} use train.distribution = {' or '.join(other)}"
            if other
            else (f"; {backend_name} has no data-parallel engine here: use train.distribution = none")
        )
        raise DistributionError(
            f"train.distribution = {name} needs the {needed} backend (KERAS_BACKEND={needed}), "
            f"but Keras runs on {backend_name}{hint}"
        )


def check_precision(name: str) -> None:
    if name not in PRECISIONS:
        raise DistributionError(f"unknown train.mixed_precision {name!r}; valid: {', '.join(PRECISIONS)}")


def list_devices() -> list[str]:
    """The devices Keras would use (keras.distribution has no device list on PyTorch)."""
    if backend() != "torch":
        return list(keras.distribution.list_devices())
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu:0"]


_strategies: dict[str, Any] = {}  # a TensorFlow strategy is created once per process


@contextlib.contextmanager
def scope(name: str = "none") -> Iterator[Plan]:
    """Build, compile and fit inside this: `with scope(config.train.distribution) as plan: ...`."""
    check(name)
    if name == "none":
        yield Plan(name, backend(), 1, list_devices()[:1])
        return
    if name in ("mirrored", "multi_worker"):
        strategy = _tf_strategy(name)
        plan = Plan(
            name, "tensorflow", strategy.num_replicas_in_sync, _tf_devices(strategy), strategy, _tf_chief(strategy)
        )
        with strategy.scope():
            yield plan
        return
    distribution = _data_parallel()
    import jax

    plan = Plan(
        name,
        "jax",
        distribution.num_model_replicas,
        [str(d) for d in jax.local_devices()],
        distribution,
        jax.process_index() == 0,
    )
    with distribution.scope():
        yield plan


@contextlib.contextmanager
def precision(name: str = "none") -> Iterator[None]:
    """Layers built inside compute in `name` (mixed_float16 / mixed_bfloat16), keep float32 weights."""
    check_precision(name)
    if name == "none":
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def for_sampling(model):
    """The model as Poet should call it while training runs under a tf.distribute strategy.

    There predict_on_batch splits the rows over the replicas and gathers the answers, over
    every worker with multi_worker: a batch of one poem comes back as two rows, or as every
    worker's rows. Inside a strategy the model is called directly instead, on this process's
    own copy of the weights. Anywhere else (JAX's DataParallel never splits predict_on_batch's
    rows): the model itself.
    """
    if backend() != "tensorflow":
        return model
    import tensorflow as tf

    return _LocalPredictor(model) if tf.distribute.has_strategy() else model


class _LocalPredictor:
    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict_on_batch(self, x):
        return keras.tree.map_structure(keras.ops.convert_to_numpy, self._model(x, training=False))


def describe(plan: Plan) -> str:
    where = ", ".join(plan.devices)
    return f"{plan.backend}, distribution {plan.name}: {plan.replicas} replica(s) on {where}"


def _tf_strategy(name: str):
    import tensorflow as tf

    if name not in _strategies:
        if name == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
            # several CPU devices (tests, or a machine split with set_logical_device_configuration)
            # reduce through one device; GPUs use NCCL, MirroredStrategy's default
            ops = None if gpus else tf.distribute.ReductionToOneDevice()
            _strategies[name] = tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=ops)
        else:
            if not os.environ.get("TF_CONFIG"):
                log.warning("train.distribution = multi_worker without TF_CONFIG: training on this machine only")
            _strategies[name] = tf.distribute.MultiWorkerMirroredStrategy()
            _patch_keras_for_multi_worker()
    return _strategies[name]


def _tf_devices(strategy) -> list[str]:
    return list(strategy.extended.worker_devices)


def _tf_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def _patch_keras_for_multi_worker() -> None:
    """Let Keras 3 fit under MultiWorkerMirroredStrategy with more than one worker.

    Keras 3 (3.15 here) fails there in two places (keras-team/keras#20585): it averages a sample
    (x, y) batch over the workers to build the optimizer and metrics, which the strategy cannot
    do for a pair, and it averages each step's scalar loss over the workers along an axis 0 a
    scalar does not have. Both are replaced by what they mean to do, and only under a
    multi-worker strategy; everything else goes to Keras's own code. Checked by
    tests/test_distributed.py against single-device training.
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    multi_worker = getattr(tf_trainer, "_collective_all_reduce_multi_worker", None)
    trainer = getattr(tf_trainer, "TensorFlowTrainer", None)
    if getattr(tf_trainer, "_jueju_multi_worker", False):
        return
    if multi_worker is None or trainer is None or not hasattr(tf_trainer, "reduce_per_replica"):
        log.warning(
            "this Keras version's TensorFlow trainer is not the one jueju knows: multi_worker "
            "training may fail (see keras-team/keras#20585)"
        )
        return
    keras_build, keras_reduce = trainer._maybe_symbolic_build, tf_trainer.reduce_per_replica

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return keras_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:  # only shapes matter: this worker's first replica's batch
            data_batch = tree.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v
                ),
                next(batches),
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return keras_reduce(values, strategy, reduction)

        def mean(value):
            if not isinstance(value, tf.distribute.DistributedValues):
                return value
            rank = strategy.experimental_local_results(value)[0].shape.rank
            return strategy.reduce("MEAN", value, axis=0 if rank else None)

        return tree.map_structure(mean, values)

    trainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer._jueju_multi_worker = True


def _data_parallel():
    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1 and "data_parallel" not in _strategies:
        keras.distribution.initialize()  # job addresses and process id from KERAS_DISTRIBUTION_*
        _strategies["data_parallel"] = True
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices())
