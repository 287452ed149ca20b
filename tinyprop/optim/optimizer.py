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

    Subclasses name their state arrays (`state_names`) and give `update_rows(param, rows)`,
    which works on (rows, columns) views of the parameter: a bias is one column.
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

    def step(self):
        self.steps += 1
        for param in self.params:
            if self.dense_updates:
                rows = np.arange(param.shape[0])
            else:
                rows = np.flatnonzero(param.rows_with_grad)
            if rows.size:
                self.update_rows(param, rows)

    def update_rows(self, param, rows):
        raise NotImplementedError

    @staticmethod
    def in_dtype_of(param, *scalars):
        """Scalars in the parameter's float type, so the Numba kernels stay in float32 (and vectorise)."""
        return tuple(param.value.dtype.type(scalar) for scalar in scalars)


def as_rows(array):
    """A (rows, columns) view of a parameter-shaped array."""
    return array.reshape(array.shape[0], -1)
