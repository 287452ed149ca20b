"""meSimp: shrink the hidden layers while training (TKDE 2018, Algorithm 2).

tp.Simplifier watches meProp's top-k choices: simplifier.observe() after each backward counts,
per hidden unit, the examples that had it in their top-k; simplifier.prune() (here every 400
examples) removes the units counted in fewer than rate x those examples, with the matching inputs
of the next layer, and clears the counts. The pruned model is smaller, so it also decodes faster.
Same data and MLP 50-200-200-5 (k=20) as examples/your_data.py.

Run: python examples/mesimp_shrink.py   (prints the hidden sizes, the held-out accuracy and decode speed-up)
"""
import time

import numpy as np

import tinyprop as tp


def make_data(rng, n=2000, features=50, classes=5, noise=2.0):
    """Points around random class prototypes, as in examples/your_data.py."""
    prototypes = rng.standard_normal((classes, features))
    y = rng.integers(classes, size=n)
    return (prototypes[y] + noise * rng.standard_normal((n, features))).astype(np.float32), y.astype(np.int64)


def mlp(rng, k=20):
    L = tp.layers
    return L.Sequential([L.Linear(50, 200, k=k, rng=rng), L.ReLU(), L.Linear(200, 200, k=k, rng=rng), L.ReLU(),
                         L.Linear(200, 5, rng=rng)])


def decode_seconds(model, x, repeats=200):
    """The best time of a forward over x, of `repeats`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return min(times)


def main(epochs=4, rate=0.1, prune_every=400, batch_size=10):
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    x_train, y_train, x_test, y_test = x[:1600], y[:1600], x[1600:], y[1600:]
    model = mlp(rng)
    linears = model.layers[::2]  # Linear, ReLU, Linear, ReLU, Linear
    simplifier = tp.Simplifier(zip(linears[:-1], linears[1:]), rate=rate)  # hidden layer -> the layer it feeds
    loss_fn, optimizer = tp.layers.SoftmaxCrossEntropy(), tp.optim.Adam(model.params(), lr=0.001)
    before, seen = simplifier.sizes(), 0
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(x_train)), len(x_train) // batch_size):
            loss_fn(model(x_train[batch]), y_train[batch])
            model.backward(loss_fn.backward())
            simplifier.observe()
            optimizer.step()
            optimizer.zero_grad()
            seen += len(batch)
            if seen % prune_every == 0:
                simplifier.prune()
    after = simplifier.sizes()
    accuracy = float((model(x_test).argmax(axis=1) == y_test).mean())
    speedup = decode_seconds(mlp(np.random.default_rng(1)), x_test) / decode_seconds(model, x_test)
    print(f"hidden sizes: {before} -> {after} ({simplifier.describe()})")
    print(f"held-out accuracy {accuracy:.3f}; decode speed-up over the unpruned sizes {speedup:.2f}x")
    return {"before": before, "after": after, "accuracy": accuracy, "speedup": speedup}


if __name__ == "__main__":
    main()
