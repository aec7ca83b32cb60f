"""The trained model committed under models/wuyan works right after set-up, with no training."""
import re

import pytest

from jueju.config import PROJECT_ROOT

MODEL = PROJECT_ROOT / "models" / "wuyan"
FIVE = re.compile(r"^([\u4e00-\u9fff]{5}[，。]){4}$")
pytestmark = pytest.mark.skipif(not (MODEL / "model.keras").is_file(), reason=f"no committed model in {MODEL}")


def test_generate_poetry_uses_the_committed_model():
    from jueju import generate_poetry

    poem = generate_poetry("床前明月光", seed=1)
    assert FIVE.match(poem) and poem.startswith("床前明月光，") and poem.endswith("。")


def test_committed_model_carries_what_generation_needs():
    for name in ("model.keras", "vocab.json", "config.json", "train_lines.npz"):
        assert (MODEL / name).is_file(), name
    size = sum(path.stat().st_size for path in MODEL.iterdir() if path.is_file())
    assert size <= 25_000_000  # the 25 MB, in decimal megabytes


def test_acrostic_and_every_constraint_with_the_committed_model():
    from jueju import generate_poems

    poems = generate_poems(acrostic="春夏秋冬", num=4, seed=2, tonal=True, rhyme="pingshui")
    assert all(FIVE.match(poem) and [line[0] for line in re.split("[，。]", poem)[:4]] == list("春夏秋冬")
               for poem in poems)
