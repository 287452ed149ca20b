"""Lookup tables: word (and feature) embeddings."""
import numpy as np

from tinyprop.kernels import add_to_rows
from tinyprop.layers.base import Layer, check_forward_done, check_positive_int, check_same_shape
from tinyprop.parameter import Parameter


class Embedding(Layer):
    """ids: (batch, n) integers -> (batch, n * dim): the rows E[ids] side by side.

    backward adds each piece of dy onto the row it came from and marks only the rows
    used, so that a sparse optimizer step touches just those. Kept for backward: `ids`.
    """

    def __init__(self, vocab_size, dim, scale=0.01, rng=None, dtype=np.float32, name="embedding"):
        check_positive_int(name, "vocab_size", vocab_size)
        check_positive_int(name, "dim", dim)
        self.name = name
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = Parameter(rng.uniform(-scale, scale, (vocab_size, dim)).astype(dtype), f"{name}.weight")
        self.ids = None

    def params(self):
        return [self.weight]

    def forward(self, ids):
        vocab_size, dim = self.weight.shape
        if (getattr(ids, "ndim", None) != 2 or ids.dtype.kind not in "iu"
                or (ids.size and (ids.min() < 0 or ids.max() >= vocab_size))):
            got = f"{ids.dtype} of shape {ids.shape}" if hasattr(ids, "shape") else type(ids).__name__
            raise ValueError(f"{self.name}: expected integer ids (batch, n) in [0, {vocab_size}), got {got}")
        self.ids = ids
        return self.weight.value[ids].reshape(ids.shape[0], ids.shape[1] * dim)

    def backward(self, dy, need_dx=True):
        check_forward_done(self.name, self.ids)
        dim = self.weight.shape[1]
        check_same_shape(self.name, dy, (self.ids.shape[0], self.ids.shape[1] * dim))
        rows = self.ids.ravel()
        add_to_rows(self.weight.grad, rows, np.ascontiguousarray(dy).reshape(rows.shape[0], dim),
                    self.weight.rows_with_grad)
        return None

