"""Decoding as a compiled loop on the device: the model step, the constraints and the sampler's choice as tensors.

This module owns `DeviceLoop` and `decode`. The host loop (`sampling.Sampler.run` over
`constraints.combine`) pays, per character, NumPy masks over the whole vocabulary, sampling
on the host and a copy of the logits off the device. Here a batch of poems is decoded by
`keras.ops.while_loop` inside one compiled call (tf.function on TensorFlow, jax.jit on JAX;
PyTorch runs the same ops eagerly), in the way KerasHub's samplers run:

- the LSTM states come from reading each row's start sequence (and the given first line) in
  one model call before the loop; each step then feeds one id through the LSTM cells;
- the constraints are tables built once per batch: the Han characters, a (rows, positions)
  table of tone classes gathered into (3, vocab) tone masks, a (vocab, groups) matrix of the
  rhyme groups that the ids already at the other rhyme positions are multiplied with, and the
  ids used so far in the row (no_repeat); they are ANDed in `combine`'s order, each giving way
  where `combine` would let it;
- a strategy (`Strategy` and its subclasses, one per host sampler) only says how to pick ids
  from the masked probabilities; beam search also says which rows go on.

no_copy needs the training lines' hashes, which stay on the host: with it the loop stops
before the last character of lines 2-4, the host forbids the ids that would complete a
training line (`constraints.NoCopy`), and the next call goes on from there.

For reranking, the loop can also record what the model read of the poems it writes (a
`stepper.Reading`: the features and log-probability at every position), so the forward score, the
reader model and the critic need no second reading of the candidates.

Every call pads its rows to one of a few sizes (`stepper.bucket`), so nothing is compiled again for
a new batch size; the caller hands it at most `stepper.CHUNK` rows at a time.

`decode` uses the device loop where it applies and the host loop, the reference, otherwise:
window models, samplers and constraints it does not know, and tf.distribute strategies.
Greedy and beam search write the same poems as the host loop. The random samplers draw from
the same distributions with other random numbers (one uniform a row and position, from the
caller's NumPy generator, turned into an id by the inverse CDF instead of the host's Gumbel
noise), so a seed gives other poems than the host loop, but the same ones on every run.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from jueju.data.dataset import PAD_ID, UNK_ID
from jueju.data.prosody import PING, ZE
from jueju.data.tonal import reading_matrix
from jueju.model.stepper import Reading, bucket, compiled, padded
from jueju.write.constraints import Characters, Constraint, NoCopy, NoRepeat, Rhyme, Tones, combine
from jueju.write.sampling import Beam, ConstraintError, Greedy, Sampler, Temperature, TopK, TopP

ORDER = (Characters, Rhyme, Tones, NoCopy, NoRepeat)  # Poet._constraints's order, which the loop applies
TINY = float(np.finfo(np.float32).tiny)  # the host's floor under probabilities (Stepper.next_logits)


def decode(
    loop: DeviceLoop | None,
    stepper,
    sampler: Sampler,
    tokens: np.ndarray,
    start: int,
    forced: np.ndarray,
    constraints: list[Constraint],
    rng: np.random.Generator,
    record: bool = False,
) -> tuple[np.ndarray, Reading | None]:
    """The decoded tokens, on the device where `loop` can do it, else by the host loop (`Sampler.run`); with
    `record`, what the device loop read of them (`DeviceLoop.run`; None from the host loop).
    `loop.wrote_last_batch` tells the caller which loop it was."""
    if loop is not None:
        loop.wrote_last_batch = loop.supports(sampler, constraints, start)
        if loop.wrote_last_batch:
            return loop.run(sampler, tokens, start, forced, constraints, rng, record)
    return sampler.run(stepper.next_logits, tokens, start, forced, combine(constraints), rng)[0], None


# -- strategies: how ids are picked from masked probabilities ------------------------------------------------


class Strategy:
    """Picks one id per row from `weights` (rows, vocab): probabilities, 0 where the constraints forbid."""

    reorders = False  # beam search: each step also says which row every new row continues

    def __init__(self, temperature: float = 1.0):
        self.temperature = float(temperature)

    def key(self) -> tuple:
        return (type(self).__name__, *vars(self).values())

    def choose(self, weights, uniform):
        """Ids (rows,) for weights (rows, vocab) and one uniform number in (0, 1] a row."""
        return inverse_cdf(self.tempered(weights), uniform)

    def tempered(self, weights):
        """weights ** (1 / temperature), scaled so the row's largest is 1 (no underflow at low temperatures)."""
        if self.temperature == 1.0:
            return weights
        logs = ops.log(weights)  # -inf where forbidden
        return ops.exp((logs - ops.max(logs, axis=-1, keepdims=True)) / self.temperature)


