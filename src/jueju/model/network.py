"""The network: integer ids -> embedding / one-hot -> stacked LSTM -> softmax over the vocabulary.

A window model reads (batch, window) ids and predicts the next one; a sequence model
reads (batch, any length) ids and predicts at every position. Their weights are the
same shapes, so `with_context` turns one into the other (a window model fine-tuned as
a sequence model; a sequence model that predicts only after its last id, for
generation). Backend-agnostic Keras 3 (only `keras.ops`), so it trains and generates on
TensorFlow, JAX and PyTorch. Saved as .keras and loaded in safe mode.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from jueju.config import Model
from jueju.data.dataset import PAD_ID
from jueju.files import atomic_path

log = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="jueju")
class OneHot(layers.Layer):
    """Ids -> one-hot vectors, computed on the device (the host only ever holds ids)."""

    def __init__(self, depth: int, **kwargs):
        super().__init__(**kwargs)
        self.depth = depth

    def call(self, ids):
        return ops.one_hot(ops.cast(ids, "int32"), self.depth, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.depth)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth}


def build_model(spec: Model, vocab_size: int, window: int | None, embedding: np.ndarray | None = None) -> keras.Model:
    """A functional model mapping (batch, window) int32 ids to (batch, vocab_size) next-character probabilities.

    window=None: a sequence model, (batch, length) ids of any length -> (batch, length, vocab_size).
    With spec.input == "word2vec", `embedding` (vocab_size x dim) initialises the embedding layer.
    """
    ids = keras.Input(shape=(window,), dtype="int32", name="ids")
    x = _input_layer(spec, vocab_size, embedding)(ids)
    for i, units in enumerate(spec.lstm_units):
        last = i == len(spec.lstm_units) - 1
        x = layers.LSTM(units, return_sequences=window is None or not last, name=f"lstm_{i + 1}")(x)
        x = layers.Dropout(spec.dropout, name=f"dropout_{i + 1}")(x)
    for i, units in enumerate(spec.dense_units):
        x = layers.Dense(units, activation="relu", name=f"dense_{i + 1}")(x)
        x = layers.Dropout(spec.dropout, name=f"dense_dropout_{i + 1}")(x)
    # float32 softmax so mixed precision never rounds probabilities to zero
    probs = layers.Dense(vocab_size, activation="softmax", dtype="float32", name="next_char")(x)
    model = keras.Model(ids, probs, name="jueju_lstm")
    if spec.input == "word2vec":
        model.get_layer("embedding").set_weights([embedding])
    return model


def is_sequence_model(model: keras.Model) -> bool:
    """True for a model that predicts at every position ((batch, length, vocab) output)."""
    return len(model.output_shape) == 3


def model_window(model: keras.Model) -> int | None:
    """The ids a window model reads; None for a sequence model (it reads the whole poem so far)."""
    return None if is_sequence_model(model) else model.input_shape[1]


def with_context(model: keras.Model, window: int | None, every_position: bool) -> keras.Model:
    """The same network and weights, reading `window` ids (None: any length), predicting at every
    position or only after the last id.

    Only the input shape and the last LSTM's return_sequences change, so the weights carry
    over one for one.
    """
    config = model.get_config()
    lstms = [layer for layer in config["layers"] if layer["class_name"] == "LSTM"]
    if not lstms:
        raise ValueError(f"{model.name} has no LSTM layer: it is not a jueju model")
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = [None, window]
    for layer in lstms[:-1]:
        layer["config"]["return_sequences"] = True
    lstms[-1]["config"]["return_sequences"] = every_position
    changed = keras.Model.from_config(config)
    changed.set_weights(model.get_weights())
    return changed


def stepping_model(model: keras.Model, features: bool = False) -> keras.Model:
    """The same network and weights as a step function: [ids, *states] -> [probs after the last id, *states].

    `ids` is (batch, any length); `states` is each LSTM's h and c, in layer order. Carrying
    them from call to call, a poem costs one step a character instead of a reread of the
    poem so far (see generate.SequenceReader). Zero states are the start of a poem.
    With `features`, the first output is what the softmax reads, at every position of `ids`
    (for scoring: the softmax then runs only where a score needs it).
    """
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    x, states_in, states_out, copies = ids, [], [], []
    chain = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
    if features:
        chain = chain[:-1]  # all but the softmax layer, next_char
    last_lstm = max(i for i, layer in enumerate(chain) if isinstance(layer, layers.LSTM))
    for i, layer in enumerate(chain):
        if isinstance(layer, layers.LSTM):
            copy = layers.LSTM.from_config(
                {**layer.get_config(), "return_sequences": features or i != last_lstm, "return_state": True}
            )
            state = [
                keras.Input(shape=(layer.units,), dtype=copy.compute_dtype, name=f"{layer.name}_{part}")
                for part in ("h", "c")
            ]
            x, h, c = copy(x, initial_state=state)
            states_in += state
            states_out += [h, c]
        else:
            copy = layer.__class__.from_config(layer.get_config())
            x = copy(x)
        copies.append((copy, layer))
    stepper = keras.Model([ids, *states_in], [x, *states_out], name=f"{model.name}_step")
    for copy, layer in copies:
        copy.set_weights(layer.get_weights())
    return stepper


def _input_layer(spec: Model, vocab_size: int, embedding: np.ndarray | None) -> layers.Layer:
    if spec.input == "one-hot":
        return OneHot(vocab_size, name="one_hot")
    if spec.input == "word2vec":
        if embedding is None or embedding.shape[0] != vocab_size:
            raise ValueError("model.input = word2vec needs an embedding matrix with one row per vocabulary token")
        return layers.Embedding(vocab_size, embedding.shape[1], trainable=spec.trainable_embedding, name="embedding")
    return layers.Embedding(vocab_size, spec.embedding_dim, name="embedding")


def compile_model(model: keras.Model, learning_rate) -> keras.Model:
    """Adam (at a rate or a keras.optimizers.schedules schedule) on sparse categorical cross-entropy.

    <pad> targets are ignored: a poem never holds one, so they mark what is read but never
    predicted (a conditioned model's block before the poem, jueju.data.condition).
    """
    loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD_ID)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    return model


def load_model(path: str | Path) -> keras.Model:
    """Load a .keras file in safe mode; a damaged file gives an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=True)
    except Exception as err:  # Keras raises many kinds for a truncated zip or bad JSON
        raise ValueError(f"cannot load model {path}: the file is damaged or not a jueju model ({err})") from err


