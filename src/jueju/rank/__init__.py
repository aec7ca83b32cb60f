"""Choosing among candidate poems: the scores reranking adds up (the forward model, the backward
model, the title's mutual information, the reader model and the critic)."""
