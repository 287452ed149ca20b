"""Softmax with cross-entropy, the loss of the papers' classifiers."""
import numpy as np

from tinyprop.kernels import softmax_cross_entropy, softmax_cross_entropy_grad
from tinyprop.layers.base import Layer, check_forward_done

REDUCTIONS = ("sum", "mean")


class SoftmaxCrossEntropy(Layer):
    """L = sum (or mean) over the mini-batch of -log softmax(z_b)[t_b].

    z: (batch, classes) logits, t: (batch,) integer labels. forward(z, t) (or calling the loss)
    returns L as a float; backward() returns dL/dz (batch, classes): softmax(z_b) - onehot(t_b)
    with reduction="sum", that divided by the batch size with reduction="mean".

    Sum is the default because it is nnmnist's: its backward does not divide by the batch size,
    and it clips the summed gradients (ClipBound), so the papers' learning rates and clip bounds
    assume summed gradients. "mean" is PyTorch's default; with it the same learning rate, clip
    bound and L2 factor act on gradients batch-size times smaller (SGD's steps shrink by as much).
    The loss ends the network, so its backward takes no dy.

    This is tinyprop.reference.softmax_cross_entropy, computed by tinyprop.kernels.softmax_cross_entropy and
    softmax_cross_entropy_grad a row at a time on the threads, not by NumPy's nine passes over the batch.

    Kept for backward: `probs` (batch, classes), `labels` and `scale` (1 or 1/batch).
    """

    probs = None

    def __init__(self, reduction="sum"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"SoftmaxCrossEntropy: reduction must be 'sum' or 'mean', got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits, labels):
        logits, labels = np.asarray(logits), np.asarray(labels)
        if logits.ndim != 2 or labels.shape != (logits.shape[0],) or labels.dtype.kind not in "iu":
            raise ValueError(f"SoftmaxCrossEntropy: expected logits (batch, classes) and integer labels (batch,), "
                             f"got {logits.shape} and {labels.dtype} {labels.shape}")
        if logits.dtype not in (np.float32, np.float64):
            logits = logits.astype(np.float64)  # integers, float16: the kernel computes in float32 or float64
        if self.reduction == "mean" and not labels.size:
            raise ValueError("SoftmaxCrossEntropy: the mean over an empty mini-batch is undefined")
        self.probs = self._kept_array("_probs", logits.shape, logits.dtype)
        losses = self._kept_array("_losses", labels.shape, logits.dtype)
        bad = softmax_cross_entropy(np.ascontiguousarray(logits), labels, self.probs, losses)
        if bad >= 0:
            self.probs = None
            raise ValueError(f"SoftmaxCrossEntropy: labels must lie in [0, {logits.shape[1]}), "
                             f"got {labels[bad]} at position {bad}")
        self.labels = labels
        self.scale = 1.0 if self.reduction == "sum" else 1.0 / labels.shape[0]
        return float(losses.sum()) * self.scale

    def backward(self):
        check_forward_done("SoftmaxCrossEntropy", self.probs)
        dz = self._kept_array("_dz", self.probs.shape, self.probs.dtype)
        softmax_cross_entropy_grad(self.probs, self.labels, self.scale, dz)
        return dz
