"""The shared small pieces: atomic writes (jueju.files), Han characters and lines (jueju.text), a light package."""

import os
import subprocess
import sys

import pytest

from jueju.files import atomic_path, temporary_path, write_atomic
from jueju.text import HAN, is_han, marked_lines, split_lines


def test_write_atomic_writes_text_and_bytes_and_replaces(tmp_path):
    path = tmp_path / "a.json"
    write_atomic(path, "床前\n明月光\n")
    assert path.read_bytes() == "床前\n明月光\n".encode()  # no newline translation
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path, suffix=".keras") as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".model.") and tmp.name.endswith(".tmp.keras")
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_a_library_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x.png"):
            pass
    assert os.listdir(tmp_path) == []


def test_temporary_names_are_hidden_ignored_and_unique(tmp_path):
    names = {temporary_path(tmp_path / "vocab.json").name for _ in range(100)}
    assert len(names) == 100
    assert all(name.startswith(".vocab.json.") and name.endswith(".tmp") for name in names)  # .gitignore: *.tmp


def test_han_and_lines():
    assert is_han("月") and is_han("\U00020000") and not is_han("，") and not is_han("a") and not is_han("月光")
    assert HAN.fullmatch("龘")
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    assert split_lines(poem) == ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"]
    assert split_lines(" 床前明月光, 疑是地上霜\n") == ["床前明月光", "疑是地上霜"]
    assert marked_lines(poem)[:2] == [("床前明月光", "，"), ("疑是地上霜", "。")]
    assert marked_lines("床前明月光 ，疑是地上霜") == [("床前明月光", "，"), ("疑是地上霜", "")]


def test_import_jueju_loads_no_keras_and_its_names_still_import():
    code = (
        "import sys, jueju; assert 'keras' not in sys.modules, 'keras'; "
        "assert sorted(m for m in sys.modules if m.startswith('jueju')) == ['jueju']; "
        "from jueju import load_config; assert callable(load_config) and 'keras' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
