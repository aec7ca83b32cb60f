"""Streaming: a call of any size runs through chunks of a few fixed shapes (issue 26), so its memory is
bounded and nothing is compiled again for a new size (no framework warning reaches the caller).

Each check runs in a child process, as a user's program would: its peak resident memory (VmHWM) and
its stderr are its own. Memory is measured, never timed, against what the arithmetic of holding every
candidate at once would need.
"""

import json
import subprocess
import sys

import pytest

from conftest import TESTS

COMMITTED = TESTS.parent / "models" / "wuyan"

POEMS, RERANK = 2048, 16  # 32,768 candidates: 32 chunks of CHUNK rows

CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import tiny_quatrains, untrained_poet

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))

poet = untrained_poet(tiny_quatrains(), conditioned=True)
options = dict(rerank={rerank}, rhyme="pingshui", no_copy=True, no_repeat=True)
poet.poems("床前明月光", num=1024 // {rerank}, seed=0, **options)  # a full chunk: every call compiled at its size
before = peak()
poems = poet.poems("床前明月光", num={poems}, seed=1, **options)
print(json.dumps({{"poems": len(poems), "growth": peak() - before, "vocab": len(poet.vocab)}}))
"""


@pytest.mark.slow
def test_a_large_call_streams_through_chunks_in_bounded_memory():
    code = CHILD.format(tests=str(TESTS), rerank=RERANK, poems=POEMS)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, child.stderr[-3000:]
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    assert measured["poems"] == POEMS
    # decoding all candidates at once holds their next-character probabilities, one float per candidate and
    # id, at every step (and scoring them all at once, at every position scored): the least it would need
    unchunked = POEMS * RERANK * measured["vocab"] * 4
    assert measured["growth"] < unchunked / 4, (measured, unchunked)


WARNINGS = """
import sys
from jueju import Poet
poet = Poet.load({model!r})
for num in (1, 3, 5, 9, 17, 33):  # as many bucket sizes, each read by every scorer of the defaults
    poet.poems("床前明月光", num, seed=num)
poet.poems(title="秋夜", num=2, seed=1)
poet.poems(acrostic="春夏秋冬", num=2, seed=1)
print("written")
"""


@pytest.mark.slow
def test_no_framework_warning_reaches_the_python_api_at_the_defaults():
    """TensorFlow warns when a compiled call is traced again and again (new batch sizes); calls of fixed
    shapes are traced a few times, and it never has to."""
    if not (COMMITTED / "model.keras").is_file():
        pytest.skip(f"no committed model at {COMMITTED}")
    code = WARNINGS.format(model=str(COMMITTED))
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert child.returncode == 0 and child.stdout.strip() == "written", child.stderr[-3000:]
    assert "WARNING" not in child.stderr and "retracing" not in child.stderr, child.stderr[-3000:]