class GreedyStrategy(Strategy):
    def choose(self, weights, uniform):
        return ops.cast(ops.argmax(weights, axis=-1), "int32")


class TopKStrategy(Strategy):
    def __init__(self, k: int, temperature: float = 1.0):
        super().__init__(temperature)
        self.k = k

    def choose(self, weights, uniform):
        # the k most probable, then a draw among them only; where several tie with the k-th, the host keeps
        # them all and this keeps the first k
        values, ids = ops.top_k(weights, min(self.k, weights.shape[-1]))
        return ops.take_along_axis(ids, inverse_cdf(self.tempered(values), uniform)[:, None], axis=-1)[:, 0]


class TopPStrategy(Strategy):
    def __init__(self, p: float, temperature: float = 1.0):
        super().__init__(temperature)
        self.p = p

    def choose(self, weights, uniform):
        values, ids = ops.top_k(weights, weights.shape[-1])  # sorted, most probable first
        probs = self.tempered(values)
        probs = probs / ops.sum(probs, axis=-1, keepdims=True)
        keep = (ops.cumsum(probs, axis=-1) - probs) < self.p  # the smallest prefix reaching p, as the host
        picked = inverse_cdf(ops.where(keep, probs, 0.0), uniform)
        return ops.take_along_axis(ids, picked[:, None], axis=-1)[:, 0]


