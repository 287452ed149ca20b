"""The fully connected layer, with meProp's sparsified backward."""
import time

import numpy as np

from tinyprop.kernels import (add_selected_rows_grad, add_shared_rows_grad, add_to_rows, selected_input_grad,
                              shared_rows_input_grad, small_batch_linear)
from tinyprop.layers.base import (Layer, check_forward_done, check_input, check_meprop_k, check_positive_int,
                                  check_same_shape)
from tinyprop.parameter import Parameter, glorot_normal
from tinyprop.threads import blas_threads_for
from tinyprop.topk import random_rows, topk_rows, unified_topk

SELECTIONS = ("top", "rand", "unified")
# Up to this size of x (and of dx, which has its shape), unified meProp's dW and dx are loops over
# W's k rows in place (tinyprop.kernels.add_shared_rows_grad, shared_rows_input_grad), with x and
# dx in the 32 KB L1 cache; above it, BLAS on dy's k gathered columns and W's k rows: the loops beat
# BLAS below this size (docs/performance.md).
UNIFIED_LOOP_MAX_BYTES = 32 * 1024
# Batches from the first to the last of these sizes take tinyprop.kernels.small_batch_linear's forward,
# the others BLAS's: the sizes where the kernel was faster at the MNIST MLP's shapes (docs/performance.md).
LOOP_FORWARD_BATCHES = (3, 12)


