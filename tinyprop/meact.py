"""meAct: minimal effort activation (TKDE 2018, Section 3.5, Algorithm 3).

The model first trains normally for e epochs (Algorithm 3, line 1) while, for every training example
j and hidden unit i, the record accumulates the absolute gradient g_ij = sum over those epochs of
|dL/dy_ij| (y: the unit's output before the ReLU, the entry meProp ranks) and the activation
a_ij = sum of max(y_ij, 0) (lines 2-5). Then each example's active units are selected (lines 6-10) and
training goes on with each example using only its own (line 11; tinyprop.layers.ActiveLinear).

Line 7 reads "if g_ij then mask neuron i for example j with a_ij": the comparison is left out. tinyprop
reads it as a share: unit i stays active for example j when g_ij > p * sum_i g_ij, and the other units'
activations a_ij are masked to zero (tinyprop.reference.meact_active_mask). Why this reading: the
section's masked units "contribute none to the results" and get zero gradient, so masking sets a_ij to
zero rather than freezing it; p = 0.004 is then twice a unit's even share of 500 (1/500), and behind a
ReLU, where an example's gradient falls on the units it fires, that keeps about a fifth of them, as
Table 13's 99 of 500 says; and the count barely depends on e (Table 13 gives 99 for e = 10 and 15),
where an absolute threshold g_ij > p on sums over e epochs would keep more units the longer the
epochs add up and depends on the loss's scale. The other reading's count is recorded beside the chosen
one (`absolute_reading_mean`), and so is the share of the dense epochs' activation a_ij that the
active units carried (`activation_share_mean`), so that a reader can judge (docs/mnist.md).

The other reading of "mask neuron i for example j with a_ij" is `mask="recorded"` (the mnist task's
act_mask, ActMask): a masked unit's output is held at its recorded activation for that example, the mean
over the dense epochs a_ij / e, a constant that takes part in the forward (so that it stays close to the
full network that testing uses) but gets no gradient. mask="zero" is the default.

Memory: g and a are float32 (examples, units) per hidden layer, one copy each, added to in place for
the mini-batch's rows (about 440 MB for full MNIST's two layers of 500); the selection makes no
(examples, units) temporary, and the accumulators are dropped once it is done, but for mask="recorded",
which keeps a, divided in place by e, as the held means (float32, half of it). The active sets are held
CSR-like: int32 unit indices and int64 offsets per layer.
"""
import numpy as np
from numba import njit

MASKS = ("zero", "recorded")  # a masked unit's output: 0, or its recorded mean activation (held, no gradient)


