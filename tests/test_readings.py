"""Blind readings at scale (jueju.measure.readings): mixes, answers line by line, balanced readings."""

import collections

import pytest

from jueju.cli import main
from jueju.measure import readings
from jueju.measure.readings import Candidate


def candidates(inputs=6, per_input=4):
    """A pool: per input its real poem and `per_input` - 1 of ours."""
    pool = []
    for i in range(inputs):
        given = f"第{i}句"
        pool.append(Candidate(f"poem {i}.0", readings.REAL, "first_line", given))
        pool += [Candidate(f"poem {i}.{k}", "draw", "first_line", given) for k in range(1, per_input)]
    return pool


@pytest.mark.parametrize("layout", readings.LAYOUTS)
def test_mixes_hold_every_candidate_once_with_each_inputs_candidates_in_one_mix(tmp_path, layout):
    pool = candidates()
    folders = readings.mix(pool, tmp_path, layout, groups_per_mix=4, seed=1)
    keys = [readings.read_key(folder) for folder in folders]
    assert [len(key) for key in keys] == [16, 8]
    assert sorted(c.poem for key in keys for c in key) == sorted(c.poem for c in pool)
    for key in keys:
        prompt = key and (folders[keys.index(key)] / "prompt.txt").read_text("utf-8")
        assert f"Answer ONLY with {len(key)} lines" in prompt and "real" not in prompt and "draw" not in prompt
        assert ("## Group 1" in prompt) == (layout == "grouped")
    inputs = [{c.input for c in key} for key in keys]
    assert not inputs[0] & inputs[1]


def test_an_answer_is_read_line_by_line_bad_lines_refused_with_their_numbers(tmp_path):
    folder = readings.mix(candidates(2), tmp_path / "mixes", "grouped", 2, seed=1)[0]
    answer = tmp_path / "answer.txt"
    answer.write_text(
        "1 4 3 3 3 human 70\n"
        "2 4 3 3 machine 70\n"  # a score missing
        "\n"
        "3 4 9 3 3 machine 70\n"  # C out of range
        "```\n"
        "4 2 2 2 2 robot 60\n"  # a guess that is neither
        "5 2 2 2 2 machine 60\n"
        "5 3 3 3 3 machine 60\n"  # answered twice: the first kept
        "99 2 2 2 2 machine 60\n",  # no such poem
        "utf-8",
    )
    ratings = tmp_path / "ratings.tsv"
    result = readings.read_answer(folder, answer, ratings)
    assert [error.line for error in result["refused"]] == [2, 4, 6, 8, 9]
    assert "C must be a whole number from 1 to 5, got '9'" in str(result["refused"][1])
    assert result["added"] == 2 and result["missing"] == [2, 3, 4, 6, 7, 8]
    rows = readings.read_ratings(ratings)
    assert [(row["C"], row["taken_for"]) for row in rows] == [(3, "human"), (2, "machine")]
    key = readings.read_key(folder)
    assert rows[0]["poem"] == key[0].poem and rows[0]["variant"] == key[0].variant and rows[0]["input"] == key[0].input
    # nothing already collected is lost: another reader's answer is added after, the same one refused
    other = tmp_path / "other.txt"
    other.write_text("".join(f"{n} 3 3 3 3 machine 60\n" for n in range(1, 9)), "utf-8")
    assert readings.read_answer(folder, other, ratings)["added"] == 8
    assert len(readings.read_ratings(ratings)) == 10
    with pytest.raises(ValueError, match="already holds"):
        readings.read_answer(folder, other, ratings)


def test_a_balanced_reading_gives_every_reader_every_variant_on_other_inputs(tmp_path):
    names = ["old", "new", "newer"]
    variants = {name: [Candidate(f"{name} {i}", name, "first_line", f"in{i}") for i in range(9)] for name in names}
    real = [Candidate(f"real {i}", readings.REAL, "first_line", f"r{i}") for i in range(6)]
    folders = readings.balanced(variants, real, readers=3, out=tmp_path, seed=2, name="b")
    seen = collections.defaultdict(set)
    for folder in folders:
        key = readings.read_key(folder)
        by_variant = collections.defaultdict(set)
        for c in key:
            by_variant[c.variant].add(c.input)
        assert set(by_variant) == {*names, readings.REAL} and len(by_variant[readings.REAL]) == 2
        inputs = [by_variant[name] for name in names]
        assert all(len(part) == 3 for part in inputs) and not set.intersection(*inputs)
        for name in names:
            seen[name] |= by_variant[name]
    assert all(len(seen[name]) == 9 for name in names)  # every input read in every variant


def test_the_readings_command_reads_answers_and_exits_1_when_a_line_was_refused(tmp_path, capsys):
    folder = readings.mix(candidates(1), tmp_path, "shuffled", 1, seed=1)[0]
    answer = tmp_path / "a.txt"
    answer.write_text("1 3 3 3 3 machine 60\n2 3 3 3 3 machine 60\n3 3 3 3\n4 3 3 3 3 machine 60\n", "utf-8")
    assert main(["readings", "read", str(tmp_path / "r.tsv"), f"{folder}:{answer}"]) == 1
    out, err = capsys.readouterr()
    assert "3 judgements added, 1 lines refused" in out and "line 3: expected 7 fields" in err


def test_a_reading_draws_only_inputs_no_reader_has_seen(tmp_path):
    """readings.unread leaves out an input that a ratings file names, or whose real poem a reader read
    (under another input), across files of every format; the rest keep their order."""
    pool = candidates(3)
    folder = readings.mix(pool[:4], tmp_path / "mixes", "shuffled", 1, seed=1)[0]  # input 第0句 read
    answer = tmp_path / "a.txt"
    answer.write_text("".join(f"{n} 3 3 3 3 machine 60\n" for n in range(1, 5)), "utf-8")
    readings.read_answer(folder, answer, tmp_path / "new.tsv")
    older = tmp_path / "old.tsv"  # 2026-12-04: no reader, mix or layout column
    older.write_text(
        "poem\twritten_from\tinput\tprompt\tF\tC\tM\tP\ttaken_for\tconfidence\n"
        "poem 2.0\tfirst_line\t另一句\t1\t4\t4\t4\t4\thuman\t90\n",
        "utf-8",
    )
    inputs = [("first_line", f"第{i}句", f"poem {i}.0") for i in range(4)] + [("title", "题", "poem 9.0")]
    assert readings.unread(inputs, [tmp_path / "new.tsv", older]) == [inputs[1], inputs[3], inputs[4]]
    assert readings.unread(inputs, []) == inputs
