"""The fully connected hidden layer of meAct: each example computes only its own active units."""
import time

import numpy as np

from tinyprop.kernels import active_rows_input_grad, add_active_rows_grad, set_active_rows
from tinyprop.layers.base import check_forward_done, check_input, check_same_shape
from tinyprop.layers.linear import Linear


class ActiveLinear(Linear):
    """y = x W^T + b on each example's active units only (TKDE 2018, Section 3.5, Algorithm 3, line 11).

    x: (batch, in) -> y: (batch, out), W: (out, in), one row per neuron, as in Linear.

    `active`: None, or (examples, indices, offsets), set before each training step by
    tinyprop.meact.MinimalEffortActivation: examples (batch,) the training-set indices of the batch's
    examples, and the active sets of the whole training set held CSR-like (example j's units are
    indices[offsets[j]:offsets[j + 1]]). With it, in training, the forward computes for example b only
    the rows of W in its set (the others' outputs are 0: the masked units "contribute none to the
    results"), and the backward gives gradient to those rows of W and entries of b only, and reads only
    those rows for dx, marking the rows that got gradient (weight.rows_with_grad, bias.rows_with_grad)
    so that the optimizer updates only them, as meProp's backward does. The output of a masked unit is
    the constant 0, so, unlike meProp's, the bias gradient is sparse too.

    `held`: None (act_mask "zero"), or (examples, out) float32, the training set's recorded mean activations
    (act_mask "recorded"): then a masked unit's output, for example b, is held at held[examples[b]] instead of 0,
    a constant (>= 0, so the ReLU after keeps it) that takes part in the forward but, not depending on W, b or x,
    gets no gradient and gives none to dx: the backward is the same.

    This is tinyprop.reference.active_linear_forward and active_linear_backward for the mask of the
    active sets, computed by tinyprop.kernels' active_rows_* loops: no dense product with a mask.
    Without `active` (meAct's dense epochs, a saved model), or in evaluation (train(False)), it is an
    ordinary Linear, which keeps its last output `y` so that the record can read the activations a_ij.
    """

    def __init__(self, n_in, n_out, rng=None, dtype=np.float32, name="linear"):
        super().__init__(n_in, n_out, rng=rng, dtype=dtype, name=name)
        self.active = None
        self.held = None
        self.y = None

    def forward(self, x):
        if self.active is None or not self.training:
            self.y = super().forward(x)
            return self.y
        check_input(self.name, x, ("batch", self.n_in))
        self.check_active(x.shape[0])
        self.x = np.ascontiguousarray(x, dtype=self.weight.value.dtype)
        examples = self.active[0]
        self.y = (np.zeros((x.shape[0], self.n_out), dtype=self.x.dtype) if self.held is None
                  else self.held[examples].astype(self.x.dtype, copy=False))  # the masked units' outputs (a copy)
        set_active_rows(self.x, self.weight.value, self.bias.value, *self.active, self.y)
        return self.y

    def backward(self, dy, need_dx=True):
        if self.active is None or not self.training:  # as the forward: an ordinary Linear's
            return super().backward(dy, need_dx)
        check_forward_done(self.name, self.x)
        check_same_shape(self.name, dy, (self.x.shape[0], self.n_out))
        start = time.perf_counter()
        self.dy = dy = np.ascontiguousarray(dy)
        add_active_rows_grad(dy, self.x, *self.active, self.weight.grad, self.bias.grad, self.weight.rows_with_grad,
                             self.bias.rows_with_grad)
        dx = None
        if need_dx:
            dx = self._input_grad_buffer()
            active_rows_input_grad(dy, self.weight.value, *self.active, dx)
        self.backward_seconds += time.perf_counter() - start
        return dx

    def check_active(self, batch):
        """The batch's examples index the active sets, and the held outputs fit them: the kernels index both
        unchecked. The sets themselves (indices, offsets) are MinimalEffortActivation's, and not checked here."""
        examples, indices, offsets = self.active
        sets = len(offsets) - 1
        if examples.shape != (batch,):
            raise ValueError(f"{self.name}: active's examples must name one set for each of the batch's {batch} "
                             f"examples, got shape {examples.shape}")
        if batch and not (examples.min() >= 0 and examples.max() < sets):
            raise ValueError(f"{self.name}: active's examples must index its {sets} active sets, got "
                             f"{examples.min()} to {examples.max()}")
        if self.held is not None and self.held.shape != (sets, self.n_out):
            raise ValueError(f"{self.name}: held must be (active sets, out) = {(sets, self.n_out)}, got "
                             f"{self.held.shape}")

    def __repr__(self):
        return f"ActiveLinear({self.n_in}, {self.n_out})"
