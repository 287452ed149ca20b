"""The LSTM's time loops in Numba: the forward recurrence and backpropagation through time.

One direction, one sequence of `steps` inputs (the forward also a batch of sequences of one
length, for evaluation), H units, gates in blocks of H rows: z_t = [i, f, g, o]
pre-activations (4H,). With W_x x_t + b computed for all steps at
once by the caller (one BLAS product), what must run step by step is

    z_t = zx_t + W_h h_{t-1},  i, f, o = sigmoid,  g = tanh,
    c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t),  h_0 = c_0 = 0,

and, backwards, dz_t from dh_t and dc_t (the cell path dc_{t-1} = f * dc_t stays dense:
it is element-wise), then the recurrent product dh_{t-1} = W_h^T dz_t. Keeping the loops
here, rather than in Python, leaves the per-step cost to the arithmetic.

meProp on the gates (TKDE 2018, Section 2.3.2: "the back propagation of the gates
independently"): at each step, for each gate, the k entries of dz with the largest
magnitude are kept (4k of the 4H rows), and the recurrent products use only those rows,
through Linear's sparse kernels (eqs. 9 and 10).
"""
import math

import numpy as np
from numba import njit

from tinyprop.kernels import add_selected_rows_grad, selected_input_grad
from tinyprop.topk import BUCKETS, topk_of_row

GATES = 4  # input, forget, cell candidate, output: row blocks of W_x, W_h and b


@njit(cache=True, error_model="numpy", inline="always")
def _sigmoid(z, one):
    return one / (one + math.exp(-z))


@njit(cache=True, error_model="numpy")
def lstm_forward_steps(zx, recurrent, gates, cells, cell_tanh, hidden):
    """The recurrence over all steps, for a batch of sequences of one length: the forward loop of
    tinyprop.reference.lstm_backward, for each sequence of the batch.

    zx: (steps, batch, 4H) = W_x x + b; recurrent W_h: (4H, H). Fills gates (steps, batch, 4H)
    with the activated i, f, g, o, and cells, cell_tanh = tanh(c) and hidden (steps, batch, H).
    Each step's recurrent product W_h h_{t-1} is one matrix product for the whole batch, which
    reads W_h (4 MB at the tagger's H = 500) once for all its sequences (evaluation's batches).
    Training runs a batch of one sentence, as the papers do.
    """
    steps, batch, n = hidden.shape
    h_prev = np.zeros((batch, n), dtype=hidden.dtype)
    c_prev = np.zeros((batch, n), dtype=hidden.dtype)
    one = hidden.dtype.type(1)  # not the literal 1.0, which would turn float32 arithmetic into float64
    for t in range(steps):
        recurrent_part = np.dot(recurrent, h_prev.T)  # (4H, batch)
        for b in range(batch):
            for j in range(n):
                i = _sigmoid(zx[t, b, j] + recurrent_part[j, b], one)
                f = _sigmoid(zx[t, b, n + j] + recurrent_part[n + j, b], one)
                g = math.tanh(zx[t, b, 2 * n + j] + recurrent_part[2 * n + j, b])
                o = _sigmoid(zx[t, b, 3 * n + j] + recurrent_part[3 * n + j, b], one)
                gates[t, b, j], gates[t, b, n + j], gates[t, b, 2 * n + j], gates[t, b, 3 * n + j] = i, f, g, o
                cells[t, b, j] = f * c_prev[b, j] + i * g
                cell_tanh[t, b, j] = math.tanh(cells[t, b, j])
                hidden[t, b, j] = o * cell_tanh[t, b, j]
        h_prev = hidden[t]
        c_prev = cells[t]


