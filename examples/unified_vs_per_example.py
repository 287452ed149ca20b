"""Per-example top-k against unified top-k.

meProp's per-example top-k (selection="top", the default) lets every example of a mini-batch keep
its own k gradient rows; unified top-k (selection="unified", ICML 2017 Section 3.3.1) keeps one set
of k rows for the whole mini-batch, those with the largest summed |gradient|, so the backward is a
product of dense k-row blocks. Both train the same MLP 50-200-200-5 (k=20 on the hidden layers) on
the same data as examples/your_data.py, from the same initial weights.

Run: python examples/unified_vs_per_example.py   (prints held-out accuracy and training seconds)
"""
import time

import numpy as np

import tinyprop as tp


NAMES = {"top": "per-example", "unified": "unified"}


def make_data(rng, n=2000, features=50, classes=5, noise=2.0):
    """Points around random class prototypes, as in examples/your_data.py."""
    prototypes = rng.standard_normal((classes, features))
    y = rng.integers(classes, size=n)
    return (prototypes[y] + noise * rng.standard_normal((n, features))).astype(np.float32), y.astype(np.int64)


def train(selection, x, y, epochs, k=20, seed=1):
    """Train an MLP with meProp of the given selection; returns it and the seconds the training took."""
    rng = np.random.default_rng(seed)  # the same weights and batch order for both selections
    L = tp.layers
    model = L.Sequential([L.Linear(50, 200, k=k, selection=selection, rng=rng), L.ReLU(),
                          L.Linear(200, 200, k=k, selection=selection, rng=rng), L.ReLU(), L.Linear(200, 5, rng=rng)])
    loss_fn, optimizer = L.SoftmaxCrossEntropy(), tp.optim.Adam(model.params(), lr=0.001)
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(x)), len(x) // 10):
            loss_fn(model(x[batch]), y[batch])
            model.backward(loss_fn.backward())
            optimizer.step()
            optimizer.zero_grad()
    return model, time.perf_counter() - start


def main(epochs=4):
    x, y = make_data(np.random.default_rng(0))
    results = {}
    for selection in ("top", "unified"):
        train(selection, x[:100], y[:100], epochs=1)  # warm-up: load the compiled kernels before timing
        model, seconds = train(selection, x[:1600], y[:1600], epochs)
        results[selection] = (float((model(x[1600:]).argmax(axis=1) == y[1600:]).mean()), seconds)
        print(f"{NAMES[selection]:>11} top-k: held-out accuracy {results[selection][0]:.3f}, training {seconds:.2f} s")
    return results


if __name__ == "__main__":
    main()
