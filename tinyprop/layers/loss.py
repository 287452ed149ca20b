"""Softmax with cross-entropy, the loss of the papers' classifiers."""
import numpy as np

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
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(f"SoftmaxCrossEntropy: labels must lie in [0, {logits.shape[1]}), "
                             f"got values from {labels.min()} to {labels.max()}")
        if self.reduction == "mean" and not labels.size:
            raise ValueError("SoftmaxCrossEntropy: the mean over an empty mini-batch is undefined")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_probs = shifted - log_norm
        self.probs = np.exp(log_probs)
        self.labels = labels
        self.scale = 1.0 if self.reduction == "sum" else 1.0 / labels.shape[0]
        return float(-log_probs[np.arange(labels.shape[0]), labels].sum()) * self.scale

    def backward(self):
        check_forward_done("SoftmaxCrossEntropy", self.probs)
        dz = self.probs.copy()
        dz[np.arange(self.labels.shape[0]), self.labels] -= 1
        dz *= self.scale
        return dz