class BeamStrategy(Strategy):
    """Keeps `width` partial poems per poem (rows are poems × width, a poem's beams together), as `Beam`."""

    reorders = True

    def __init__(self, width: int):
        super().__init__(1.0)  # the host's Beam ranks by log-probabilities, without its temperature
        self.width = width

    def step(self, probs, mask, fixed, forced, scores):
        """(ids, rows continued, scores, stuck) for every beam: the `width` best continuations of each poem."""
        rows, vocab = ops.shape(probs)[0], probs.shape[-1]
        logs = ops.log(ops.maximum(probs, TINY))  # log_softmax of them, written as the host writes it
        shifted = logs - ops.max(logs, axis=-1, keepdims=True)
        logs = shifted - ops.log(ops.sum(ops.exp(shifted), axis=-1, keepdims=True))
        logs = ops.where(mask, logs, -np.inf)
        pinned = ops.where(ops.arange(vocab)[None, :] == ops.maximum(forced, 0)[:, None], 0.0, -np.inf)
        logs = ops.where(fixed[:, None], pinned, logs)  # a fixed id costs nothing
        # summed as the host sums them, in float64: poems whose totals differ in float32 rounding only
        # would otherwise be kept in another order
        totals = ops.reshape(scores[:, None] + ops.cast(logs, scores.dtype), (-1, self.width * vocab))
        best_scores, best = ops.top_k(totals, self.width)
        source, ids = best // vocab, best % vocab
        continued = ops.reshape(ops.arange(rows // self.width)[:, None] * self.width + source, (-1,))
        stuck = ops.repeat(ops.equal(best_scores[:, 0], -np.inf), self.width)  # no finite total left
        return ops.cast(ops.reshape(ids, (-1,)), "int32"), continued, ops.reshape(best_scores, (-1,)), stuck


def strategy_for(sampler: Sampler) -> Strategy | None:
    """The device strategy that draws as `sampler` does; None for a sampler it does not know."""
    kind = type(sampler)
    if kind is Greedy:
        return GreedyStrategy()
    if kind in (Temperature, Sampler):
        return Strategy(sampler.temperature)
    if kind is TopK:
        return TopKStrategy(sampler.k, sampler.temperature)
    if kind is TopP:
        return TopPStrategy(sampler.p, sampler.temperature)
    if kind is Beam:
        return BeamStrategy(sampler.width)
    return None


def inverse_cdf(weights, uniform):
    """Per row, the id i with cdf[i - 1] < uniform * total <= cdf[i]: a draw from weights / total."""
    cdf = ops.cumsum(weights, axis=-1)
    below = ops.sum(ops.cast(cdf < uniform[:, None] * cdf[:, -1:], "int32"), axis=-1)
    return ops.minimum(below, weights.shape[-1] - 1)  # uniform = 1 and rounding: the last id with weight


# -- the loop ------------------------------------------------------------------------------------------------


class Tables:
    """The constraints of one batch as what the loop reads: vocabulary masks and per-row tables, all
    arguments of the compiled loop, which itself depends only on which constraints are on (`key`)."""

    def __init__(self, constraints: list[Constraint], rows: int, length: int, copies: int):
        """`rows`: poems, the last one's tables repeated beyond the constraints' own (a padded batch)."""
        found = {type(c): c for c in constraints}
        rhyme, tones = found.get(Rhyme), found.get(Tones)
        self.no_copy, self.no_repeat = found.get(NoCopy), found.get(NoRepeat)
        han = found[Characters].mask
        self.arrays = {"han": han}
        self.rhyme_positions = tuple(rhyme.positions) if rhyme else ()
        if rhyme:
            self.arrays["level"] = rhyme.level
            # float, so that rhyming is one matrix product: (rows, groups) x (groups, vocab)
            self.arrays["groups"] = reading_matrix(rhyme.tokens, PING, rhyme.scheme).astype(np.float32)
        if tones:
            n, classes = tones.layout.line_length, {PING: 1, ZE: 2}  # 0: free
            places = [tones.layout.start(line) + column for line in range(4) for column in range(n)]
            by_pattern = {}
            for pattern in set(tones.patterns):
                by_pattern[pattern] = np.zeros(length, dtype=np.int32)
                by_pattern[pattern][places] = [classes.get(tone, 0) for tone in pattern]
            table = np.stack([by_pattern[pattern] for pattern in tones.patterns])
            self.arrays["tone"] = np.repeat(padded(table, rows), copies, axis=0)  # beam search: each poem's beams
            self.arrays["tone_masks"] = np.stack([np.ones(len(han), dtype=bool), tones.masks[PING], tones.masks[ZE]])
        if self.no_repeat:
            self.arrays["exempt"] = np.isin(np.arange(len(han)), self.no_repeat.exempt)

    def key(self) -> tuple:
        """What a compiled loop depends on besides the model, the strategy and the poem's length."""
        return (self.rhyme_positions, "tone" in self.arrays, self.no_copy is not None, self.no_repeat is not None)


class DeviceLoop:
    """A sequence model's decoding loop, compiled once per strategy and set of constraints."""

    def __init__(self, stepper):
        """`stepper`: the stepper.Stepper of a sequence model (its features model, start sequence, softmax)."""
        self.stepper, self.reader = stepper, stepper.reader
        chain = [layer for layer in stepper.features.layers if not isinstance(layer, keras.layers.InputLayer)]
        lstms = [i for i, layer in enumerate(chain) if isinstance(layer, keras.layers.LSTM)]
        self.embed = chain[: lstms[0]]  # the input layer (embedding or one-hot)
        self.cells = [chain[i].cell for i in lstms]  # one id a step: the cells, without the layers' time loop
        # (between the LSTMs stand only dropout layers, which do nothing at inference)
        self.head = chain[lstms[-1] + 1 :]  # dropout and dense layers: what the softmax reads
        self.softmax = stepper.model.get_layer("next_char")
        self._compiled: dict[tuple, object] = {}
        # whether `decode` ran the last batch it was given here (False: it fell back to the slower host loop)
        self.wrote_last_batch = False

    @classmethod
    def of(cls, stepper) -> DeviceLoop | None:
        """The loop of a `stepper.Stepper`; None for a window model (the host loop decodes it)."""
        return None if stepper.reader is None else cls(stepper)

    def supports(self, sampler: Sampler, constraints: list[Constraint], start: int) -> bool:
        kinds = [type(c) for c in constraints]
        in_order = kinds == [kind for kind in ORDER if kind in kinds] and kinds[:1] == [Characters]
        return (
            strategy_for(sampler) is not None
            and in_order
            and (start > 0 or len(self.reader.start) > 0)  # something to read before the first choice
            and not _distributed()
        )

    def run(self, sampler, tokens, start, forced, constraints, rng, record: bool = False):
        """(tokens, reading): the tokens as `sampler.run(...)[0]` with the AND of `constraints` (raises
        ConstraintError as it does) and, with `record`, what the model read of them (a stepper.Reading: the
        features and log-probability at every position; None without `record`, or for a model that reads
        nothing before a poem, whose first id the loop never predicts)."""
        strategy = strategy_for(sampler)
        copies = strategy.width if strategy.reorders else 1
        poems, length = tokens.shape
        size = bucket(poems)  # the rows a bucket adds repeat the last poem, and are dropped at the end
        before = padded(self.reader.start_ids(poems), size)  # block and start token
        record = record and before.shape[1] > 0
        forced = np.repeat(padded(np.broadcast_to(forced, tokens.shape), size), copies, axis=0).astype(np.int32)
        tokens = np.repeat(padded(tokens, size), copies, axis=0).astype(np.int32)
        tables = Tables(constraints, size, length, copies)
        uniform = (1.0 - rng.random((len(tokens), length), dtype=np.float32)) if not strategy.reorders else None

        # the loop runs from the first position where some row chooses to the last (recording: to the end);
        # ids forced for every row before it are read with the start, those after it need no model
        choosing = [p for p in range(start, length) if (forced[:, p] < 0).any()]
        if not choosing and not record:
            return np.where(forced >= 0, forced, tokens)[: poems * copies : copies], None
        first = choosing[0] if choosing else length - 1
        stop = length if record else choosing[-1] + 1
        tokens[:, start:first] = forced[:, start:first]
        tokens[:, stop:] = forced[:, stop:]

        # the features and LSTM states after each row's start sequence and the ids before `first`, in one model
        # call that reads each distinct row once (many poems of one first line share it)
        context = np.concatenate([np.repeat(before, copies, axis=0), tokens[:, :first]], axis=1)
        distinct, inverse = np.unique(context, axis=0, return_inverse=True)
        features, states = self.stepper.run(distinct)
        inverse = inverse.reshape(-1)
        scores = np.tile(np.r_[0.0, np.full(copies - 1, -np.inf)], size).astype(_score_dtype())
        carry = {
            "tokens": tokens,
            "hidden": features[inverse, -1],  # what the softmax reads at `first`
            "states": [state[inverse] for state in states],
            "scores": scores,
            "stuck": np.zeros(len(tokens), dtype=bool),
        }
        if record:  # what was read before `first`: its features and log-probabilities, at every position
            read = before.shape[1] - 1  # the output that predicts position 0: after the block and start token
            prefix = self._prefix(distinct[:, read + 1 :], features[:, read:], length)
            carry.update({name: part[inverse] for name, part in prefix.items()})
        vocab = len(tables.arrays["han"])
        if tables.no_repeat:
            used = np.zeros((len(tokens), vocab), dtype=bool)
            used[np.arange(len(tokens))[:, None], tokens] = True  # given characters, written or kept later
            carry["used"] = used
        fixed = {"forced": forced, "stop": np.int32(stop), **tables.arrays}
        if uniform is not None:
            fixed["uniform"] = uniform
        carry, fixed = _tensors(carry), _tensors(fixed)
        loop = self._loop(strategy, tables, length, record)
        # with no_copy, a call ends before the last character of lines 2-4, which the host then narrows
        ends = sorted(tables.no_copy.ends) if tables.no_copy else []
        bounds = [first, *[end for end in ends if first < end < stop], stop]
        everything = None
        for lo, hi in zip(bounds, bounds[1:]):
            if lo in ends:
                extra = tables.no_copy.allowed(ops.convert_to_numpy(carry["tokens"]), lo)
            else:
                everything = np.ones((len(tokens), vocab), dtype=bool) if everything is None else everything
                extra = everything
            carry = loop(np.int32(lo), np.int32(hi), carry, fixed, ops.convert_to_tensor(extra))
            if bool(ops.convert_to_numpy(ops.any(carry["stuck"]))):
                raise ConstraintError("no character satisfies the constraints at this position")
        rows = np.arange(poems) * copies  # each poem's first row, or with beam search its best beam
        if strategy.reorders:
            rows = rows + ops.convert_to_numpy(carry["scores"])[: poems * copies].reshape(poems, copies).argmax(-1)
        out = ops.convert_to_numpy(carry["tokens"])[rows]
        if not record:
            return out, None
        reading = Reading(
            ops.convert_to_numpy(carry["features"])[rows], ops.convert_to_numpy(carry["log_probs"])[rows], 0
        )
        return out, reading

    def _prefix(self, given: np.ndarray, features: np.ndarray, length: int) -> dict:
        """What the model read of the ids `given` before the loop (rows, first), as recorded: the features
        (rows, length, width) and log-probabilities (rows, length) at positions 0..first - 1 (`features`
        from position 0 on); the loop writes the rest."""
        rows, first = given.shape
        written = np.zeros((rows, length, features.shape[-1]), dtype=np.float32)
        written[:, :first] = features[:, :first]
        log_probs = np.zeros((rows, length), dtype=np.float32)
        if first:  # a few distinct rows (the poems' first lines): every position, whatever a caller scores
            scored = features[:, :first].reshape(-1, features.shape[-1])
            log_probs[:, :first] = self.stepper.log_probs(scored, given.reshape(-1)).reshape(rows, -1)
        return {"features": written, "log_probs": log_probs}

    def read(self, ids, states):
        """What the softmax reads and the next states after reading one id a row (a step of the loop)."""
        x = ids
        for layer in self.embed:
            x = layer(x)
        new = []
        for i, cell in enumerate(self.cells):
            x, (h, c) = cell(x, [states[2 * i], states[2 * i + 1]], training=False)
            new += [h, c]
        for layer in self.head:
            x = layer(x, training=False)
        return x, new

    def _loop(self, strategy: Strategy, tables: Tables, length: int, record: bool):
        key = (strategy.key(), tables.key(), length, record)
        if key not in self._compiled:
            self._compiled[key] = compiled(self._make_loop(strategy, tables, length, record))
        return self._compiled[key]

    def _make_loop(self, strategy: Strategy, tables: Tables, length: int, record: bool):
        """loop(lo, hi, carry, fixed, extra): positions lo..hi-1 decoded; `extra` narrows position lo."""
        rhyme_positions = tables.rhyme_positions
        rhyming, tonal = bool(rhyme_positions), "tone" in tables.arrays
        no_copy, no_repeat = tables.no_copy is not None, tables.no_repeat is not None

        def narrow(mask, part):
            """mask AND part, except in rows where nothing would be left: there the constraint gives way."""
            both = ops.logical_and(mask, part)
            return ops.where(ops.any(both, axis=-1, keepdims=True), both, mask)

        def rhymes(tokens, position, fixed):
            """Level characters that rhyme with each character already at the other rhyme positions."""
            groups = fixed["groups"]
            part = ops.broadcast_to(fixed["level"][None, :], (ops.shape(tokens)[0], groups.shape[0]))
            for other in rhyme_positions:
                ids = tokens[:, other]
                known = ops.logical_and(ops.not_equal(ids, PAD_ID), ops.not_equal(ids, UNK_ID))
                known = ops.logical_and(known, ops.not_equal(position, other))
                shared = ops.matmul(ops.take(groups, ids, axis=0), ops.transpose(groups)) > 0  # a group in common
                part = ops.logical_and(part, ops.logical_or(shared, ops.logical_not(known)[:, None]))
            return part

        def allowed(carry, position, fixed, extra, narrow_extra):
            """The AND of the constraints at `position`, in constraints.combine's order and way."""
            tokens, han = carry["tokens"], fixed["han"]
            mask = ops.broadcast_to(han[None, :], (ops.shape(tokens)[0], han.shape[0]))
            if rhyming:
                at_rhyme = ops.any(ops.stack([ops.equal(position, p) for p in rhyme_positions]))
                mask = ops.cond(at_rhyme, lambda: narrow(mask, rhymes(tokens, position, fixed)), lambda: mask)
            if tonal:
                tone = ops.take(fixed["tone"], position, axis=1)
                mask = ops.cond(
                    ops.any(tone > 0), lambda: narrow(mask, ops.take(fixed["tone_masks"], tone, axis=0)), lambda: mask
                )
            if no_copy:
                mask = ops.cond(narrow_extra, lambda: narrow(mask, extra), lambda: mask)
            if no_repeat:
                mask = narrow(mask, ops.logical_or(ops.logical_not(carry["used"]), fixed["exempt"][None, :]))
            return mask

        def predict(hidden):
            return ops.cast(self.softmax(hidden), "float32")

        def loop(lo, hi, carry, fixed, extra):
            columns = ops.arange(length, dtype="int32")[None, :]

            def pick(carry, position, forced, probs):
                held = forced >= 0
                mask = allowed(carry, position, fixed, extra, ops.equal(position, lo))
                if strategy.reorders:
                    return strategy.step(probs, mask, held, forced, carry["scores"])
                weights = ops.where(mask, ops.maximum(probs, TINY), 0.0)
                chosen = ops.cast(strategy.choose(weights, ops.take(fixed["uniform"], position, axis=1)), "int32")
                stuck = ops.logical_and(ops.logical_not(held), ops.logical_not(ops.any(mask, axis=-1)))
                return chosen, ops.arange(ops.shape(forced)[0]), carry["scores"], stuck

            def body(position, carry):
                forced = ops.take(fixed["forced"], position, axis=1)
                rows = ops.shape(forced)[0]
                # the softmax where some row chooses here (and, recording, everywhere)
                probs = predict(carry["hidden"]) if record else None
                chosen, continued, scores, stuck = ops.cond(
                    ops.any(forced < 0),
                    lambda: pick(carry, position, forced, predict(carry["hidden"]) if probs is None else probs),
                    lambda: (forced, ops.arange(rows), carry["scores"], ops.zeros((rows,), "bool")),
                )
                carry = dict(carry)
                ids = ops.where(forced >= 0, forced, chosen)
                if strategy.reorders:  # the beams kept: each new row continues the row it came from
                    for name in ("tokens", "used", "features", "log_probs", "hidden"):
                        if name in carry:
                            carry[name] = ops.take(carry[name], continued, axis=0)
                    carry["states"] = [ops.take(s, continued, axis=0) for s in carry["states"]]
                    probs = None if probs is None else ops.take(probs, continued, axis=0)
                if record:  # what the softmax read here, and the log-probability of the id written
                    log_prob = ops.log(ops.maximum(ops.take_along_axis(probs, ids[:, None], axis=-1), TINY))
                    carry["log_probs"] = ops.where(columns == position, log_prob, carry["log_probs"])
                    here = columns[..., None] == position
                    carry["features"] = ops.where(here, carry["hidden"][:, None, :], carry["features"])
                carry["tokens"] = ops.where(columns == position, ids[:, None], carry["tokens"])
                if "used" in carry:
                    vocab = carry["used"].shape[-1]
                    carry["used"] = ops.logical_or(carry["used"], ops.arange(vocab)[None, :] == ids[:, None])
                carry["scores"] = scores
                carry["stuck"] = ops.logical_or(carry["stuck"], stuck)
                carry["hidden"], carry["states"] = ops.cond(  # the last id written is read by no one
                    position + 1 < fixed["stop"],
                    lambda: self.read(ids, carry["states"]),
                    lambda: (carry["hidden"], carry["states"]),
                )
                return position + 1, carry

            return ops.while_loop(lambda position, carry: position < hi, body, (lo, carry))[1]

        return loop


def _score_dtype() -> str:
    """float64 for beam search's totals, as the host's; JAX has it only with jax_enable_x64."""
    if keras.backend.backend() == "jax":
        import jax

        return "float64" if jax.config.jax_enable_x64 else "float32"
    return "float64"


def _tensors(tree: dict) -> dict:
    return {
        name: [ops.convert_to_tensor(v) for v in value] if isinstance(value, list) else ops.convert_to_tensor(value)
        for name, value in tree.items()
    }


def _distributed() -> bool:
    """Under a tf.distribute strategy (training's sample callback) the host loop decodes."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy()
