"""Atomic file writes: a reader (or a crash) never sees half a file under its final name.

Everything is first written to a hidden temporary file in the destination's folder
(`.<name>.<pid>.<random>.tmp`, ignored by git's `*.tmp`; `.epoch_0003.<pid>.<random>.tmp.keras`
for a library that needs the extension), flushed to the disk with fsync, then renamed over the destination with
os.replace; on any failure (Ctrl-C included) the temporary file is removed and the destination
is left as it was.

- `write_atomic` writes bytes or text;
- `atomic_path` is the form for a library that writes the file itself (`model.save`,
  `figure.savefig`, gensim): it yields the temporary path, and renames it once the block ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "temporary_path", "write_atomic"]


def temporary_path(path: str | os.PathLike, suffix: str = "") -> Path:
    """A fresh hidden name beside `path`, unique across processes and threads.

    `suffix` ends the name, for a library that goes by the extension (Keras saves only to `.keras`):
    `epoch_0003.keras` -> `.epoch_0003.<pid>.<random>.tmp.keras`.
    """
    path = Path(path)
    return path.with_name(f".{path.name.removesuffix(suffix)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; when the block ends, fsync it and rename it to `path`.

    If the block raises, or leaves nothing at the temporary path, the temporary file is
    removed and the error goes on; `path` is untouched.
    """
    path = Path(path)
    tmp = temporary_path(path, suffix)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> None:
    """Write `data` to `path` atomically: bytes as they are, text encoded (no newline translation)."""
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    with atomic_path(path) as tmp:
        # "x": never an existing file; the mode follows the umask (mkstemp would make it 0600)
        with open(tmp, "xb") as handle:
            handle.write(payload)


def _fsync(path: Path) -> None:
    """Flush a closed file's data to the disk, so the rename never lands before it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
