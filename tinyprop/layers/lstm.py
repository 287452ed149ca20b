"""The LSTM, one direction and bidirectional, with meProp on every gate."""
import time

import numpy as np

from tinyprop.kernels import add_selected_rows_grad, selected_input_grad
from tinyprop.layers.base import (Layer, check_forward_done, check_input, check_meprop_k, check_positive_int,
                                  check_same_shape)
from tinyprop.lstm_kernels import GATES, lstm_backward_dense, lstm_backward_topk, lstm_forward_steps
from tinyprop.parameter import Parameter, glorot_normal


class LSTM(Layer):
    """One direction over one sequence (TKDE 2018, Section 2.3.2). x: (steps, in) -> h: (steps, H).
    forward also takes a batch of sequences of one length, (steps, batch, in), for evaluation.

        z_t = W_x x_t + W_h h_{t-1} + b   (4H: gates i, f, g, o in blocks of H rows)
        i, f, o = sigmoid(z),  g = tanh(z),  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t),  h_0 = c_0 = 0.

    Parameters: `input_weight` W_x (4H, in), `recurrent_weight` W_h (4H, H), `bias` b (4H,);
    row g*H + j belongs to gate g of unit j. The forget gate's bias starts at 1
    (Jozefowicz et al., 2015), the weights with nnmnist's initialiser.

    backward is backpropagation through time (tinyprop.lstm_kernels). k=None: dense, the
    weight gradients as two matrix products over all steps. With k, meProp: at each step
    each gate keeps its k largest |dz| (the gates independently, as Section 2.3.2 chose), and
    only those 4k rows of W_x and W_h get gradient and carry dx_t and dh_{t-1} (eqs. 9, 10
    on both products, by Linear's sparse kernels); the element-wise cell path and the bias
    gradient stay dense, as in Linear. This is tinyprop.reference.lstm_backward, computed faster:
    the time loops compiled (tinyprop.lstm_kernels), each gate's rows chosen by the heap top-k,
    only the 4k selected rows of W_x and W_h read and written, and those rows marked for the
    optimizer's sparse update.

    Kept for backward: `x`, the activated `gates` (steps, 4H), `cells`, their tanh `cell_tanh` and
    `hidden` (steps, H).
    Kept after backward, with k: `selected`, the (steps, 4k) rows chosen, which meSimp counts.
    `backward_seconds` sums backward's time.
    """

    n_gates = GATES

    def __init__(self, n_in, hidden, k=None, rng=None, dtype=np.float32, name="lstm"):
        check_positive_int(name, "n_in", n_in)
        check_positive_int(name, "hidden", hidden)
        check_meprop_k(name, k, hidden, "units", dtype)
        self.name = name
        self.k = k
        rng = rng if rng is not None else np.random.default_rng()
        self.input_weight = Parameter(glorot_normal(rng, GATES * hidden, n_in, hidden, dtype), f"{name}.input_weight")
        self.recurrent_weight = Parameter(glorot_normal(rng, GATES * hidden, hidden, hidden, dtype),
                                          f"{name}.recurrent_weight")
        bias = np.zeros(GATES * hidden, dtype=dtype)
        bias[hidden:2 * hidden] = 1.0
        self.bias = Parameter(bias, f"{name}.bias")
        self.x = self.gates = self.cells = self.cell_tanh = self.hidden = self.selected = None
        self.backward_seconds = 0.0
        self._heap = np.empty(k or 1, dtype=np.uint64)

    @property
    def n_in(self):
        return self.input_weight.shape[1]

    @property
    def n_out(self):
        return self.recurrent_weight.shape[1]

    def params(self):
        return [self.input_weight, self.recurrent_weight, self.bias]

    def forward(self, x):
        """x: (steps, in) -> (steps, H); or, to evaluate, a batch of sequences of one length,
        x: (steps, batch, in) -> (steps, batch, H), after which backward is refused."""
        one_sequence = getattr(x, "ndim", None) != 3
        check_input(self.name, x, ("steps", self.n_in) if one_sequence else ("steps", "batch", self.n_in))
        x = np.ascontiguousarray(x, dtype=self.bias.value.dtype)
        steps, batch, n = x.shape[0], 1 if one_sequence else x.shape[1], self.n_out
        # (W_x x^T)^T rather than x W_x^T, as in Linear
        zx = np.ascontiguousarray((self.input_weight.value @ x.reshape(steps * batch, self.n_in).T).T) + self.bias.value
        gates = np.empty((steps, batch, GATES * n), dtype=x.dtype)
        cells, cell_tanh, hidden = (np.empty((steps, batch, n), dtype=x.dtype) for _ in range(3))
        lstm_forward_steps(zx.reshape(steps, batch, GATES * n), self.recurrent_weight.value, gates, cells, cell_tanh,
                           hidden)
        if not one_sequence:  # nothing kept for backward but the hidden states, by which backward refuses
            self.x, self.gates, self.cells, self.cell_tanh, self.hidden = None, None, None, None, hidden
            return hidden
        self.x = x
        self.gates, self.cells, self.cell_tanh, self.hidden = gates[:, 0], cells[:, 0], cell_tanh[:, 0], hidden[:, 0]
        return self.hidden

    def backward(self, dy, need_dx=True):
        check_forward_done(self.name, self.hidden)
        if self.hidden.ndim == 3:
            raise RuntimeError(f"{self.name}: backward takes one sequence; the last forward had a batch of "
                             f"{self.hidden.shape[1]} (batches are for evaluation)")
        check_same_shape(self.name, dy, self.hidden.shape)
        start = time.perf_counter()
        dhidden = np.ascontiguousarray(dy, dtype=self.hidden.dtype)
        dz = np.empty_like(self.gates)  # the gates' pre-activation gradients
        if self.k is None:
            lstm_backward_dense(self.gates, self.cells, self.cell_tanh, dhidden, self.recurrent_weight.value, dz)
            self.recurrent_weight.grad += dz[1:].T @ self.hidden[:-1]
            self.input_weight.grad += dz.T @ self.x
            self.recurrent_weight.mark_all_rows()
            self.input_weight.mark_all_rows()
            dx = dz @ self.input_weight.value if need_dx else None
        else:
            self.selected = np.empty((dz.shape[0], GATES * self.k), dtype=np.int32)
            recurrent = self.recurrent_weight
            lstm_backward_topk(self.gates, self.cells, self.cell_tanh, self.hidden, dhidden, recurrent.value, self.k,
                               self._heap, self.selected, dz, recurrent.grad, recurrent.rows_with_grad)
            add_selected_rows_grad(dz, self.x, self.selected, self.input_weight.grad, self.input_weight.rows_with_grad)
            dx = None
            if need_dx:
                dx = np.empty_like(self.x)
                selected_input_grad(dz, self.input_weight.value, self.selected, dx)
        self.bias.grad += dz.sum(axis=0)
        self.bias.mark_all_rows()
        self.backward_seconds += time.perf_counter() - start
        return dx

    def remove_outputs(self, keep):
        """meSimp: keep only units `keep`, in all four gates jointly (Section 2.3.2): their rows of W_x, W_h
        and b, and their recurrent columns of W_h, with gradients and optimizer state."""
        rows = (np.arange(GATES)[:, None] * self.n_out + np.asarray(keep)[None, :]).ravel()
        self.input_weight.take(rows, axis=0)
        self.recurrent_weight.take(rows, axis=0)
        self.recurrent_weight.take(keep, axis=1)
        self.bias.take(rows, axis=0)
        if self.k is not None:
            self.k = min(self.k, self.n_out)
        self.selected = None

    def __repr__(self):
        return f"LSTM({self.n_in}, {self.n_out}{'' if self.k is None else f', k={self.k}'})"


