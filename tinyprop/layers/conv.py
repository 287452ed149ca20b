"""Convolution through im2col, max pooling and reshaping, with spatial top-k meProp."""
import math
import numbers
import time

import numpy as np

from tinyprop.kernels import add_selected_positions_grad, add_selected_positions_input_grad, col2im_add, im2col_copy
from tinyprop.layers.base import (Layer, check_forward_done, check_input, check_meprop_dtype, check_positive_int,
                                  check_same_shape)
from tinyprop.parameter import Parameter, glorot_normal
from tinyprop.topk import topk_rows


def output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kernel, stride, padding):
    """x: (batch, channels, H, W) -> patches (batch, H_out * W_out, channels * kernel * kernel)."""
    batch, channels, height, width = x.shape
    # the kernel reads each example as one flat array; np.pad keeps a Fortran-ordered input's order
    padded = np.ascontiguousarray(np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))))
    out_h = output_size(height, kernel, stride, padding)
    out_w = output_size(width, kernel, stride, padding)
    cols = np.empty((batch, out_h * out_w, channels * kernel * kernel), dtype=x.dtype)
    im2col_copy(padded, kernel, stride, out_w, cols)
    return cols


def padded_zeros(x_shape, padding, dtype):
    batch, channels, height, width = x_shape
    return np.zeros((batch, channels, height + 2 * padding, width + 2 * padding), dtype=dtype)


def unpad(padded, padding):
    return padded[:, :, padding:padded.shape[2] - padding, padding:padded.shape[3] - padding]


def col2im(dcols, x_shape, kernel, stride, padding):
    """The adjoint of im2col: add each patch's gradient back onto the input positions it came from."""
    padded = padded_zeros(x_shape, padding, dcols.dtype)
    col2im_add(np.ascontiguousarray(dcols), kernel, stride, output_size(x_shape[3], kernel, stride, padding), padded)
    return unpad(padded, padding)


class Conv2d(Layer):
    """2-d convolution (cross-correlation) with square kernels, computed on im2col patches.

    x: (batch, C_in, H, W) -> y: (batch, C_out, H_out, W_out), H_out = (H + 2 padding - kernel) // stride + 1.
    W is (C_out, C_in * kernel * kernel): one row per output channel, so that with
    cols = im2col(x), y[b, c, p] = W[c] . cols[b, p] + b[c] (the matrix form of Section 3.3.2).

    ratio=None: dense backward by BLAS. With a ratio, spatial top-k meProp (TKDE 2018,
    Section 3.3.2, Table 8; eqs. 9, 10 at each position): for each example and output channel, only
    the k = ceil(ratio * H_out * W_out) positions of dy with the largest magnitude take part,
    and the Numba kernels in tinyprop.kernels touch only those positions: dW from their
    patches, and dx by laying dy[b, c, p] W[c] back onto each one's patch (col2im restricted
    to the selected positions). The bias gradient stays dense, as for Linear. The plain forms are
    tinyprop.reference.conv_forward and conv_backward (with topk_mask's positions).

    Kept for backward: `cols` (the input's patches) and the input shape. Kept after
    backward: `selected`, (batch, C_out, k) positions. `backward_seconds` as in Linear.
    """

    def __init__(self, in_channels, out_channels, kernel, stride=1, padding=0, ratio=None, rng=None,
                 dtype=np.float32, name="conv"):
        for argument, value in (("in_channels", in_channels), ("out_channels", out_channels),
                                ("kernel", kernel), ("stride", stride)):
            check_positive_int(name, argument, value)
        if not isinstance(padding, numbers.Integral) or isinstance(padding, bool) or padding < 0:
            raise ValueError(f"{name}: padding must be an integer >= 0, got {padding!r}")
        if ratio is not None and not 0 < ratio <= 1:
            raise ValueError(f"{name}: the top-k ratio must be in (0, 1], got {ratio!r}")
        if ratio is not None:
            check_meprop_dtype(name, dtype)
        self.name = name
        self.in_channels, self.kernel, self.stride, self.padding, self.ratio = in_channels, kernel, stride, padding, ratio
        rng = rng if rng is not None else np.random.default_rng()
        fan_in, fan_out = in_channels * kernel * kernel, out_channels * kernel * kernel
        self.weight = Parameter(glorot_normal(rng, out_channels, fan_in, fan_out, dtype), f"{name}.weight")
        self.bias = Parameter(np.zeros(out_channels, dtype=dtype), f"{name}.bias")
        self.cols = None
        self.x_shape = None
        self.selected = None
        self.backward_seconds = 0.0
        self._heap = np.empty(1, dtype=np.uint64)

    @property
    def out_channels(self):
        return self.weight.shape[0]

    def params(self):
        return [self.weight, self.bias]

    def forward(self, x):
        check_input(self.name, x, ("batch", self.in_channels, "H", "W"))
        if min(x.shape[2:]) + 2 * self.padding < self.kernel:
            raise ValueError(f"{self.name}: the input's {x.shape[2]}x{x.shape[3]} (padding {self.padding}) is "
                             f"smaller than the {self.kernel}x{self.kernel} kernel")
        x = np.asarray(x, dtype=self.weight.value.dtype)
        self.x_shape = x.shape
        self.cols = im2col(x, self.kernel, self.stride, self.padding)
        y = self.cols @ self.weight.value.T + self.bias.value  # (batch, positions, C_out)
        return np.ascontiguousarray(y.transpose(0, 2, 1)).reshape((x.shape[0], self.out_channels) + self._out_hw())

    def backward(self, dy, need_dx=True):
        check_forward_done(self.name, self.cols)
        batch, positions = self.cols.shape[:2]
        check_same_shape(self.name, dy, (batch, self.out_channels) + self._out_hw())
        start = time.perf_counter()
        dy = np.ascontiguousarray(dy).reshape(batch, self.out_channels, positions)
        self.bias.grad += dy.sum(axis=(0, 2))  # dense, as Linear's bias
        dx = None
        if self.ratio is None:
            dy_rows = dy.transpose(0, 2, 1).reshape(batch * positions, self.out_channels)
            self.weight.grad += dy_rows.T @ self.cols.reshape(batch * positions, -1)
            if need_dx:
                dcols = (dy_rows @ self.weight.value).reshape(self.cols.shape)
                dx = col2im(dcols, self.x_shape, self.kernel, self.stride, self.padding)
        else:
            k = math.ceil(round(self.ratio * positions, 9))  # 0.07 x 100 is 7.000000000000001 in floats
            if self._heap.shape[0] < k:
                self._heap = np.empty(k, dtype=np.uint64)
            selected = np.empty((batch * self.out_channels, k), dtype=np.int32)
            topk_rows(dy.reshape(batch * self.out_channels, positions), k, self._heap, selected)
            self.selected = selected.reshape(batch, self.out_channels, k)
            add_selected_positions_grad(dy, self.cols, self.selected, self.weight.grad)
            if need_dx:
                padded = padded_zeros(self.x_shape, self.padding, dy.dtype)
                add_selected_positions_input_grad(dy, self.weight.value, self.selected, self.kernel, self.stride,
                                                  self._out_hw()[1], padded)
                dx = unpad(padded, self.padding)
        self.weight.mark_all_rows()  # every channel selects k positions, so every row gets gradient
        self.bias.mark_all_rows()
        self.backward_seconds += time.perf_counter() - start
        return dx

    def _out_hw(self):
        return tuple(output_size(size, self.kernel, self.stride, self.padding) for size in self.x_shape[2:])

    def __repr__(self):
        sparsity = "" if self.ratio is None else f", ratio={self.ratio}"
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel={self.kernel}, stride={self.stride}, "
                f"padding={self.padding}{sparsity})")


