"""The data: the corpus crawled and cleaned, the data set cut into samples, titles and keywords as
the block a model reads first, word2vec, the rhyme and tone tables, and the stages in order."""
