"""The layer protocol of tinyprop's reverse-mode engine, and its argument checks."""
import numbers

import numpy as np


class Layer:
    """A step of the network with a hand-written backward.

    forward(x) computes the output and keeps, as named attributes, what backward needs.
    backward(dy, need_dx=True) takes dL/d(output), adds (+=) the parameters' gradients
    and returns dL/dx, or None when the caller says it needs none (the first layer).
    Gradients accumulate until they are cleared by `zero_grad`.
    """

    training = True

    def params(self):
        return []

    def train(self, mode=True):
        """Switch training behaviour (dropout, meProp bookkeeping) on or off."""
        self.training = mode

    def zero_grad(self):
        for param in self.params():
            param.zero_grad()


def check_positive_int(owner, name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def check_meprop_k(owner, k, width, units, dtype):
    """k=None (dense) or 1 <= k <= width; meProp layers compute in float32 (the top-k keys need it)."""
    if k is None:
        return
    check_positive_int(owner, "k", k)
    if k > width:
        raise ValueError(f"{owner}: k={k} is larger than the layer's {width} {units}")
    if np.dtype(dtype) != np.float32:
        raise ValueError(f"{owner}: meProp layers compute in float32, got dtype {np.dtype(dtype)}")


def check_input(owner, x, width):
    """Chainer-style check: x must be a 2-d float array (batch, width)."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != width or x.dtype.kind != "f":
        got = f"{x.dtype} array of shape {shape}" if shape is not None else type(x).__name__
        raise ValueError(f"{owner}: expected a float array x of shape (batch, {width}), got {got}")


def check_same_shape(owner, dy, expected):
    if dy.shape != expected:
        raise ValueError(f"{owner}: gradient of shape {dy.shape} does not match the output's {expected}; "
                         "call backward with dL/d(output) of the last forward")
