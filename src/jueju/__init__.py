"""jueju: classical Chinese quatrains (绝句) from a stacked-LSTM Keras model."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices say nothing a user can act on

from .config import load_config  # noqa: E402
from .generate import Poet, generate_poems, generate_poetry  # noqa: E402

__all__ = ["Poet", "generate_poems", "generate_poetry", "load_config"]
