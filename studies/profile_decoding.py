#!/usr/bin/env python
"""Where one decoding step's time goes, on the host loop and on the device loop (docs/speed.md).

    python scripts/profile_decoding.py [--batch 1024] [--model-dir models/wuyan]

A model of the benchmark's size (LSTM 256 + 512, untrained: speed does not depend on the
weights) over the committed model's vocabulary and training lines, the default settings
(top-k, rhyme, no_repeat, no_copy), first line 白日依山尽: 15 characters chosen a poem.

- The host loop (sampling.Sampler.run): cProfile of one batch, each part's time divided by the
  15 steps: the model call, the constraint masks, log-softmax and masking, the sampler's choice.
- The device loop (jueju.write.device_loop): one batch with everything, then with one part switched off
  at a time (its cost is the difference), the bare model (the same LSTM step and softmax in one
  compiled loop, nothing else), and the host's share (cProfile: what is not inside the compiled calls).
"""

import argparse
import cProfile
import dataclasses
import pstats
import time

import keras
import numpy as np

from jueju.config import load_config_json
from jueju.data.dataset import Vocab
from jueju.model.network import build_model
from jueju.write.constraints import LineIndex
from jueju.write.poet import Poet

FIRST_LINE = "白日依山尽"
STEPS = 15  # characters chosen after a given first line: 3 lines of 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--model-dir", default="models/wuyan")
    args = parser.parse_args()
    config = load_config_json(f"{args.model_dir}/config.json")
    vocab = Vocab.load(f"{args.model_dir}/vocab.json")
    lines = LineIndex.load(f"{args.model_dir}/{LineIndex.FILE}")
    spec = dataclasses.replace(config.model, input="embedding", lstm_units=[256, 512], dropout=0.6, dense_units=[])
    keras.utils.set_random_seed(0)
    poet = Poet(build_model(spec, len(vocab), None), vocab, config, lines)
    n = args.batch
    print(f"batch {n}, {keras.backend.backend()}; ms per step (a step: one character for every poem of the batch)")

    device = getattr(poet, "device_loop", None)  # None: a jueju from before the device loop (the host's alone)
    poet.device_loop = None
    host = profile(lambda: poet.poems(FIRST_LINE, num=n, seed=1), warm=True)
    parts = {
        "model call (Stepper.next_logits)": host.part("next_logits"),
        "constraint masks (combine)": host.part("allowed", "constraints.py"),
        "log-softmax and masking": host.part("log_softmax") + host.part("mask_logits"),
        "sampler's choice (top-k, Gumbel noise)": host.part("choose"),
    }
    print(f"\nhost loop: {host.total / STEPS * 1000:.1f} ms a step")
    for name, seconds in parts.items():
        print(f"  {name:45s} {seconds / STEPS * 1000:8.1f}")
    rest = host.total - sum(parts.values())
    print(f"  {'the rest (prompt, decoding to text, ...)':45s} {rest / STEPS * 1000:8.1f}")

    if device is None:
        return
    poet.device_loop = device
    timed = {}
    variants = {
        "everything": {},
        "without rhyme": dict(rhyme="none"),
        "without no_repeat": dict(no_repeat=False),
        "without no_copy (its host stops too)": dict(no_copy=False),
        "greedy instead of top-k": dict(sampler="greedy"),
    }
    for name, options in variants.items():
        timed[name] = best_of(lambda options=options: poet.poems(FIRST_LINE, num=n, seed=1, **options))
    model_only = bare_model(device, n)
    everything = timed["everything"]
    print(f"\ndevice loop: {everything / STEPS * 1000:.1f} ms a step (the whole batch: {everything * 1000:.0f} ms)")
    print(f"  {'the model alone (LSTM steps and softmax)':45s} {model_only / STEPS * 1000:8.1f}")
    for name, seconds in timed.items():
        if name != "everything":
            print(f"  {'everything ' + name:45s} {(seconds - everything) / STEPS * 1000:+8.1f}")
    shares = profile(lambda: poet.poems(FIRST_LINE, num=n, seed=1), warm=False)
    inside = shares.part("TFE_Py_Execute")  # TensorFlow's: each compiled call, and the model's read of the start
    print(f"  {'on the host (outside the compiled calls)':45s} {(shares.total - inside) / STEPS * 1000:8.1f}")


class profile:
    """cProfile of one call: total seconds, and a part's cumulative seconds by function name."""

    def __init__(self, call, warm: bool):
        if warm:
            call()
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(call)
        self.total = time.perf_counter() - started
        self.stats = pstats.Stats(profiler).stats

    def part(self, function: str, where: str = "") -> float:
        """The outermost call's cumulative seconds among functions named `function` (in a file matching
        `where`): TopK.choose calls Sampler.choose, combine's `allowed` each constraint's `allowed`."""
        return max(
            (
                cumulative
                for (file, _, name), (_, _, _, cumulative, _) in self.stats.items()
                if (name == function or f".{function}" in name) and where in file
            ),
            default=0.0,
        )


def best_of(call, repeats: int = 3) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def bare_model(loop, rows: int) -> float:
    """What the model alone costs the device loop: the first line read in one call, then in one compiled
    loop the 17 LSTM steps from position 6 to 22 and the 14 softmaxes of the positions chosen after 6."""
    from keras import ops

    from jueju.model.stepper import compiled as compile_loop

    states = [np.zeros((rows, width), dtype) for width, dtype in loop.reader.state_shapes]

    def run(ids, states):
        def body(step, ids, states):
            x, new = loop.read(ids, states)  # the loop's own step

            def head(x=x):
                return ops.cast(ops.argmax(loop.softmax(x), axis=-1), "int32")

            punctuation_next = ops.logical_or(ops.equal(step % 6, 4), ops.equal(step, 16))  # 11, 17, 23 forced
            return step + 1, ops.cond(punctuation_next, lambda: ids, head), new

        return ops.while_loop(lambda step, ids, states: step < 17, body, (0, ids, states))[1]

    compiled = compile_loop(run)
    ids = np.full((rows,), 5, dtype=np.int32)
    context = np.full((1, 6), 5, dtype=np.int32)  # the first line, read once for all rows

    def once():
        loop.stepper.run(context)
        ops.convert_to_numpy(compiled(ids, states))

    return best_of(once)


if __name__ == "__main__":
    main()