class Linear(Layer):
    """y = x W^T + b, with W: (out, in), one row per neuron (TKDE 2018, eq. 1).

    x: (batch, in) -> y: (batch, out).

    forward: y = x W^T + b by BLAS; for batches of LOOP_FORWARD_BATCHES' sizes, the same by
    tinyprop.kernels.small_batch_linear, which reads each row of W once for every five examples.

    k=None: ordinary backprop, dW += dy^T x, db += sum_b dy, dx = dy W (eqs. 7, 8), by BLAS.
    With k, meProp (eqs. 9, 10): only k entries of each example's dy take part, chosen by
      - "top": per example, the k largest |dy| (Algorithm 1; nnmnist's mlptop);
      - "rand": per example, k at random (nnmnist's mlprand);
      - "unified": one set for the mini-batch, the k largest sum_b |dy| (Section 3.3.1).
    Only the selected rows of W get gradient, and the cost is k/out of the dense
    backward: per example for "top"/"rand" (Numba loops in tinyprop.kernels), and for
    "unified" by loops over the k rows of W and dW for a small batch, by BLAS on them gathered
    for a larger one.
    The bias gets its dense gradient db = sum_b dy, as in the authors' C# and PyTorch code.

    This is tinyprop.reference.linear_backward(x, W, dy, mask), with the mask of reference.topk_mask,
    random_k_mask or unified_topk_mask (the same rows, ties to the lower index), computed faster: the
    selection by tinyprop.topk (a heap of k entries instead of a sort of out), no masked dy formed and no
    product with its zeros, and the rows that got gradient marked (weight.rows_with_grad) so that the
    optimizer updates only those rows and their state.

    Kept for backward: `x`, the input of the last forward. Kept after backward: `dy` and
    `selected`, the chosen indices ((batch, k) per example, or (k,) unified), which
    meSimp counts. `backward_seconds` sums the time spent in backward ("backprop time").
    backward returns dx in a fresh array; after `reuse_buffers()` (tinyprop.layers.base.Layer), as
    the training loops do, in a buffer the layer reuses while the input's shape stays the same: a
    fresh (10,000, 2,400) array a step costs the parser's meProp backward its page faults
    (docs/performance.md).
    """

    def __init__(self, n_in, n_out, k=None, selection="top", rng=None, dtype=np.float32, name="linear"):
        check_positive_int(name, "n_in", n_in)
        check_positive_int(name, "n_out", n_out)
        check_meprop_k(name, k, n_out, "outputs", dtype)
        if selection not in SELECTIONS:
            raise ValueError(f"{name}: selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
        self.name = name
        self.k = k
        self.selection = selection
        self.rng = rng if rng is not None else np.random.default_rng()
        self.weight = Parameter(glorot_normal(self.rng, n_out, n_in, n_out, dtype), f"{name}.weight")
        self.bias = Parameter(np.zeros(n_out, dtype=dtype), f"{name}.bias")
        self.x = None
        self.dy = None
        self.selected = None
        self._dx = None
        self.backward_seconds = 0.0
        self._heap = np.empty(k or 1, dtype=np.uint64)  # reused by every top-k selection

    @property
    def n_in(self):
        return self.weight.shape[1]

    @property
    def n_out(self):
        return self.weight.shape[0]

    def params(self):
        return [self.weight, self.bias]

    def forward(self, x):
        check_input(self.name, x, ("batch", self.n_in))
        self.x = np.ascontiguousarray(x, dtype=self.weight.value.dtype)
        if LOOP_FORWARD_BATCHES[0] <= self.x.shape[0] <= LOOP_FORWARD_BATCHES[1]:
            y = np.empty((self.x.shape[0], self.n_out), dtype=self.x.dtype)
            small_batch_linear(self.x, self.weight.value, self.bias.value, y)
            return y
        # The larger matrix on the left: OpenBLAS is faster so at mini-batch sizes, and at the parser's
        # 10,000 x W^T saves the transposing copy (docs/performance.md).
        with blas_threads_for(self.weight.value.size * self.x.shape[0]):
            if self.x.shape[0] > self.n_out:
                y = self.x @ self.weight.value.T
            else:
                y = np.ascontiguousarray((self.weight.value @ self.x.T).T)
        y += self.bias.value
        return y

    def backward(self, dy, need_dx=True):
        check_forward_done(self.name, self.x)
        check_same_shape(self.name, dy, (self.x.shape[0], self.n_out))
        start = time.perf_counter()
        self.dy = dy = np.ascontiguousarray(dy)
        self.bias.grad += dy.sum(axis=0)
        self.bias.mark_all_rows()
        if self.k is None:
            dx = self._dense_backward(dy, need_dx)
        elif self.selection == "unified":
            dx = self._unified_backward(dy, need_dx)
        else:
            dx = self._per_example_backward(dy, need_dx)
        self.backward_seconds += time.perf_counter() - start
        return dx

    def _dense_backward(self, dy, need_dx):
        with blas_threads_for(self.weight.value.size * dy.shape[0]):
            self.weight.grad += dy.T @ self.x
            self.weight.mark_all_rows()
            return np.matmul(dy, self.weight.value, out=self._input_grad_buffer()) if need_dx else None

    def _per_example_backward(self, dy, need_dx):
        batch = dy.shape[0]
        if self.selection == "top":
            if self.selected is None or self.selected.shape != (batch, self.k):
                self.selected = np.empty((batch, self.k), dtype=np.int32)
            topk_rows(dy, self.k, self._heap, self.selected)
        else:
            self.selected = random_rows(self.rng, batch, self.n_out, self.k)
        self.selected.sort(axis=1)  # the kernels then walk W's rows in order (faster at large batches)
        add_selected_rows_grad(dy, self.x, self.selected, self.weight.grad, self.weight.rows_with_grad)
        if not need_dx:
            return None
        dx = self._input_grad_buffer()
        selected_input_grad(dy, self.weight.value, self.selected, dx)
        return dx

    def _unified_backward(self, dy, need_dx):
        if self.selected is None or self.selected.shape != (self.k,):
            self.selected = np.empty(self.k, dtype=np.int32)
        rows = unified_topk(dy, self.k, self._heap, self.selected)
        by_loop = self.x.nbytes <= UNIFIED_LOOP_MAX_BYTES
        if by_loop:
            add_shared_rows_grad(dy, self.x, rows, self.weight.grad, self.weight.rows_with_grad)
        else:
            dy_kept = dy[:, rows]
            add_to_rows(self.weight.grad, rows, dy_kept.T @ self.x, self.weight.rows_with_grad)
        if not need_dx:
            return None
        dx = self._input_grad_buffer()
        if by_loop:
            shared_rows_input_grad(dy, self.weight.value, rows, dx)
        else:
            np.matmul(dy_kept, self.weight.value[rows], out=dx)
        return dx

    def _input_grad_buffer(self):
        """The array backward writes dx into: a fresh one, or, reusing buffers, the layer's own."""
        return self._kept_array("_dx", self.x.shape, self.x.dtype)

    def remove_outputs(self, keep):
        """meSimp: keep only the output units `keep` (rows of W, entries of b, their gradients and state)."""
        self.weight.take(keep, axis=0)
        self.bias.take(keep, axis=0)
        if self.k is not None:
            self.k = min(self.k, self.n_out)
        self.selected = None

    def remove_inputs(self, keep):
        """meSimp's column propagation: keep only the input columns `keep`, those of the units the layer
        below kept."""
        self.weight.take(keep, axis=1)

    def __repr__(self):
        sparsity = "" if self.k is None else f", k={self.k}, selection={self.selection!r}"
        return f"Linear({self.n_in}, {self.n_out}{sparsity})"
