"""Measuring: perplexity and the evaluation, benchmarks, the context study, load tests, blind readings."""