class BiLSTM(Layer):
    """Two LSTMs over one sequence, one reading it backwards (Graves & Schmidhuber, 2005).

    x: (steps, in) -> (steps, H_forward + H_backward): row t is [h_forward_t, h_backward_t],
    where h_backward_t has read x_t .. x_last. To evaluate, also x: (steps, batch, in) ->
    (steps, batch, H_forward + H_backward), as LSTM.forward. `hidden`: one size for both, or a pair; each
    direction keeps its own size under meSimp, and its k is capped by it.
    """

    def __init__(self, n_in, hidden, k=None, rng=None, dtype=np.float32, name="bilstm"):
        sizes = (hidden, hidden) if np.isscalar(hidden) else tuple(hidden)
        if len(sizes) != 2:
            raise ValueError(f"{name}: hidden is one size or a pair (forward, backward), got {hidden!r}")
        for size in sizes:
            check_positive_int(name, "each hidden size", size)
        self.name = name
        self.directions = [LSTM(n_in, size, k and min(k, size), rng, dtype, f"{name}.{direction}")
                           for size, direction in zip(sizes, ("forward", "backward"))]

    def children(self):
        return self.directions

    def forward(self, x):
        ahead, behind = self.directions
        return np.concatenate([ahead.forward(x), behind.forward(x[::-1])[::-1]], axis=-1)

    def backward(self, dy, need_dx=True):
        ahead, behind = self.directions
        check_forward_done(self.name, ahead.hidden)
        check_same_shape(self.name, dy, (ahead.hidden.shape[0], ahead.n_out + behind.n_out))
        dx_ahead = ahead.backward(dy[:, :ahead.n_out], need_dx)
        dx_behind = behind.backward(dy[::-1, ahead.n_out:], need_dx)
        return dx_ahead + dx_behind[::-1] if need_dx else None
