"""Element-wise non-linearities z = sigma(y) (TKDE 2018, eq. 2), and dropout.

meProp leaves these dense (Section 2.3.1): they cost little next to the matrix products.
Shapes: any; dy has the shape of the output.
"""
import numpy as np

from tinyprop.kernels import cube, cube_grad, drop_out, relu, relu_grad
from tinyprop.layers.base import Layer, check_float_kernel_input, check_forward_done, check_same_shape


class ReLU(Layer):
    """z = max(y, 0), as NumPy's y * (y > 0); dz/dy = (y > 0).

    Both computed by tinyprop.kernels.relu and relu_grad in one pass on the threads, with NumPy's bits.
    Kept for backward: `active`, the mask y > 0.
    """

    active = None

    def forward(self, y):
        y = np.asarray(y)
        check_float_kernel_input("ReLU", y)
        self.active = self._kept_array("_active", y.shape, np.bool_)
        z = self._kept_array("_z", y.shape, y.dtype)
        relu(np.ascontiguousarray(y).reshape(-1), z.reshape(-1), self.active.reshape(-1))
        return z

    def backward(self, dz, need_dx=True):
        check_forward_done("ReLU", self.active)
        check_same_shape("ReLU", dz, self.active.shape)
        if not need_dx:
            return None
        dz = np.asarray(dz)
        check_float_kernel_input("ReLU", dz)
        dy = self._kept_array("_dy", dz.shape, dz.dtype)
        relu_grad(np.ascontiguousarray(dz).reshape(-1), self.active.reshape(-1), dy.reshape(-1))
        return dy


class Tanh(Layer):
    """z = tanh(y); dz/dy = 1 - z^2. Kept for backward: the output `z`."""

    z = None

    def forward(self, y):
        self.z = np.tanh(y)
        return self.z

    def backward(self, dz, need_dx=True):
        check_forward_done("Tanh", self.z)
        check_same_shape("Tanh", dz, self.z.shape)
        return dz * (1 - self.z * self.z) if need_dx else None


class Sigmoid(Layer):
    """z = 1 / (1 + exp(-y)); dz/dy = z (1 - z). Kept for backward: the output `z`."""

    z = None

    def forward(self, y):
        self.z = 0.5 * (1 + np.tanh(0.5 * y))  # the same function, without overflow in exp
        return self.z

    def backward(self, dz, need_dx=True):
        check_forward_done("Sigmoid", self.z)
        check_same_shape("Sigmoid", dz, self.z.shape)
        return dz * self.z * (1 - self.z) if need_dx else None


class Cube(Layer):
    """z = y^3, the activation of Chen and Manning's (2014) parser; dz/dy = 3 y^2.

    NumPy's y * y * y and 3 * y * y * dz, computed by tinyprop.kernels.cube and cube_grad in one pass on the
    threads, with the same bits. Kept for backward: the input `y`.
    """

    y = None

    def forward(self, y):
        self.y = y = np.ascontiguousarray(y)
        check_float_kernel_input("Cube", y)
        z = self._kept_array("_z", y.shape, y.dtype)
        cube(y.reshape(-1), z.reshape(-1))
        return z

    def backward(self, dz, need_dx=True):
        check_forward_done("Cube", self.y)
        check_same_shape("Cube", dz, self.y.shape)
        if dz.dtype != self.y.dtype:  # the kernel would round dz to y's type
            raise ValueError(f"Cube: dz must have the input's dtype {self.y.dtype}, got {dz.dtype}")
        if not need_dx:
            return None
        dy = self._kept_array("_dy", self.y.shape, self.y.dtype)
        cube_grad(self.y.reshape(-1), np.ascontiguousarray(dz).reshape(-1), dy.reshape(-1))
        return dy


class Dropout(Layer):
    """Inverted dropout: in training, z = y * m / (1 - p) with m ~ Bernoulli(1 - p); identity in evaluation.

    Each forward draws one key from `rng`; entry i is kept when its uniform, a hash of the key and i
    (tinyprop.reference.dropout_uniforms), is at least p. tinyprop.kernels.drop_out computes the mask,
    the scale and z in one pass on the threads, where NumPy's generator would draw the uniforms on one
    (docs/performance.md, "The parser on two threads"), with the same mask on any number.

    Kept for backward: `scale`, the mask already divided by (1 - p) (None: identity), and the
    output's `shape`.
    """

    def __init__(self, p, rng=None):
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: the rate p must be in [0, 1), got {p!r}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()
        self.scale = self.shape = None

    def forward(self, y):
        self.shape = y.shape
        if not self.training or self.p == 0:
            self.scale = None
            return y
        check_float_kernel_input("Dropout", y)
        y = np.ascontiguousarray(y)
        self.scale, z = np.empty_like(y), np.empty_like(y)
        drop_out(y.reshape(-1), self.p, self.rng.integers(2 ** 64, dtype=np.uint64), self.scale.reshape(-1),
                 z.reshape(-1))
        return z

    def backward(self, dz, need_dx=True):
        check_forward_done("Dropout", self.shape)
        check_same_shape("Dropout", dz, self.shape)
        if not need_dx:
            return None
        return dz if self.scale is None else dz * self.scale
