"""AdaGrad (Duchi et al., 2011), as nnmnist writes it."""
import math

from numba import njit, prange

from tinyprop.optim.optimizer import Optimizer, regularized_clipped
from tinyprop.parameter import as_rows, clear_row


@njit(cache=True, error_model="numpy", parallel=True)
def adagrad_update_rows(value, grad, sum_squares, rows, lr, eps, l2, clip_bound, clear):
    """One AdaGrad step on the rows r where rows[r] is True, then, if clear, clear_row; the scalars, Python floats,
    in value's type."""
    to = value.dtype.type
    lr, eps, l2, clip_bound = to(lr), to(eps), to(l2), to(clip_bound)
    for r in prange(value.shape[0]):
        if not rows[r]:
            continue
        for j in range(value.shape[1]):
            d = regularized_clipped(grad[r, j], value[r, j], l2, clip_bound)
            sum_squares[r, j] += d * d
            value[r, j] -= lr * d / math.sqrt(sum_squares[r, j] + eps)
        if clear:
            clear_row(grad, rows, r)


class AdaGrad(Optimizer):
    """h <- h + g^2;  w <- w - lr * g / sqrt(h + eps). nnmnist's defaults: lr 0.001, eps 1e-6."""

    state_names = ("sum_squares",)

    def __init__(self, params, lr=0.001, eps=1e-6, **kwargs):
        if not eps > 0:
            raise ValueError(f"AdaGrad: eps must be positive (a row without gradient would divide 0 by 0), got {eps!r}")
        self.eps = eps
        super().__init__(params, lr, **kwargs)

    def update_rows(self, param, rows, clear):
        adagrad_update_rows(as_rows(param.value), as_rows(param.grad), as_rows(param.state["sum_squares"]),
                            rows, self.lr, self.eps, self.l2, self.clip_bound, clear)
