"""Adam (Kingma & Ba, 2015), the optimizer of all the papers' experiments (TKDE 2018, Section 3.1)."""
import math

import numpy as np
from numba import njit, prange

from tinyprop.optim.optimizer import Optimizer, regularized_clipped
from tinyprop.parameter import as_rows, clear_row


@njit(cache=True, error_model="numpy", parallel=True)
def adam_update_rows(value, grad, mean, mean_square, rows, step_size, beta1, beta2, eps, l2, clip_bound, tiny, clear):
    """One Adam step on the rows r of (rows, columns) arrays where rows[r] is True ((rows,) bool); clear: then
    clear each such row's gradient and mark (clear_row).

    A moment that decays below `tiny`, the smallest normal float of the dtype, is set to zero.
    Left subnormal, it would make every later step on it slow: processors handle subnormal
    floats in microcode. In the MNIST MLP a weight that stops getting gradient (an input pixel
    seldom inked, a unit that stopped firing) has its mean turn subnormal some hundreds of steps
    later, and the flush makes the update faster with the same results bit for bit
    (docs/performance.md, "Subnormal moments flushed to zero"). What the flush drops, below
    `tiny`, is far below what can move a weight.
    """
    to = value.dtype.type  # the scalars come as Python floats; in value's type float32 arithmetic stays float32
    step_size, beta1, beta2, eps, l2, clip_bound, tiny = (to(step_size), to(beta1), to(beta2), to(eps), to(l2),
                                                          to(clip_bound), to(tiny))
    one = to(1)  # not the literal 1, which would turn float32 arithmetic into float64
    zero = to(0)
    for r in prange(value.shape[0]):
        if not rows[r]:
            continue
        for j in range(value.shape[1]):
            d = regularized_clipped(grad[r, j], value[r, j], l2, clip_bound)
            m = beta1 * mean[r, j] + (one - beta1) * d
            v = beta2 * mean_square[r, j] + (one - beta2) * d * d
            mean[r, j] = zero if abs(m) < tiny else m  # so written, a NaN stays NaN (and the loss says so)
            mean_square[r, j] = zero if v < tiny else v
            value[r, j] -= step_size * mean[r, j] / (math.sqrt(mean_square[r, j]) + eps)
        if clear:
            clear_row(grad, rows, r)


class Adam(Optimizer):
    """m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  w <- w - a_t m / (sqrt(v) + eps),

    with a_t = lr * sqrt(1 - b2^t) / (1 - b1^t) (the bias correction in the form of
    Kingma & Ba's Section 2, as nnmnist computes it). t counts optimizer steps; with
    sparse updates a row's moments change only on the steps it received gradient.
    """

    state_names = ("mean", "mean_square")

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, **kwargs):
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"Adam: beta1 and beta2 must be in [0, 1), got {beta1!r} and {beta2!r}")
        if not eps > 0:
            raise ValueError(f"Adam: eps must be positive, got {eps!r}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        super().__init__(params, lr, **kwargs)

    def update_rows(self, param, rows, clear):
        step_size = self.lr * math.sqrt(1 - self.beta2 ** self.steps) / (1 - self.beta1 ** self.steps)
        adam_update_rows(as_rows(param.value), as_rows(param.grad), as_rows(param.state["mean"]),
                         as_rows(param.state["mean_square"]), rows, step_size, self.beta1, self.beta2, self.eps,
                         self.l2, self.clip_bound, float(np.finfo(param.value.dtype).tiny), clear)