def save_inference_model(model: keras.Model, path: str | Path) -> None:
    """Save the weights and architecture only (no optimizer state): a third of the size, for generation."""
    slim = keras.Model.from_config(model.get_config())  # not clone_model: Keras 3 clones the optimizer too
    slim.set_weights(model.get_weights())
    with atomic_path(path, suffix=".keras") as tmp:  # Keras saves only to a name ending in .keras
        slim.save(tmp)


def plot_model(model: keras.Model, path: str | Path) -> bool:
    """Draw the model diagram; warn (and return False) when pydot or graphviz is missing."""
    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True)
        return True
    except (ImportError, OSError) as err:
        log.warning("model diagram not drawn (%s): install graphviz (apt-get install graphviz) to get %s", err, path)
        return False


def carry_vocabulary(
    source: keras.Model, source_tokens: list[str], target: keras.Model, target_tokens: list[str]
) -> keras.Model:
    """`target` (a fresh model over `target_tokens`) with the weights of `source`, a model over another
    vocabulary: the LSTM and dense layers one for one, and the embedding rows and softmax columns of
    every token both vocabularies hold. A token new to the target keeps its fresh embedding (word2vec's
    vector) and softmax weights, with the source's lowest bias: rare until training says otherwise.
    """
    where = {token: i for i, token in enumerate(source_tokens)}
    shared = [(i, where[token]) for i, token in enumerate(target_tokens) if token in where]
    to, of = np.array([t for t, _ in shared]), np.array([s for _, s in shared])
    for layer in target.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        old = source.get_layer(layer.name).get_weights()
        if layer.name == "embedding":
            weights[0][to] = old[0][of]
        elif layer.name == "next_char":
            kernel, bias = weights
            kernel[:, to] = old[0][:, of]
            bias[:] = old[1].min()
            bias[to] = old[1][of]
        elif [w.shape for w in weights] == [w.shape for w in old]:
            weights = old
        else:
            raise ValueError(
                f"layer {layer.name} of the model to fine-tune has weights of shapes "
                f"{[w.shape for w in old]}, the config's {[w.shape for w in weights]}: "
                "fine-tune with the model settings it was trained with"
            )
        layer.set_weights(weights)
    log.info("carried %d of %d tokens over from the model's own vocabulary", len(shared), len(target_tokens))
    return target
