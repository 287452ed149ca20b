"""What every optimizer shares: nnmnist's gradient treatment, and sparse row updates."""
import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy", inline="always")
def regularized_clipped(grad, value, l2, clip_bound):
    """The step gradient of nnmnist's Adam and AdaGrad: g + L2RegFactor * w, then clipped to
    [-ClipBound, ClipBound] if ClipBound > 0 (tinyprop's SGD uses it too)."""
    d = grad + l2 * value
    if clip_bound > 0:
        if d > clip_bound:
            d = clip_bound
        elif d < -clip_bound:
            d = -clip_bound
    return d


class Optimizer:
    """Base of SGD, AdaGrad and Adam.

    A step updates, in each parameter, only the rows that received gradient since the
    last `zero_grad` (Parameter.rows_with_grad): a meProp layer's other rows and their
    optimizer state stay exactly as they were. With dense_updates=True every row is
    updated every step, as nnmnist does (rows without gradient then see g = 0).

    Subclasses name their state arrays (`state_names`) and give `update_rows(param, rows, clear)`,
    whose kernel works on (rows, columns) views of the parameter (`as_rows`), one row per thread at a
    time (so the same bits on any number of threads), clears each row's gradient and mark as it leaves
    the row if `clear` (tinyprop.parameter.clear_row), and takes its
    scalars as Python floats, turning them into the parameter's float type itself, so that
    the arithmetic stays in float32 and vectorises; numpy float32 scalars made at each call, and
    the marked rows' indices gathered in Python, made Adam's step slower (docs/performance.md).
    """

    state_names = ()

    def __init__(self, params, lr, clip_bound=0.0, l2=0.0, dense_updates=False):
        if lr <= 0:
            raise ValueError(f"{type(self).__name__}: the learning rate must be positive, got {lr!r}")
        if clip_bound < 0 or l2 < 0:
            raise ValueError(f"{type(self).__name__}: clip_bound and l2 must be >= 0, got {clip_bound!r}, {l2!r}")
        self.params = list(params)
        self.lr = lr
        self.clip_bound = clip_bound
        self.l2 = l2
        self.dense_updates = dense_updates
        self.reset()

    def reset(self):
        """Forget all history: step count and state (meSimp re-initialises the optimizer each cycle)."""
        self.steps = 0
        for param in self.params:
            param.state = {name: np.zeros_like(param.value) for name in self.state_names}

    def step(self, zero_grad=False):
        """Update the rows that received gradient (with dense_updates, every row). zero_grad: then clear their
        gradients and marks as `zero_grad()` does, in the same pass: each row's gradient is read once, not twice.
        """
        self.steps += 1
        for param in self.params:
            if self.dense_updates:
                param.mark_all_rows()  # rows without gradient are updated too, with g = 0
            self.update_rows(param, param.rows_with_grad, zero_grad)

    def zero_grad(self):
        """Clear the gradients and row marks of the parameters this optimizer updates (call after each step)."""
        for param in self.params:
            param.zero_grad()

    def update_rows(self, param, rows, clear):
        """Update the rows r of `param` where rows[r] is True ((rows,) bool); clear: then clear_row each."""
        raise NotImplementedError