@njit(cache=True, error_model="numpy", inline="always")
def _gate_gradients(gates_t, tanh_t, cell_prev, dh, dc, dz):
    """dz (4H) = dL/dz_t from dh = dL/dh_t and dc = dL/dc_t through c_{t+1}; dc becomes dL/dc_{t-1}.

    tanh_t = tanh(c_t), kept by the forward loop.
    """
    n = dh.shape[0]
    one = dz.dtype.type(1)  # not the literal 1, which would turn float32 arithmetic into float64
    for j in range(n):
        i, f, g, o = gates_t[j], gates_t[n + j], gates_t[2 * n + j], gates_t[3 * n + j]
        tanh_c = tanh_t[j]
        dc_t = dh[j] * o * (one - tanh_c * tanh_c) + dc[j]
        dz[j] = dc_t * g * i * (one - i)
        dz[n + j] = dc_t * cell_prev[j] * f * (one - f)
        dz[2 * n + j] = dc_t * i * (one - g * g)
        dz[3 * n + j] = dh[j] * tanh_c * o * (one - o)
        dc[j] = dc_t * f


@njit(cache=True, error_model="numpy")
def lstm_backward_dense(gates, cells, cell_tanh, dhidden, recurrent, dz):
    """Backpropagation through time, dense: dz (steps, 4H) from dhidden = dL/dh (steps, H); the dz of
    tinyprop.reference.lstm_backward with k=None, from which the caller makes the rest.

    dh_{t-1} = W_h^T dz_t by BLAS; the weight gradients need no loop (the caller forms
    dz^T x and dz[1:]^T h[:-1] as two matrix products).
    """
    steps, n = cells.shape
    dh_rec = np.zeros(n, dtype=cells.dtype)
    dc = np.zeros(n, dtype=cells.dtype)
    zero = np.zeros(n, dtype=cells.dtype)
    for t in range(steps - 1, -1, -1):
        _gate_gradients(gates[t], cell_tanh[t], cells[t - 1] if t > 0 else zero, dhidden[t] + dh_rec, dc, dz[t])
        if t > 0:
            dh_rec = np.dot(dz[t], recurrent)


@njit(cache=True, error_model="numpy")
def lstm_backward_topk(gates, cells, cell_tanh, hidden, dhidden, recurrent, k, heap, selected, dz, recurrent_grad,
                       recurrent_rows):
    """Backpropagation through time with meProp on each gate.

    At each step t: dz_t as in the dense loop; selected[t] = for each gate the k rows of
    largest |dz_t| in its block (4k rows of 4H, ties to the lower index); then only those
    rows take part in the recurrent products: W_h.grad[r] += dz_t[r] h_{t-1} and
    dh_{t-1} = sum_r dz_t[r] W_h[r]. dz keeps every entry (the input-side products read
    only the selected ones; the bias takes all). heap: a (k,) uint64 buffer.

    The backward loop of tinyprop.reference.lstm_backward, faster: `topk_of_row`'s heap on each
    gate's block instead of a sort, and Linear's row kernels on the selected rows instead of
    products with the masked dz_t.
    """
    steps, n = cells.shape
    dh_rec = np.zeros((1, n), dtype=cells.dtype)
    dc = np.zeros(n, dtype=cells.dtype)
    zero = np.zeros(n, dtype=cells.dtype)
    bits = dz.view(np.uint32)
    counts = np.empty(BUCKETS, dtype=np.int32)  # the top-k's histogram
    for t in range(steps - 1, -1, -1):
        _gate_gradients(gates[t], cell_tanh[t], cells[t - 1] if t > 0 else zero, dhidden[t] + dh_rec[0], dc, dz[t])
        for gate in range(GATES):
            chosen = selected[t, gate * k:(gate + 1) * k]
            topk_of_row(bits[t, gate * n:(gate + 1) * n], k, heap, counts, chosen)
            for s in range(k):
                chosen[s] += gate * n
        if t > 0:
            add_selected_rows_grad(dz[t:t + 1], hidden[t - 1:t], selected[t:t + 1], recurrent_grad, recurrent_rows)
            selected_input_grad(dz[t:t + 1], recurrent, selected[t:t + 1], dh_rec)
