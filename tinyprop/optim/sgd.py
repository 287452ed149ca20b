"""Stochastic gradient descent with nnmnist's learning-rate decay."""
from numba import njit, prange

from tinyprop.optim.optimizer import Optimizer, regularized_clipped
from tinyprop.parameter import as_rows, clear_row


@njit(cache=True, error_model="numpy", parallel=True)
def sgd_update_rows(value, grad, rows, lr, l2, clip_bound, clear):
    """One SGD step on the rows r where rows[r] is True, then, if clear, clear_row; the scalars, Python floats,
    in value's type."""
    to = value.dtype.type
    lr, l2, clip_bound = to(lr), to(l2), to(clip_bound)
    for r in prange(value.shape[0]):
        if not rows[r]:
            continue
        for j in range(value.shape[1]):
            value[r, j] -= lr * regularized_clipped(grad[r, j], value[r, j], l2, clip_bound)
        if clear:
            clear_row(grad, rows, r)


class SGD(Optimizer):
    """w <- w - lr_t * d, with lr_t = lr * decay_rate ** (steps / decay_steps) and d the gradient
    after L2 and clipping (`regularized_clipped`).

    nnmnist's DecayRate: there decay_steps is the number of training examples, so
    the rate falls by decay_rate every (training set size) updates. nnmnist's SGD leaves
    L2RegFactor out; tinyprop applies it as the other optimizers do.
    """

    def __init__(self, params, lr, decay_rate=1.0, decay_steps=1, **kwargs):
        if not 0 < decay_rate <= 1:
            raise ValueError(f"SGD: decay_rate must be in (0, 1], got {decay_rate!r}")
        if not decay_steps > 0:
            raise ValueError(f"SGD: decay_steps must be positive, got {decay_steps!r}")
        self.decay_rate = decay_rate
        self.decay_steps = decay_steps
        super().__init__(params, lr, **kwargs)

    def update_rows(self, param, rows, clear):
        lr = self.lr * self.decay_rate ** (self.steps / self.decay_steps)
        sgd_update_rows(as_rows(param.value), as_rows(param.grad), rows,
                        lr, self.l2, self.clip_bound, clear)
