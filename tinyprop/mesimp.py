"""meSimp: model simplification from meProp's top-k record (TKDE 2018, Section 2.2, Algorithm 2).

During meProp each hidden unit's record counts the examples whose top-k set held it
(Algorithm 2, lines 6-7). At a pruning, every unit whose count is below the
threshold theta = int(examples seen x prune rate) is removed (lines 9-13; the
threshold rule of the authors' nnmnist), and the record is cleared (line 14).

The authors' C# only masks pruned units. Here they are removed: the unit's row of W
and entry of b go, and so does the matching column of the next layer's W ("column
propagation"), each with its gradient and optimizer state, so training goes on with
smaller matrices and the simplified model decodes faster. A layer keeps at least one
unit (its most active one). The simplification is written against two operations,
`layer.remove_outputs(keep)` and `consumer.remove_inputs(keep)`, so that any layer
offering them can be simplified, if it also tells its widths (`layer.n_out`, `consumer.n_in`)
and, as a meProp layer, its `k` and the `selected` rows of its last backward.
"""
import numpy as np


class ActivityRecord:
    """Algorithm 2's record c for one layer: per unit, how many examples had it in their top-k
    (an LSTM's record counts time steps), since the last pruning. Subclasses say how to count.

    original_index: (units,) the index each remaining unit had before any pruning (the Linear
    record's tie rule counts removed units by it; Simplifier.prune reports it).
    """

    def __init__(self, n_units):
        self.counts = np.zeros(n_units, dtype=np.int64)
        self.examples = 0
        self.original_index = np.arange(n_units)

    def units_to_keep(self, rate):
        """Indices of the units whose count reaches int(examples x rate); at least the most active one."""
        threshold = int(self.examples * rate)
        keep = np.flatnonzero(self.counts >= threshold)
        return keep if keep.size else np.array([int(np.argmax(self.counts))])

    def keep_and_clear(self, keep):
        """After a pruning: start counting anew, for the kept units (Algorithm 2, line 14)."""
        self.original_index = self.original_index[keep]
        self.counts = np.zeros(keep.shape[0], dtype=np.int64)
        self.examples = 0


class LinearActivityRecord(ActivityRecord):
    """The record of a Linear layer with per-example top-k.

    Counting follows the authors' masked implementation, in which k stays the same over
    the layer's original width and removed units take part with a zero gradient: each
    example counts the top-k set that tinyprop's selection (ties to the lower index) would
    choose in the masked layer. When an example's gradient has m >= k non-zero entries,
    that is the set the layer selected. When m < k (behind a ReLU most entries are zero),
    it holds the m non-zero units and, in the k - m remaining places, the zero entries of
    lowest original index, removed units included; so a live unit whose gradient is zero
    counts only when it comes early enough among them.

    The C#'s binary heap also fills those places with zeros of original index below k, but
    breaks the ties by heap position, not by index. Counted that way exactly (a scratch
    transcription of its heap), `--net mlpvar` was no more accurate (docs/mnist.md).
    """

    def __init__(self, n_units, k):
        super().__init__(n_units)
        self.k = k

    def observe(self, layer):
        """Count the last backward of a per-example top-k layer: its `selected` and `dy`."""
        self.count_examples(layer.selected, layer.dy)

    def count_examples(self, selected, dy):
        """Count one backward: dy (batch, units) and its per-example top-k indices (batch, k)."""
        selected_nonzero = np.take_along_axis(dy, selected, axis=1) != 0
        self.counts += np.bincount(selected[selected_nonzero], minlength=self.counts.shape[0])
        zero = dy == 0
        places_for_zeros = np.maximum(self.k - (~zero).sum(axis=1), 0)
        if places_for_zeros.any():
            removed_before = self.original_index - np.arange(self.original_index.shape[0])
            rank_among_zeros = np.cumsum(zero, axis=1) - 1 + removed_before
            self.counts += (zero & (rank_among_zeros < places_for_zeros[:, None])).sum(axis=0)
        self.examples += dy.shape[0]


