"""A chain of layers: the reverse-mode tape of a feed-forward network."""
from tinyprop.layers.base import Layer


class Sequential(Layer):
    """Runs layers in order; backward runs them in reverse, each taking the gradient the next one returned.

    A layer computes dL/dx only if some layer before it has parameters, or the caller asks
    for it (need_dx): the first Linear of an MLP, or the first convolution after a reshape,
    computes only its parameters' gradients.
    """

    def __init__(self, layers):
        self.layers = list(layers)
        self._params_before = [any(layer.params() for layer in self.layers[:position])
                               for position in range(len(self.layers))]

    def children(self):
        return self.layers

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy, need_dx=True):
        for position in range(len(self.layers) - 1, -1, -1):
            dy = self.layers[position].backward(dy, need_dx=need_dx or self._params_before[position])
        return dy
