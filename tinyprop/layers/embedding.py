"""Lookup tables: word (and feature) embeddings."""
import numba
import numpy as np

from tinyprop.kernels import add_to_looked_up_rows, copy_looked_up_rows
from tinyprop.layers.base import Layer, check_forward_done, check_positive_int, check_same_shape
from tinyprop.parameter import Parameter


class Embedding(Layer):
    """ids: (batch, n) integers -> (batch, n * dim): the rows E[ids] side by side
    (tinyprop.reference.embedding_forward).

    backward adds each piece of dy onto the row it came from (tinyprop.reference.embedding_backward) and
    marks only the rows used, so that a sparse optimizer step touches just those. Both run tinyprop.kernels'
    loops on the threads, with no copy of the pieces: at the parser's mini-batch of 10,000 the output and dy
    are 96 MB each. Kept for backward: `ids`.
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

    def forward(self, ids, out=None):
        """`out`: None, or the array (batch, n * dim) to write the output into (Embeddings passes its columns)."""
        vocab_size, dim = self.weight.shape
        if (getattr(ids, "ndim", None) != 2 or ids.dtype.kind not in "iu"
                or (ids.size and (ids.min() < 0 or ids.max() >= vocab_size))):
            got = f"{ids.dtype} of shape {ids.shape}" if hasattr(ids, "shape") else type(ids).__name__
            raise ValueError(f"{self.name}: expected integer ids (batch, n) in [0, {vocab_size}), got {got}")
        self.ids = ids
        shape = (ids.shape[0], ids.shape[1] * dim)
        if out is None:
            out = np.empty(shape, dtype=self.weight.value.dtype)
        elif out.shape != shape or out.dtype != self.weight.value.dtype:  # the kernel would write past it
            raise ValueError(f"{self.name}: out must be {self.weight.value.dtype} of shape {shape}, got {out.dtype} "
                             f"of shape {out.shape}")
        copy_looked_up_rows(self.weight.value, ids, out)
        return out

    def backward(self, dy, need_dx=True):
        check_forward_done(self.name, self.ids)
        dim = self.weight.shape[1]
        check_same_shape(self.name, dy, (self.ids.shape[0], self.ids.shape[1] * dim))
        add_to_looked_up_rows(self.weight.grad, self.ids, dy, self.weight.rows_with_grad, numba.get_num_threads())
        return None


class Embeddings(Layer):
    """Several lookup tables side by side: ids (batch, sum of widths) -> (batch, sum of width_i * dim_i).

    Table i reads the next `widths[i]` columns of ids (a parser's 18 word features, say), and
    the outputs follow in the same order. backward hands each table its piece of dy.
    """

    def __init__(self, tables, widths):
        if not tables or len(tables) != len(widths):
            raise ValueError(f"Embeddings: one width for each of one or more tables, got {len(tables)} tables "
                             f"and {len(widths)} widths")
        for width in widths:
            check_positive_int("Embeddings", "each width", width)
        dtypes = {table.weight.value.dtype for table in tables}
        if len(dtypes) > 1:  # their outputs share one array
            raise ValueError(f"Embeddings: the tables must have one dtype, got {', '.join(sorted(map(str, dtypes)))}")
        self.tables, self.widths = list(tables), list(widths)
        self.ends = np.cumsum(self.widths)  # table i reads ids[:, ends[i] - widths[i]:ends[i]]
        self.output_widths = [width * table.weight.shape[1] for table, width in zip(self.tables, self.widths)]

    def params(self):
        return [param for table in self.tables for param in table.params()]

    def reuse_buffers(self, mode=True):
        self.reusing_buffers = mode
        for table in self.tables:
            table.reuse_buffers(mode)

    def forward(self, ids):
        if getattr(ids, "ndim", None) != 2 or ids.shape[1] != self.ends[-1]:
            got = f"shape {ids.shape}" if hasattr(ids, "shape") else type(ids).__name__
            raise ValueError(f"Embeddings: expected ids of shape (batch, {self.ends[-1]}), got {got}")
        out = self._kept_array("_out", (ids.shape[0], sum(self.output_widths)), self.tables[0].weight.value.dtype)
        column = 0
        for table, width, end, output_width in zip(self.tables, self.widths, self.ends, self.output_widths):
            table.forward(ids[:, end - width:end], out=out[:, column:column + output_width])
            column += output_width
        return out

    def backward(self, dy, need_dx=True):
        """Only the tables' gradients: ids have none."""
        ids = self.tables[0].ids
        check_forward_done("Embeddings", ids)
        check_same_shape("Embeddings", dy, (ids.shape[0], sum(self.output_widths)))
        for table, piece in zip(self.tables, np.split(dy, np.cumsum(self.output_widths)[:-1], axis=1)):
            table.backward(piece)
        return None
