"""Sparse backward kernels of a linear layer y = x W^T + b under meProp.

W is laid out (out, in): row r is neuron r, as in the paper (Section 2.1, Figure 2).
For each example b only the rows in selected[b] (its top-k set S) take part:

    dW[r, :] += dy[b, r] * x[b, :]        for r in S_b       (eq. 9)
    db[r]    += dy[b, r]                  for r in S_b
    dx[b, :]  = sum_{r in S_b} dy[b, r] * W[r, :]            (eq. 10)

Each touches k rows of length `in` per example: k/n of the dense work, and no
dense masked product is formed. Called with every row selected, the same loops are
the "dense loop" reference the benchmark compares against (the papers' C# figures
come from plain loops like these).
"""
from numba import njit


@njit(cache=True)
def add_selected_rows_grad(dy, x, selected, weight_grad, bias_grad, weight_rows, bias_rows):
    """Eq. (9): accumulate dW and db on the selected rows and mark those rows as having gradient.

    dy: (batch, out); x: (batch, in); selected: (batch, k) int32;
    weight_grad: (out, in); bias_grad: (out,); weight_rows, bias_rows: (out,) bool.
    """
    n_in = x.shape[1]
    for b in range(selected.shape[0]):
        for t in range(selected.shape[1]):
            r = selected[b, t]
            g = dy[b, r]
            bias_grad[r] += g
            weight_rows[r] = True
            bias_rows[r] = True
            for j in range(n_in):
                weight_grad[r, j] += g * x[b, j]


@njit(cache=True)
def selected_input_grad(dy, weight, selected, dx):
    """Eq. (10): dx[b] = sum over r in selected[b] of dy[b, r] * W[r]. dx: (batch, in), overwritten."""
    n_in = weight.shape[1]
    for b in range(selected.shape[0]):
        for j in range(n_in):
            dx[b, j] = 0.0
        for t in range(selected.shape[1]):
            r = selected[b, t]
            g = dy[b, r]
            for j in range(n_in):
                dx[b, j] += g * weight[r, j]


@njit(cache=True)
def add_to_rows(target, rows, values):
    """target[rows[i]] += values[i] for 2-d target (n, m) and values (len(rows), m); rows distinct."""
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(target.shape[1]):
            target[r, j] += values[i, j]
