"""The PyTorch-familiar surface: callable layers and loss, optimizer.zero_grad, the loss's reduction,
and what `import tinyprop as tp` gives."""
import subprocess
import sys

import numpy as np
import pytest

import tinyprop as tp
from tinyprop.layers import Linear, ReLU, Sequential, SoftmaxCrossEntropy
from tinyprop.optim import Adam


def separable_data(rng, n=200, features=20):
    """n points in two classes split by a random hyperplane, none closer to it than 0.5."""
    normal = rng.standard_normal(features)
    normal /= np.linalg.norm(normal)
    x = rng.standard_normal((n, features))
    distance = x @ normal
    x += np.outer(0.5 * np.sign(distance), normal)  # push every point 0.5 away from the plane
    return x.astype(np.float32), (distance > 0).astype(np.int64)


def test_a_pytorch_style_loop_trains_a_meprop_mlp_to_fit_separable_data(rng):
    x, y = separable_data(rng)
    model = Sequential([Linear(20, 32, k=4, rng=rng), ReLU(), Linear(32, 2, rng=rng)])
    loss_fn = SoftmaxCrossEntropy()
    optimizer = Adam(model.params(), lr=0.01)
    losses = []
    for epoch in range(30):
        order = rng.permutation(len(x))
        epoch_loss = 0.0
        for batch in np.array_split(order, 10):
            logits = model(x[batch])
            loss = loss_fn(logits, y[batch])
            model.backward(loss_fn.backward())
            optimizer.step()
            optimizer.zero_grad()
            epoch_loss += loss
        losses.append(epoch_loss)
    model.train(False)
    accuracy = (model(x).argmax(axis=1) == y).mean()
    assert accuracy == 1.0, f"training accuracy {accuracy}, losses {losses}"
    assert losses[-1] < losses[0] / 10


def test_calling_a_layer_or_a_sequential_runs_its_forward(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    linear = Linear(5, 4, k=2, rng=rng)
    model = Sequential([linear, ReLU()])
    np.testing.assert_allclose(linear(x), x @ linear.weight.value.T + linear.bias.value, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model(x), np.maximum(linear.forward(x), 0))


def test_mean_reduction_is_the_sum_over_the_batch_size(rng):
    logits = rng.standard_normal((5, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 1, 0])
    summed, mean = SoftmaxCrossEntropy(), SoftmaxCrossEntropy(reduction="mean")
    assert summed.reduction == "sum"
    assert mean(logits, labels) == pytest.approx(summed(logits, labels) / 5, rel=1e-6)
    np.testing.assert_allclose(mean.backward(), summed.backward() / 5, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "Mean", None])
def test_other_reductions_are_refused(reduction):
    with pytest.raises(ValueError, match=r"reduction must be 'sum' or 'mean', got"):
        SoftmaxCrossEntropy(reduction=reduction)


def test_the_mean_of_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match="empty mini-batch"):
        SoftmaxCrossEntropy(reduction="mean")(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))


def test_import_tinyprop_as_tp_gives_layers_optim_and_mesimp():
    from tinyprop import layers, mesimp, optim
    assert tp.layers is layers and tp.optim is optim
    assert tp.Simplifier is mesimp.Simplifier and tp.ColumnBlock is mesimp.ColumnBlock
    assert dir(tp) == sorted([*tp.__all__, "__version__"]) and {"layers", "optim", "Simplifier"} <= set(dir(tp))
    with pytest.raises(AttributeError, match="has no attribute 'Lienar'"):
        tp.Lienar


def test_the_command_line_still_starts_without_numpy():
    check = "import sys, tinyprop, tinyprop.cli; print('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
