"""Serving: the FastAPI app and its page, concurrent requests batched, characters annotated."""