class MaxPool2d(Layer):
    """Max over non-overlapping size x size windows. x: (batch, C, H, W) with H, W divisible by size.

    Each window offset (u, v) is a strided view x[:, :, u::size, v::size]; the output is
    their running maximum. Kept for backward (in training): `winner`, which offset held
    each window's maximum (the first, on ties); the gradient goes to that position only.
    """

    def __init__(self, size=2):
        check_positive_int("MaxPool2d", "size", size)
        self.size = size
        self.offsets = [(u, v) for u in range(size) for v in range(size)]
        self.x_shape = self.winner = None

    def forward(self, x):
        check_input("MaxPool2d", x, ("batch", "C", "H", "W"))
        height, width = x.shape[2:]
        s = self.size
        if height % s or width % s:
            raise ValueError(f"MaxPool2d: the input's {height}x{width} is not divisible by the window {s}")
        self.x_shape = x.shape
        best = x[:, :, ::s, ::s].copy()
        self.winner = np.zeros(best.shape, dtype=np.int16) if self.training else None
        for index, (u, v) in enumerate(self.offsets[1:], 1):
            candidate = x[:, :, u::s, v::s]
            if self.training:
                better = candidate > best
                self.winner[better] = index
            np.maximum(best, candidate, out=best)
        return best

    def backward(self, dy, need_dx=True):
        check_forward_done("MaxPool2d", self.winner)
        batch, channels, height, width = self.x_shape
        s = self.size
        check_same_shape("MaxPool2d", dy, (batch, channels, height // s, width // s))
        if not need_dx:
            return None
        dx = np.empty(self.x_shape, dtype=dy.dtype)
        for index, (u, v) in enumerate(self.offsets):
            dx[:, :, u::s, v::s] = np.where(self.winner == index, dy, 0)
        return dx


class Reshape(Layer):
    """x: (batch, ...) -> (batch, *shape); backward restores the input's shape. Reshape((-1,)) flattens."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        if self.shape.count(-1) > 1 or any(size < 1 and size != -1 for size in self.shape):
            raise ValueError(f"Reshape: sizes must be positive, with at most one -1, got {self.shape}")
        self.x_shape = None

    def forward(self, x):
        self.x_shape = x.shape
        size, known = math.prod(x.shape[1:]), math.prod(size for size in self.shape if size != -1)
        if size % known or (-1 not in self.shape and size != known):
            raise ValueError(f"Reshape: an example of shape {x.shape[1:]} does not fit the shape {self.shape}")
        # the -1 worked out here: numpy cannot infer it for an empty batch
        return x.reshape((x.shape[0],) + tuple(size // known if dim == -1 else dim for dim in self.shape))

    def backward(self, dy, need_dx=True):
        check_forward_done("Reshape", self.x_shape)
        return dy.reshape(self.x_shape) if need_dx else None
