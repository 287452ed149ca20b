"""A trainable tensor and everything that has its shape."""
import numpy as np
from numba import njit


def glorot_normal(rng, rows, fan_in, fan_out, dtype):
    """nnmnist's GlorotNormalInit: (rows, fan_in) weights, normal with standard deviation
    sqrt(6 / (fan_in + fan_out)), which is the bound of Glorot & Bengio's (2010) uniform init."""
    return rng.normal(0.0, np.sqrt(6.0 / (fan_in + fan_out)), (rows, fan_in)).astype(dtype)


def as_rows(array):
    """A (rows, columns) view of a parameter-shaped array: a bias is one column."""
    return array.reshape(array.shape[0], -1)


@njit(cache=True, inline="always")
def clear_row(grad, marked, r):
    """grad[r] = 0 and marked[r] = False: row r's gradient is used up. grad: (rows, columns); marked: (rows,) bool."""
    for j in range(grad.shape[1]):
        grad[r, j] = 0
    marked[r] = False


@njit(cache=True)
def clear_marked_rows(grad, marked):
    """clear_row for every marked row r. grad: (rows, columns); marked: (rows,) bool.

    One compiled call per parameter, after every mini-batch: faster than numpy's grad[marked] = 0
    on the MNIST MLP (docs/performance.md).
    """
    for r in range(grad.shape[0]):
        if marked[r]:
            clear_row(grad, marked, r)


class Parameter:
    """A layer's trainable tensor: its value, its gradient and its optimizer state, in one place.

    value, grad: (rows, ...) floats (float32 in training, float64 in gradient checks);
    a row is what sparse updates touch and meSimp removes: an output unit of a Linear layer, a
    word of an Embedding, one gate of one unit of an LSTM (meSimp removes a unit's four together).
    state: the optimizer's arrays (Adam's moments, AdaGrad's sums), each shaped like value.
    rows_with_grad: (rows,) bool, which rows received gradient since the last `zero_grad`;
    a sparse optimizer step updates only those rows.

    Keeping them together means that removing units (meSimp) is one slice applied to all.
    """

    def __init__(self, value, name):
        self.name = name
        self.value = np.ascontiguousarray(value)
        if self.value.dtype.kind != "f":
            raise TypeError(f"{name}: a parameter holds floats, got {self.value.dtype}")
        self.grad = np.zeros_like(self.value)
        self.state = {}
        self.rows_with_grad = np.zeros(self.value.shape[0], dtype=bool)

    @property
    def shape(self):
        return self.value.shape

    def mark_all_rows(self):
        self.rows_with_grad[:] = True

    def zero_grad(self):
        """Clear the gradient on the rows that received some, and the row marks."""
        clear_marked_rows(as_rows(self.grad), self.rows_with_grad)

    def take(self, index, axis):
        """Keep only `index` along `axis` in the value, the gradient and every state array (meSimp)."""
        if len(index) == 0:
            raise ValueError(f"{self.name}: cannot remove every unit; meSimp keeps at least one")

        def keep(array):
            return np.ascontiguousarray(np.take(array, index, axis=axis))
        self.value = keep(self.value)
        self.grad = keep(self.grad)
        self.state = {name: keep(array) for name, array in self.state.items()}
        if axis == 0:
            self.rows_with_grad = keep(self.rows_with_grad)

    def __repr__(self):
        return f"Parameter({self.name}, shape={self.shape})"
