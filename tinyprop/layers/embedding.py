"""Lookup tables: word (and feature) embeddings."""
import numpy as np

from tinyprop.kernels import add_to_looked_up_rows, copy_looked_up_rows
from tinyprop.layers.base import Layer, check_forward_done, check_positive_int, check_same_shape
from tinyprop.parameter import Parameter


class Embedding(Layer):
    """ids: (batch, n) integers -> (batch, n * dim): the rows E[ids] side by side
    (tinyprop.reference.embedding_forward).

    backward adds each piece of dy onto the row it came from (tinyprop.reference.embedding_backward) and
    marks only the rows used, so that a sparse optimizer step touches just those. Both run tinyprop.kernels'
    loops, with no copy of the pieces: at the parser's mini-batch of 10,000 the output and dy are 96 MB each.
    Kept for backward: `ids`.
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

    def check_ids(self, ids):
        vocab_size = self.weight.shape[0]
        if (getattr(ids, "ndim", None) != 2 or ids.dtype.kind not in "iu"
                or (ids.size and (ids.min() < 0 or ids.max() >= vocab_size))):
            got = f"{ids.dtype} of shape {ids.shape}" if hasattr(ids, "shape") else type(ids).__name__
            raise ValueError(f"{self.name}: expected integer ids (batch, n) in [0, {vocab_size}), got {got}")

    def forward(self, ids):
        self.check_ids(ids)
        self.ids = ids
        dim = self.weight.shape[1]
        out = np.empty((ids.shape[0], ids.shape[1] * dim), dtype=self.weight.value.dtype)
        copy_looked_up_rows((self.weight.value,), ids, *side_by_side([dim], [ids.shape[1]]), out)
        return out

    def backward(self, dy, need_dx=True):
        check_forward_done(self.name, self.ids)
        dim = self.weight.shape[1]
        check_same_shape(self.name, dy, (self.ids.shape[0], self.ids.shape[1] * dim))
        add_to_looked_up_rows((self.weight.grad,), self.ids, *side_by_side([dim], [self.ids.shape[1]]),
                              np.ascontiguousarray(dy), (self.weight.rows_with_grad,))
        return None


def side_by_side(dims, widths):
    """Where each column of ids goes, for tables of `dims` reading `widths` columns each, in order: (tables_of,
    starts), the table of column c and the first output column of its row (tinyprop.kernels.copy_looked_up_rows)."""
    tables_of = np.repeat(np.arange(len(dims)), widths)
    starts = np.concatenate([[0], np.cumsum(np.repeat(dims, widths))[:-1]])
    return tables_of.astype(np.int64), starts.astype(np.int64)


class Embeddings(Layer):
    """Several lookup tables side by side: ids (batch, sum of widths) -> (batch, sum of width_i * dim_i).

    Table i reads the next `widths[i]` columns of ids (a parser's 18 word features, say), and
    the outputs follow in the same order; one kernel call does them all (tinyprop.kernels). Kept for
    backward: `ids`.
    """

    ids = None

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
        self.width = sum(width * table.weight.shape[1] for table, width in zip(self.tables, self.widths))
        self.dims = [table.weight.shape[1] for table in self.tables]
        self.tables_of, self.starts = side_by_side(self.dims, self.widths)

    def children(self):
        return self.tables

    def forward(self, ids):
        if getattr(ids, "ndim", None) != 2 or ids.shape[1] != self.ends[-1]:
            got = f"shape {ids.shape}" if hasattr(ids, "shape") else type(ids).__name__
            raise ValueError(f"Embeddings: expected ids of shape (batch, {self.ends[-1]}), got {got}")
        if [table.weight.shape[1] for table in self.tables] != self.dims:  # the kernels would write past the output
            raise ValueError(f"Embeddings: the tables' widths changed from {self.dims} since the layer was made")
        for table, width, end in zip(self.tables, self.widths, self.ends):
            table.check_ids(ids[:, end - width:end])
        self.ids = ids
        out = self._kept_array("_out", (ids.shape[0], self.width), self.tables[0].weight.value.dtype)
        copy_looked_up_rows(tuple(table.weight.value for table in self.tables), ids, self.tables_of, self.starts, out)
        return out

    def backward(self, dy, need_dx=True):
        """Only the tables' gradients: ids have none."""
        check_forward_done("Embeddings", self.ids)
        check_same_shape("Embeddings", dy, (self.ids.shape[0], self.width))
        add_to_looked_up_rows(tuple(table.weight.grad for table in self.tables), self.ids, self.tables_of,
                              self.starts, np.ascontiguousarray(dy),
                              tuple(table.weight.rows_with_grad for table in self.tables))
        return None
