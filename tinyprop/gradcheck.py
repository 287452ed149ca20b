"""Central-difference gradient checks for layers with a hand-written backward.

For a layer f and a fixed random R, let L(x, params) = sum(R * f(x)). Then backward(R)
must return dL/dx and add dL/dp to each parameter's gradient; each entry is compared
with the central difference (L(v + h) - L(v - h)) / 2h, whose error is O(h^2).
Run it in float64: in float32 the rounding error of L swamps the difference.
"""
import numpy as np


def numerical_gradient(loss, array, h=1e-6):
    """dloss/darray by central differences, perturbing `array` in place one entry at a time."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + h
        above = loss()
        array[index] = original - h
        below = loss()
        array[index] = original
        grad[index] = (above - below) / (2 * h)
    return grad


def grad_check(layer, x, seed=0, h=1e-6):
    """Largest absolute difference between backward's gradients and central differences.

    Returns {"x": error, param.name: error, ...}. The layer must be deterministic
    between calls of forward (reseed dropout, or leave it out).
    """
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)
    weights = rng.standard_normal(layer.forward(x).shape)
    layer.zero_grad()
    analytic = {"x": layer.backward(weights)}
    analytic.update({param.name: param.grad.copy() for param in layer.params()})

    def loss():
        return float((layer.forward(x) * weights).sum())

    numeric = {"x": numerical_gradient(loss, x, h)}
    numeric.update({param.name: numerical_gradient(loss, param.value, h) for param in layer.params()})
    return {name: float(np.max(np.abs(analytic[name] - numeric[name]))) for name in numeric}
