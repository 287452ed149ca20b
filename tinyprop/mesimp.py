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
offering them can be simplified.
"""
import numpy as np


class ActivityRecord:
    """Algorithm 2's record c for one layer: per output unit, the examples that had it in their top-k."""

    def __init__(self, n_units):
        self.counts = np.zeros(n_units, dtype=np.int64)
        self.examples = 0

    def observe(self, selected, batch):
        """Count one backward's selection: (batch, k) per example, or (k,) shared by the whole batch."""
        if selected.ndim == 2:
            self.counts += np.bincount(selected.ravel(), minlength=self.counts.shape[0])
        else:
            self.counts[selected] += batch
        self.examples += batch

    def units_to_keep(self, rate):
        """Indices of the units whose count reaches int(examples x rate); at least the most active one."""
        threshold = int(self.examples * rate)
        keep = np.flatnonzero(self.counts >= threshold)
        return keep if keep.size else np.array([int(np.argmax(self.counts))])

    def clear(self, n_units):
        self.counts = np.zeros(n_units, dtype=np.int64)
        self.examples = 0


class Simplifier:
    """meSimp over pairs (layer, consumer): prunes `layer`'s outputs and the matching inputs of `consumer`.

    `layer` must run meProp (its backward leaves `selected`); the output layer of a
    network is never given as a `layer`.
    """

    def __init__(self, pairs, rate):
        if not 0 <= rate <= 1:
            raise ValueError(f"Simplifier: the prune rate must be in [0, 1], got {rate!r}")
        self.pairs = list(pairs)
        self.rate = rate
        self.records = [ActivityRecord(layer.n_out) for layer, _ in self.pairs]
        self.original_sizes = self.sizes()

    def sizes(self):
        return [layer.n_out for layer, _ in self.pairs]

    def observe(self):
        """Record the top-k sets of the last backward (Algorithm 2, line 7)."""
        for (layer, _), record in zip(self.pairs, self.records):
            record.observe(layer.selected, layer.x.shape[0])

    def prune(self):
        """Remove the inactive units of every layer, then clear the records (Algorithm 2, lines 9-14)."""
        for (layer, consumer), record in zip(self.pairs, self.records):
            keep = record.units_to_keep(self.rate)
            if keep.size < layer.n_out:
                layer.remove_outputs(keep)
                consumer.remove_inputs(keep)
            record.clear(layer.n_out)

    def describe(self):
        """Sizes against the original ones, as nnmnist logs them: '149(500) 159(500)'."""
        return " ".join(f"{size}({original})" for size, original in zip(self.sizes(), self.original_sizes))