@njit(cache=True)
def select_active_units(g, p):
    """Algorithm 3, lines 6-10: (indices int32, offsets int64), example j's active units
    indices[offsets[j]:offsets[j + 1]], ascending, those with g[j, i] > p * sum_i g[j, i].
    tinyprop.reference.meact_active_mask followed by active_sets, in two passes over g (count, then
    fill) with no (examples, units) temporary. g: (examples, units)."""
    n, m = g.shape
    thresholds = np.empty(n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    for j in range(n):
        total = 0.0
        for i in range(m):
            total += g[j, i]
        thresholds[j] = p * total
        count = 0
        for i in range(m):
            if g[j, i] > thresholds[j]:
                count += 1
        offsets[j + 1] = offsets[j] + count
    indices = np.empty(offsets[n], dtype=np.int32)
    for j in range(n):
        t = offsets[j]
        for i in range(m):
            if g[j, i] > thresholds[j]:
                indices[t] = i
                t += 1
    return indices, offsets


@njit(cache=True)
def active_activation_share(a, indices, offsets):
    """Per example, the share of its accumulated activation sum_i a[j, i] that its active units carry
    (NaN for an example that never fired): what the mask leaves of the dense epochs' forward. (examples,)."""
    share = np.empty(a.shape[0])
    for j in range(a.shape[0]):
        total = 0.0
        for i in range(a.shape[1]):
            total += a[j, i]
        kept = 0.0
        for t in range(offsets[j], offsets[j + 1]):
            kept += a[j, indices[t]]
        share[j] = kept / total if total > 0 else np.nan
    return share


def size_distribution(offsets):
    """{mean, min, median, max} of the active set sizes that `offsets` delimit."""
    sizes = np.diff(offsets)
    return dict(mean=float(sizes.mean()), min=int(sizes.min()), median=float(np.median(sizes)), max=int(sizes.max()))


class MinimalEffortActivation:
    """Algorithm 3 over a network's hidden ActiveLinear layers, for a training set of `n_examples`.

    Per training step: `use(examples)` with the batch's training-set indices before the forward, then
    `observe()` after the backward (it records g and a while the model trains densely). `start_epoch(epoch)`
    selects the active sets before epoch act_after + 1. `count_part(sizes)` files a part's average
    absolute parameter change per update under the phase it trained in (Figure 4, right).

    The state a checkpoint keeps: `arrays()` (the accumulators before the selection, the active sets after,
    with mask "recorded" the held means too)
    and `fields()`; `restore(fields, arrays)` puts them back.
    """

    def __init__(self, layers, n_examples, act_after, threshold, mask="zero"):
        if not (isinstance(act_after, (int, np.integer)) and not isinstance(act_after, bool) and act_after >= 1):
            raise ValueError(f"MinimalEffortActivation: act_after (e, the dense epochs before the selection) must be "
                             f"a whole number >= 1, got {act_after!r}")
        if not 0 < threshold < 1:
            raise ValueError(f"MinimalEffortActivation: the threshold p must be in (0, 1), got {threshold!r}")
        if mask not in MASKS:
            raise ValueError(f"MinimalEffortActivation: mask must be one of {', '.join(MASKS)}, got {mask!r}")
        self.layers = list(layers)
        self.act_after = act_after
        self.threshold = threshold
        self.mask = mask
        self.held = None  # mask "recorded", once selected: per layer, the mean activations a / e (examples, units)
        self.gradients = [np.zeros((n_examples, layer.n_out), dtype=np.float32) for layer in self.layers]
        self.activations = [np.zeros((n_examples, layer.n_out), dtype=np.float32) for layer in self.layers]
        self.indices = self.offsets = None
        self.examples = None
        self.selection = None  # per layer: the active set sizes and what the other reading would keep
        self.part_sizes = {"dense": [], "meact": []}  # each part's update size, by phase

    @property
    def selected(self):
        return self.indices is not None

    def use(self, examples):
        """The mini-batch about to be trained on: its examples' training-set indices."""
        self.examples = np.asarray(examples, dtype=np.int64)
        if self.selected:
            held = self.held if self.held is not None else [None] * len(self.layers)
            for layer, indices, offsets, means in zip(self.layers, self.indices, self.offsets, held):
                layer.active = (self.examples, indices, offsets)
                layer.held = means

    def observe(self):
        """Algorithm 3, lines 2-5, for the last backward: g += |dL/dy|, a += max(y, 0), on the batch's rows."""
        if self.selected:
            return
        for layer, g, a in zip(self.layers, self.gradients, self.activations):
            g[self.examples] += np.abs(layer.dy)
            a[self.examples] += np.maximum(layer.y, 0)

    def start_epoch(self, epoch):
        """Select the active sets at the start of epoch act_after + 1; returns whether it did now."""
        if epoch <= self.act_after or self.selected:
            return False
        self.select()
        return True

    def select(self):
        """Algorithm 3, lines 6-10, per hidden layer; the accumulators go once read."""
        self.indices, self.offsets, self.selection = [], [], []
        for layer, g, a in zip(self.layers, self.gradients, self.activations):
            indices, offsets = select_active_units(g, self.threshold)
            self.indices.append(indices)
            self.offsets.append(offsets)
            self.selection.append(dict(
                layer=layer.name, units=layer.n_out, **size_distribution(offsets),
                absolute_reading_mean=float(np.count_nonzero(g > self.threshold) / g.shape[0]),
                activation_share_mean=float(np.nanmean(active_activation_share(a, indices, offsets)))))
        if self.mask == "recorded":
            for a in self.activations:
                a /= self.act_after  # in place: the sums over the e dense epochs become their means
            self.held = self.activations
        self.gradients = self.activations = None

    def describe(self):
        """'layer1 99.3 (0 to 210, median 98) layer2 ...': each layer's mean active units and their spread."""
        return " ".join(f"{s['layer']} {s['mean']:.1f} of {s['units']} ({s['min']} to {s['max']}, median "
                        f"{s['median']:g})" for s in self.selection)

    def count_part(self, sizes):
        """File a part's update sizes ({"all": ..., parameter name: ...}) under the phase it trained in."""
        self.part_sizes["meact" if self.selected else "dense"].append(sizes)

    def record_fields(self):
        """What a metrics line adds: whether the part trained on the active sets, and their mean sizes."""
        fields = dict(meact=self.selected)
        if self.selected:
            fields["active_units_mean"] = [s["mean"] for s in self.selection]
        return fields

    def summary_fields(self):
        """The settings, the active sets' sizes per layer, and the mean update size per phase and parameter."""
        fields = dict(act_after=self.act_after, act_threshold=self.threshold, act_mask=self.mask,
                      active_units=self.selection)
        for phase, parts in self.part_sizes.items():
            fields[f"update_size_{phase}"] = {name: float(np.mean([part[name] for part in parts]))
                                              for name in parts[0]} if parts else None
        return fields

    def arrays(self):
        if self.selected:
            return {**{f"indices/{i}": a for i, a in enumerate(self.indices)},
                    **{f"offsets/{i}": a for i, a in enumerate(self.offsets)},
                    **{f"held/{i}": a for i, a in enumerate(self.held or [])}}
        return {**{f"gradients/{i}": a for i, a in enumerate(self.gradients)},
                **{f"activations/{i}": a for i, a in enumerate(self.activations)}}

    def fields(self):
        return dict(selection=self.selection, part_sizes=self.part_sizes)

    def restore(self, fields, arrays):
        """Put back what `fields()` and `arrays()` gave (a checkpoint's); a missing array is a KeyError."""
        self.selection, self.part_sizes = fields["selection"], fields["part_sizes"]
        count = len(self.layers)
        if self.selection is not None:
            self.indices = [arrays[f"indices/{i}"] for i in range(count)]
            self.offsets = [arrays[f"offsets/{i}"] for i in range(count)]
            self.held = [arrays[f"held/{i}"] for i in range(count)] if self.mask == "recorded" else None
            self.gradients = self.activations = None
            return
        for name in ("gradients", "activations"):
            restored = [arrays[f"{name}/{i}"] for i in range(count)]
            for i, (array, target) in enumerate(zip(restored, getattr(self, name))):
                if array.shape != target.shape or array.dtype != target.dtype:
                    raise ValueError(f"meact/{name}/{i} is {array.dtype} {array.shape}, the run's {target.dtype} "
                                     f"{target.shape}")
            setattr(self, name, restored)  # taken, not copied: a second 440 MB copy would double the peak
