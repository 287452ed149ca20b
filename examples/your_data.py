"""meProp on your own NumPy arrays.

Any float32 matrix x (examples, features) and int64 labels y will do; here they are a synthetic
classification set: 2,000 points in 50 dimensions around 5 random class prototypes, plus noise.
An MLP 50-200-200-5 trains with meProp on its hidden layers (Linear(..., k=20): each example's
backward keeps only the 20 largest of the 200 output gradients) and Adam, in mini-batches of 10.

Run: python examples/your_data.py   (prints train and held-out accuracy after each epoch)
"""
import numpy as np

import tinyprop as tp


def make_data(rng, n=2000, features=50, classes=5, noise=2.0):
    """Points around random class prototypes: x (n, features) float32, y (n,) int64."""
    prototypes = rng.standard_normal((classes, features))
    y = rng.integers(classes, size=n)
    x = prototypes[y] + noise * rng.standard_normal((n, features))
    return x.astype(np.float32), y.astype(np.int64)


def accuracy(model, x, y):
    return float((model(x).argmax(axis=1) == y).mean())


def main(epochs=4, k=20, seed=0):
    rng = np.random.default_rng(seed)
    x, y = make_data(rng)
    x_train, y_train, x_test, y_test = x[:1600], y[:1600], x[1600:], y[1600:]
    L = tp.layers
    model = L.Sequential([L.Linear(50, 200, k=k, rng=rng), L.ReLU(),
                          L.Linear(200, 200, k=k, rng=rng), L.ReLU(),
                          L.Linear(200, 5, rng=rng)])  # the output layer is small: dense backward
    loss_fn = L.SoftmaxCrossEntropy()
    optimizer = tp.optim.Adam(model.params(), lr=0.001)
    history = []
    for epoch in range(1, epochs + 1):
        for batch in np.array_split(rng.permutation(len(x_train)), len(x_train) // 10):
            loss_fn(model(x_train[batch]), y_train[batch])
            model.backward(loss_fn.backward())
            optimizer.step()
            optimizer.zero_grad()
        history.append((accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)))
        print(f"epoch {epoch}: train accuracy {history[-1][0]:.3f}, held-out accuracy {history[-1][1]:.3f}")
    return history


if __name__ == "__main__":
    main()
