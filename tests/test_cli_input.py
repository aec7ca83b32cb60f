"""`jueju generate -` and `jueju generate --input FILE`: first lines one a line, one model load per form,
a bad line reported with its number while the others are still written (README, Command line).

The models are small and untrained (test_serve.save_tiny_model), one per form, found where the
config says models are (paths.model_dir), as the committed ones are.
"""

import io
import re

import pytest

import jueju.write.poet as jg
from jueju.cli import main
from test_serve import FORMAT, save_tiny_model

# the models' [generate] as the user's config: every first line can succeed (no train_lines beside them)
SETTINGS = ["--set", "generate.no_copy=false", "--set", "generate.rhyme=none", "--seed", "3"]
LINES = [
    "床前明月光",  # 1
    "",  # 2: blank, skipped
    "朝辞白帝彩云间",  # 3: the 七言 model
    "moon light",  # 4: not Han
    "  月暗竹亭幽，  ",  # 5: spaces and punctuation, as on the command line
    "床前明月",  # 6: four characters
    "白日依山尽",  # 7
]
WRITTEN = ["床前明月光", "朝辞白帝彩云间", "月暗竹亭幽", "白日依山尽"]  # in input order


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_tiny_model(root / "wuyan", 5)
    save_tiny_model(root / "qiyan", 7)
    return root


@pytest.fixture
def loads(monkeypatch):
    """Every Poet.load, by folder name; the Poet cache starts empty."""
    monkeypatch.setattr(jg, "_poets", {})
    folders, real = [], jg.Poet.load

    def counted(model_dir):
        folders.append(model_dir.name)
        return real(model_dir)

    monkeypatch.setattr(jg.Poet, "load", counted)
    return folders


def run(capsys, model_root, *args):
    status = main(["generate", *args, "--set", f"paths.model_dir={model_root}", *SETTINGS])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out.split(), err.splitlines()


def assert_poems_begin_with(poems, first_lines):
    assert [poem.split("，")[0] for poem in poems] == first_lines, poems
    for poem, first_line in zip(poems, first_lines):
        assert FORMAT[len(first_line)].match(poem), poem


def assert_reported(errors, source, numbers_and_words):
    assert len(errors) == len(numbers_and_words), errors
    for error, (number, words) in zip(errors, numbers_and_words):
        assert error.startswith(f"jueju generate: {source}, line {number}: "), error
        assert re.search(words, error), error


def test_stdin_writes_a_poem_for_each_good_line_and_reports_each_bad_one(capsys, monkeypatch, model_root, loads):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("\n".join(LINES).encode())))
    status, poems, errors = run(capsys, model_root, "-")
    assert_poems_begin_with(poems, WRITTEN)
    assert_reported(errors, "stdin", [(4, "only Han characters"), (6, "5 .五言. or 7 .七言.")])
    assert status == 1  # some line was bad
    assert sorted(loads) == ["qiyan", "wuyan"]  # one model load per form, for four poems


def test_a_file_of_good_lines_exits_0_with_num_poems_each(capsys, tmp_path, model_root, loads):
    lines = tmp_path / "lines.txt"
    lines.write_text("\ufeff床前明月光\n白日依山尽\r\n\n朝辞白帝彩云间\n", "utf-8")  # a byte-order mark, CRLF
    status, poems, errors = run(capsys, model_root, "--input", str(lines), "--num", "2")
    assert (status, errors) == (0, [])
    assert_poems_begin_with(poems, ["床前明月光"] * 2 + ["白日依山尽"] * 2 + ["朝辞白帝彩云间"] * 2)
    assert sorted(loads) == ["qiyan", "wuyan"]


def test_a_line_that_is_not_utf8_is_reported_and_the_rest_written(capsys, tmp_path, model_root, loads):
    lines = tmp_path / "lines.txt"
    lines.write_bytes("床前明月光\n".encode() + "白日依山尽\n".encode("gb18030") + "月暗竹亭幽\n".encode())
    status, poems, errors = run(capsys, model_root, "--input", str(lines))
    assert_poems_begin_with(poems, ["床前明月光", "月暗竹亭幽"])
    assert_reported(errors, str(lines), [(2, "not UTF-8 text")])
    assert status == 1


@pytest.mark.parametrize(
    "args, words",
    [
        (["-", "床前明月光"], "give it alone"),
        (["--input", "lines.txt", "床前明月光"], "not both"),
        (["--input", "lines.txt", "--acrostic", "春夏秋冬"], "one of the first three"),
        (["--input", "missing.txt"], "missing.txt"),
        (["--input", "lines.txt", "--num", "0"], "num must be"),  # refused once, before any line
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, tmp_path, monkeypatch, model_root, args, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lines.txt").write_text("床前明月光\n白日依山尽\n", "utf-8")
    status, poems, errors = run(capsys, model_root, *args)
    assert (status, poems) == (2, [])
    assert len(errors) == 1 and errors[0].startswith("jueju generate: error: ") and words in errors[0], errors
