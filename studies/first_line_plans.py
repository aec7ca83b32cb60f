#!/usr/bin/env python
"""Can a plan drawn from a first line alone help the poem that follows it? (docs/results.md)

    python scripts/first_line_plans.py [--model-dir models/wuyan] [--data-dir data/wuyan]

Each way below turns a test poem's first line into keywords, read in the conditioned model's
block; the measure is the test perplexity of lines 2-4 given line 1 (jueju.measure.evaluate), against
an empty block. A plan worth having is one that makes what poets wrote next more probable.

- kw_line1: the first line's own keyword (condition.KeywordRule).
- cooccur_pmi_N: the N later-line keywords most associated with the first line's content
  characters in the training poems, by the sum of their pointwise mutual information.
- cooccur_prob_N: the same by the sum of P(keyword in lines 2-4 | character in line 1).
- kw_line1+cooccur_prob_1: the first line's keyword and the likeliest later one.
- word2vec_N: the N content characters nearest the mean of the first line's (cosine, among
  the COMMON most frequent characters: word2vec's nearest are otherwise rare ones).
- oracle_lines23: the keywords of the test poem's own lines 2 and 3 (not known when writing:
  the ceiling a perfect planner would reach).
"""

import argparse
import math
from collections import Counter, defaultdict

import numpy as np

from jueju.data.condition import GRAMMAR, KeywordRule, block_ids
from jueju.data.dataset import Vocab, read_poems
from jueju.data.word2vec import load_vectors
from jueju.measure.perplexity import lstm_log_probs, perplexity_of
from jueju.model.network import load_model
from jueju.text import is_han, split_lines

MIN_TOGETHER = 5  # a character and a keyword seen in fewer training poems together are not associated
COMMON = 3000  # word2vec neighbours are drawn among this many most frequent characters


def content(line: str) -> set[str]:
    return {char for char in line if is_han(char) and char not in GRAMMAR}


class Cooccurrence:
    """How the content characters of a training poem's first line go with the keywords of its later lines."""

    def __init__(self, poems: list[str], rule: KeywordRule):
        self.first, self.later, self.joint, self.poems = Counter(), Counter(), Counter(), len(poems)
        for poem in poems:
            lines = split_lines(poem)
            chars, words = content(lines[0]), {w for w in map(rule.word, lines[1:]) if w}
            self.first.update(chars)
            self.later.update(words)
            self.joint.update((char, word) for char in chars for word in words)
        self.by_char = defaultdict(list)
        for (char, word), together in self.joint.items():
            if together >= MIN_TOGETHER:
                self.by_char[char].append((word, together))

    def keywords(self, line: str, count: int, by: str) -> list[str]:
        chars, score = content(line), Counter()
        for char in chars:
            for word, together in self.by_char.get(char, ()):
                if set(word) & chars:
                    continue  # already in the line
                if by == "pmi":
                    score[word] += max(0.0, math.log(together * self.poems / (self.first[char] * self.later[word])))
                else:
                    score[word] += together / self.first[char]
        return [word for word, _ in score.most_common(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default="models/wuyan")
    parser.add_argument("--data-dir", default="data/wuyan")
    args = parser.parse_args()
    train, test = read_poems(f"{args.data_dir}/train.txt"), read_poems(f"{args.data_dir}/test.txt")
    vocab, model = Vocab.load(f"{args.model_dir}/vocab.json"), load_model(f"{args.model_dir}/model.keras")
    rule = KeywordRule(train)
    table = Cooccurrence(train, rule)
    firsts = [split_lines(poem)[0] for poem in test]

    vectors = load_vectors(f"{args.data_dir}/word2vec.txt")  # saved most frequent first

    def neighbours(line: str, count: int) -> list[str]:
        chars = [char for char in content(line) if char in vectors.key_to_index]
        near = vectors.most_similar(positive=chars, topn=50, restrict_vocab=COMMON) if chars else []
        return [char for char, _ in near if is_han(char) and char not in GRAMMAR and char not in line][:count]

    def own(line: str) -> list[str]:
        return [word] if (word := rule.word(line)) else []

    plans = {
        "none": lambda poem, line: [],
        "kw_line1": lambda poem, line: own(line),
        "cooccur_pmi_1": lambda poem, line: table.keywords(line, 1, "pmi"),
        "cooccur_pmi_2": lambda poem, line: table.keywords(line, 2, "pmi"),
        "cooccur_prob_1": lambda poem, line: table.keywords(line, 1, "prob"),
        "cooccur_prob_2": lambda poem, line: table.keywords(line, 2, "prob"),
        "kw_line1+cooccur_prob_1": lambda poem, line: list(dict.fromkeys(own(line) + table.keywords(line, 1, "prob"))),
        "word2vec_1": lambda poem, line: neighbours(line, 1),
        "word2vec_2": lambda poem, line: neighbours(line, 2),
        "oracle_lines23": lambda poem, line: [w for w in map(rule.word, split_lines(poem)[1:3]) if w],
    }
    print(f"{len(test)} test poems; perplexity of lines 2-4 given line 1 and the plan's keywords")
    for name, plan in plans.items():
        words = [plan(poem, line) for poem, line in zip(test, firsts)]
        blocks = np.stack([block_ids(vocab, "", w) for w in words])
        perplexity = perplexity_of(lstm_log_probs(model, vocab, test, None, True, blocks=blocks))
        print(f"{name:26s} {perplexity:7.1f}   e.g. {firsts[0]}: {words[0]}, {firsts[1]}: {words[1]}")


if __name__ == "__main__":
    main()
