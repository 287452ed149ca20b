"""Softmax with cross-entropy, the loss of the papers' classifiers."""
import numpy as np

from tinyprop.layers.base import check_forward_done


class SoftmaxCrossEntropy:
    """L = sum over the mini-batch of -log softmax(z_b)[t_b].

    z: (batch, classes) logits, t: (batch,) integer labels. The loss is summed, not
    averaged, over the mini-batch, as in nnmnist (whose backward does not divide by the
    batch size), so dL/dz_b = softmax(z_b) - onehot(t_b).

    Kept for backward: `probs` (batch, classes) and `labels`.
    """

    probs = None

    def forward(self, logits, labels):
        logits, labels = np.asarray(logits), np.asarray(labels)
        if logits.ndim != 2 or labels.shape != (logits.shape[0],) or labels.dtype.kind not in "iu":
            raise ValueError(f"SoftmaxCrossEntropy: expected logits (batch, classes) and integer labels (batch,), "
                             f"got {logits.shape} and {labels.dtype} {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(f"SoftmaxCrossEntropy: labels must lie in [0, {logits.shape[1]}), "
                             f"got values from {labels.min()} to {labels.max()}")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_probs = shifted - log_norm
        self.probs = np.exp(log_probs)
        self.labels = labels
        return float(-log_probs[np.arange(labels.shape[0]), labels].sum())

    def backward(self):
        check_forward_done("SoftmaxCrossEntropy", self.probs)
        dz = self.probs.copy()
        dz[np.arange(self.labels.shape[0]), self.labels] -= 1
        return dz