class GateActivityRecord(ActivityRecord):
    """The record of an LSTM, whose gates are simplified jointly (TKDE 2018, Section 2.3.2): a unit
    counts once for each time step at which it was in the top-k of at least one of its gates
    ("merging the active paths from each gate"); which gradients were largest does not matter here."""

    def observe(self, layer):
        """Count the last backward of an LSTM: the rows it `selected`, (steps, 4k)."""
        self.count_steps(layer.selected)

    def count_steps(self, selected):
        """selected: (steps, 4k) rows g*H + j of the gates, for H units."""
        steps, n_units = selected.shape[0], self.counts.shape[0]
        used = np.zeros((steps, n_units), dtype=bool)
        used[np.arange(steps)[:, None], selected % n_units] = True
        self.counts += used.sum(axis=0)
        self.examples += steps


class ColumnBlock:
    """The inputs of `consumer` that come from `producers[position]`, when the outputs of several
    producers are laid side by side (a BiLSTM's two directions feeding one output layer):
    column propagation for that producer alone."""

    def __init__(self, consumer, producers, position):
        self.consumer, self.producers, self.position = consumer, producers, position

    def _others(self):
        return [producer.n_out for i, producer in enumerate(self.producers) if i != self.position]

    @property
    def n_in(self):
        """The block's width: the consumer's inputs the other producers leave."""
        return self.consumer.n_in - sum(self._others())

    def remove_inputs(self, keep):
        """Called after the producer removed its units: its block is as wide as the others leave."""
        start, width = sum(self._others()[:self.position]), self.n_in
        self.consumer.remove_inputs(np.concatenate([np.arange(start), start + np.asarray(keep),
                                                    np.arange(start + width, self.consumer.n_in)]))

    def __repr__(self):
        return f"ColumnBlock({self.consumer!r}, block {self.position})"


class Simplifier:
    """meSimp over pairs (layer, consumer): prunes `layer`'s outputs and the matching inputs of `consumer`.

    `layer` must run per-example top-k meProp, not random k nor unified top-k (its backward leaves
    `selected`; a Linear layer's also `dy`);
    the output layer of a network is never given as a `layer`. A gated layer (an LSTM: its
    `n_gates` > 1) is recorded with its gates merged.
    """

    def __init__(self, pairs, rate):
        if not 0 <= rate <= 1:
            raise ValueError(f"Simplifier: the prune rate must be in [0, 1], got {rate!r}")
        self.pairs = list(pairs)
        for layer, consumer in self.pairs:
            if getattr(layer, "k", None) is None or getattr(layer, "selection", "top") != "top":
                raise ValueError(f"Simplifier: {layer!r} must run per-example top-k meProp (a k, selection "
                                 "'top'): meSimp counts each example's top-k set")
            if consumer.n_in != layer.n_out:
                raise ValueError(f"Simplifier: {consumer!r} takes {consumer.n_in} inputs, but {layer!r} gives "
                                 f"{layer.n_out}; pair each layer with the layer its outputs feed")
        self.rate = rate
        self.records = [GateActivityRecord(layer.n_out) if getattr(layer, "n_gates", 1) > 1
                        else LinearActivityRecord(layer.n_out, layer.k) for layer, _ in self.pairs]
        self.original_sizes = self.sizes()

    def sizes(self):
        return [layer.n_out for layer, _ in self.pairs]

    def observe(self):
        """Record the top-k sets of the last backward (Algorithm 2, line 7)."""
        for (layer, _), record in zip(self.pairs, self.records):
            if layer.selected is None:
                raise RuntimeError(f"Simplifier: {layer!r} has no top-k sets to record; "
                                   "call observe after its backward")
            record.observe(layer)

    def prune(self):
        """Remove the inactive units of every layer, then clear the records (Algorithm 2, lines 9-14).

        Returns the units each layer kept: a list, in the order of the pairs, of (kept,) int arrays of
        the units' original indices (as built, before any pruning), ascending.
        """
        for (layer, consumer), record in zip(self.pairs, self.records):
            keep = record.units_to_keep(self.rate)
            if keep.size < layer.n_out:
                layer.remove_outputs(keep)
                consumer.remove_inputs(keep)
            record.keep_and_clear(keep)
        return [record.original_index.copy() for record in self.records]  # the caller's to keep or change

    def describe(self):
        """Sizes against the original ones, as nnmnist logs them: '149(500) 159(500)'."""
        return " ".join(f"{size}({original})" for size, original in zip(self.sizes(), self.original_sizes))
