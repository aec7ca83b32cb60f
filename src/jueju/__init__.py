"""jueju: classical Chinese quatrains (绝句) from a stacked-LSTM Keras model.

`import jueju` loads nothing else: the names below are imported on first use (PEP 562), so
`from jueju import generate_poetry` loads Keras and `import jueju.data.corpus` does not.
"""

import importlib
import os
from typing import TYPE_CHECKING

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices say nothing a user can act on

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports them
    from jueju.config import load_config
    from jueju.write.poet import Poet, generate_poems, generate_poetry

# public name -> the module that defines it
_LAZY = {
    "Poet": "write.poet",
    "generate_poems": "write.poet",
    "generate_poetry": "write.poet",
    "load_config": "config",
}

__all__ = ["Poet", "generate_poems", "generate_poetry", "load_config"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
