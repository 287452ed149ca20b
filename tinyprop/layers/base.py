"""The layer protocol of tinyprop's reverse-mode engine, and its argument checks."""
import numbers

import numpy as np


class Layer:
    """A step of the network with a hand-written backward.

    forward(x) computes the output and keeps, as named attributes, what backward needs.
    backward(dy, need_dx=True) takes dL/d(output), adds (+=) the parameters' gradients
    and returns dL/dx, or None when the caller says it needs none (the first layer).
    Gradients accumulate until they are cleared by `zero_grad`.
    Calling a layer runs its forward: `layer(x)` is `layer.forward(x)`, as in PyTorch.

    What forward and backward return is the caller's to keep: a later call does not change it.
    (A layer that passes its argument through, Reshape or Dropout when off, may return that
    argument or a view of it.) A loop that is done with each gradient once the layer below has
    used it, and with each output before the next forward, as the training loops are, may opt into
    reused buffers for speed: after `layer.reuse_buffers()` (undone by `reuse_buffers(False)`;
    `reusing_buffers` tells which), backward may return an array the layer keeps and overwrites at
    its next backward, and forward one it overwrites at its next forward. Linear's dx,
    Embeddings' output, Cube's and ReLU's output and dy, and the loss's probabilities and gradient use
    this today (at the parser's mini-batch they are 4 to 96 MB, which a fresh array would first page in;
    at MNIST's, allocations cost as much as the arithmetic); the other layers return fresh arrays
    either way.

    A layer made of layers (Sequential, BiLSTM, Embeddings) names them in `children()`; its parameters
    are theirs, and `train` and `reuse_buffers` pass the setting on to them.
    """

    training = True
    reusing_buffers = False

    def __call__(self, *inputs):
        # forward only: backward stays an explicit call, the step meProp changes
        return self.forward(*inputs)

    def children(self):
        """The layers this one is made of, in order; none for a layer of its own."""
        return []

    def params(self):
        return [param for child in self.children() for param in child.params()]

    def train(self, mode=True):
        """Switch training behaviour (dropout, meProp bookkeeping) on or off."""
        self.training = mode
        for child in self.children():
            child.train(mode)

    def reuse_buffers(self, mode=True):
        """Opt into (mode=False: out of) results that the layer's next backward (for what backward returns) or
        next forward (for what forward returns) overwrites."""
        self.reusing_buffers = mode
        for child in self.children():
            child.reuse_buffers(mode)

    def zero_grad(self):
        for param in self.params():
            param.zero_grad()

    def _kept_array(self, name, shape, dtype):
        """The array to return a result in: a fresh one, or, reusing buffers, the layer's own attribute `name`
        (made again when the shape or dtype changes)."""
        kept = getattr(self, name, None) if self.reusing_buffers else None
        if kept is None or kept.shape != shape or kept.dtype != dtype:
            kept = np.empty(shape, dtype=dtype)
        setattr(self, name, kept if self.reusing_buffers else None)
        return kept


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
    check_meprop_dtype(owner, dtype)


def check_meprop_dtype(owner, dtype):
    """meProp layers compute in float32: the top-k heap's keys are float32 bit patterns."""
    if np.dtype(dtype) != np.float32:
        raise ValueError(f"{owner}: meProp layers compute in float32, got dtype {np.dtype(dtype)}")


def check_input(owner, x, shape):
    """Chainer-style check: x must be a float array of `shape`, in which a name ("batch") stands
    for a size that may be anything."""
    got_shape = getattr(x, "shape", None)
    fits = (got_shape is not None and len(got_shape) == len(shape) and x.dtype.kind == "f"
            and all(isinstance(want, str) or got == want for got, want in zip(got_shape, shape)))
    if not fits:
        got = f"{x.dtype} array of shape {got_shape}" if got_shape is not None else type(x).__name__
        raise ValueError(f"{owner}: expected a float array x of shape ({', '.join(map(str, shape))}), got {got}")


def check_float_kernel_input(owner, array):
    """The element-wise kernels (tinyprop.kernels) compute in float32 or float64, the dtype they are given."""
    if array.dtype not in (np.float32, np.float64):
        raise ValueError(f"{owner}: expected a float32 or float64 array, got {array.dtype}")


def check_forward_done(owner, kept):
    """backward works on what forward kept: without it, say so rather than fail on None."""
    if kept is None:
        raise RuntimeError(f"{owner}: backward needs the state of a forward (in training mode); call forward first")


def check_same_shape(owner, dy, expected):
    if dy.shape != expected:
        raise ValueError(f"{owner}: gradient of shape {dy.shape} does not match the output's {expected}; "
                         "call backward with dL/d(output) of the last forward")
