"""Finite-difference checks of every layer's backward, and meProp against the dense math."""
import numpy as np
import pytest

import tinyprop.reference

from tinyprop.gradcheck import grad_check, numerical_gradient
from tinyprop.kernels import add_shared_rows_grad, shared_rows_input_grad
from tinyprop.layers import (LSTM, BiLSTM, Conv2d, Cube, Dropout, Embedding, Embeddings, Layer, Linear, MaxPool2d, ReLU,
                             Reshape, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh)
from tinyprop.optim import SGD
from tinyprop.parameter import Parameter
from tinyprop.reference import (dropout_uniforms, linear_backward, random_k_mask, selection_mask, topk_mask,
                                unified_topk_mask)

from support import numba_threads


def away_from_zero(rng, shape):
    """Inputs whose entries keep clear of ReLU's kink at 0, so central differences are valid."""
    x = rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
    return x


def test_linear_dense_gradients(rng):
    layer = Linear(5, 4, dtype=np.float64, rng=rng)
    layer.bias.value[:] = rng.standard_normal(4)
    errors = grad_check(layer, rng.standard_normal((3, 5)))
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("activation", [ReLU, Tanh, Sigmoid])
def test_activation_gradients(rng, activation):
    errors = grad_check(activation(), away_from_zero(rng, (4, 6)))
    assert errors["x"] < 1e-7


class ReseededDropout(Layer):
    """Dropout drawing the same mask at every forward, so that central differences apply."""

    def __init__(self, p):
        self.dropout = Dropout(p)

    def forward(self, x):
        self.dropout.rng = np.random.default_rng(7)
        return self.dropout.forward(x)

    def backward(self, dy, need_dx=True):
        return self.dropout.backward(dy, need_dx)


def test_dropout_gradient_and_scaling(rng):
    assert grad_check(ReseededDropout(0.4), rng.standard_normal((5, 8)))["x"] < 1e-7
    layer = Dropout(0.25, rng=rng)
    out = layer.forward(np.ones((200, 50), dtype=np.float32))
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs((out == 0).mean() - 0.25) < 0.02
    layer.train(False)
    x = rng.standard_normal((3, 4))
    assert layer.forward(x) is x


@pytest.mark.parametrize("threads", [1, 2])
def test_dropouts_mask_is_the_references_for_the_key_it_draws_on_any_number_of_threads(threads):
    """Entry i is kept when reference.dropout_uniforms' i-th uniform for the key drawn from the layer's generator
    is at least p; the kept ones share out 1 / (1 - p); a rate of 0.3 keeps 70% of 90,000 entries."""
    y = np.random.default_rng(1).standard_normal((300, 300)).astype(np.float32)
    with numba_threads(threads):
        z = Dropout(0.3, rng=np.random.default_rng(5)).forward(y)
    key = np.random.default_rng(5).integers(2 ** 64, dtype=np.uint64)
    keep = (dropout_uniforms(key, y.size) >= np.float32(0.3)).reshape(y.shape)
    np.testing.assert_array_equal(z, np.where(keep, y * (np.float32(1) / np.float32(0.7)), np.float32(0)))
    assert abs(keep.mean() - 0.7) < 5 * np.sqrt(0.21 / y.size)
    with pytest.raises(ValueError, match="Dropout: expected a float32 or float64 array, got float16"):
        Dropout(0.3).forward(y.astype(np.float16))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cube_is_numpys_y_cubed_and_3_y_squared_dz_bit_for_bit_on_any_number_of_threads(threads, dtype):
    rng = np.random.default_rng(4)
    y, dz = (rng.standard_normal((300, 70)).astype(dtype) * 3 for _ in range(2))
    layer = Cube()
    layer.reuse_buffers()
    with numba_threads(threads):
        z, dy = layer.forward(y[:, 10:]), layer.backward(dz[:, 10:])  # from non-contiguous views
    np.testing.assert_array_equal(z, y[:, 10:] * y[:, 10:] * y[:, 10:])
    np.testing.assert_array_equal(dy, 3 * y[:, 10:] * y[:, 10:] * dz[:, 10:])
    assert z.dtype == dy.dtype == dtype
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(ValueError, match=f"Cube: dz must have the input's dtype {np.dtype(dtype)}, got "
                                         f"{np.dtype(other)}"):
        layer.backward(dz[:, 10:].astype(other))


def test_a_layer_of_layers_passes_train_and_buffers_on_and_has_their_parameters_in_order(rng):
    tables = [Embedding(5, 3, rng=rng, name="a"), Embedding(4, 2, rng=rng, name="b")]
    model = Sequential([Embeddings(tables, [1, 2]), BiLSTM(7, 4, rng=rng), Dropout(0.5), Linear(8, 3, rng=rng)])
    leaves = tables + model.layers[1].directions + model.layers[2:]
    assert model.params() == [param for leaf in leaves for param in leaf.params()]
    model.train(False)
    model.reuse_buffers()
    assert [(leaf.training, leaf.reusing_buffers) for leaf in leaves] == [(False, True)] * len(leaves)
    model.layers[1].train(True)
    assert [lstm.training for lstm in model.layers[1].directions] == [True, True] and not tables[0].training


def test_sequential_gradients(rng):
    model = Sequential([Linear(6, 5, dtype=np.float64, rng=rng), Tanh(),
                        Linear(5, 4, dtype=np.float64, rng=rng), Sigmoid(),
                        Linear(4, 3, dtype=np.float64, rng=rng)])
    errors = grad_check(model, rng.standard_normal((2, 6)))
    assert max(errors.values()) < 1e-7, errors


def bits(array):
    return array.view(np.uint64 if array.dtype == np.float64 else np.uint32)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_is_numpys_y_times_its_mask_bit_for_bit_on_any_number_of_threads(threads, dtype):
    rng = np.random.default_rng(4)
    y, dz = (rng.standard_normal((300, 70)).astype(dtype) for _ in range(2))
    y[0, 10:14] = [0.0, -0.0, np.nan, -np.inf]  # -0 and NaN keep NumPy's signs and NaN
    layer = ReLU()
    layer.reuse_buffers()
    with numba_threads(threads):
        z, dy = layer.forward(y[:, 10:]).copy(), layer.backward(dz[:, 10:]).copy()
    with np.errstate(invalid="ignore"):  # -inf * 0
        np.testing.assert_array_equal(bits(z), bits(y[:, 10:] * (y[:, 10:] > 0)))
    np.testing.assert_array_equal(bits(dy), bits(dz[:, 10:] * (y[:, 10:] > 0)))
    assert z.dtype == dy.dtype == dtype
    assert ReLU().forward(np.array(2.5, dtype)).shape == ()  # a 0-d array stays 0-d
    with pytest.raises(ValueError, match="ReLU: expected a float32 or float64 array, got float16"):
        ReLU().forward(y.astype(np.float16))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_softmax_cross_entropy_is_the_reference_and_the_same_bits_on_any_number_of_threads(threads, dtype, reduction):
    rng = np.random.default_rng(6)
    logits = (rng.standard_normal((257, 11)) * 8).astype(dtype)
    labels = rng.integers(0, 11, 257)
    loss = SoftmaxCrossEntropy(reduction)
    with numba_threads(threads):
        value, dz = loss.forward(logits, labels), loss.backward().copy()
    with numba_threads(1):
        one_value, one_dz = loss.forward(logits, labels), loss.backward().copy()
    assert value == one_value
    np.testing.assert_array_equal(bits(dz), bits(one_dz))
    losses, probs = tinyprop.reference.softmax_cross_entropy(logits, labels)
    scale = 1.0 if reduction == "sum" else 1 / 257
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert value == pytest.approx(float(losses.sum()) * scale, rel=rtol)
    onehot = np.eye(11, dtype=dtype)[labels]
    np.testing.assert_allclose(dz, (probs - onehot) * dtype(scale), rtol=rtol, atol=rtol * scale)
    assert dz.dtype == dtype
    np.testing.assert_array_equal(bits(dz), bits((loss.probs - onehot) * dtype(scale)))  # NumPy's order and bits


def test_softmax_cross_entropy_gradient(rng):
    loss = SoftmaxCrossEntropy()
    logits = rng.standard_normal((4, 5)) * 3
    labels = np.array([0, 4, 2, 2])
    loss.forward(logits, labels)
    numeric = numerical_gradient(lambda: loss.forward(logits, labels), logits)
    loss.forward(logits, labels)
    assert np.max(np.abs(loss.backward() - numeric)) < 1e-7


def test_softmax_cross_entropy_value_and_bad_labels():
    loss = SoftmaxCrossEntropy()
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    assert loss.forward(logits, np.array([0, 2])) == pytest.approx(-np.log(0.5) - np.log(0.8))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got 3 at position 1"):
        loss.forward(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"got -1 at position 0"):
        loss.forward(logits, np.array([-1, 0]))


def test_first_layer_computes_no_input_gradient(rng):
    model = Sequential([Linear(4, 3, rng=rng), ReLU(), Linear(3, 2, k=1, rng=rng)])
    model.forward(rng.standard_normal((2, 4)).astype(np.float32))
    assert model.backward(np.ones((2, 2), np.float32), need_dx=False) is None


def test_shape_errors_are_readable(rng):
    layer = Linear(4, 3, name="hidden", rng=rng)
    with pytest.raises(ValueError, match=r"hidden: expected a float array x of shape \(batch, 4\)"):
        layer.forward(np.zeros((2, 5), np.float32))
    layer.forward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="does not match the output's"):
        layer.backward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="k=5 is larger than the layer's 3 outputs"):
        Linear(4, 3, k=5)
    with pytest.raises(ValueError, match="selection must be one of"):
        Linear(4, 3, k=2, selection="bottom")
    with pytest.raises(ValueError, match="float32"):
        Linear(4, 3, k=2, dtype=np.float64)


@pytest.mark.parametrize("layer", [Linear(4, 3), ReLU(), Tanh(), Sigmoid(), Cube(), Dropout(0.5), Reshape((-1,)),
                                   Embedding(5, 2), Embeddings([Embedding(5, 2)], [1]), Conv2d(1, 2, 3), MaxPool2d(),
                                   LSTM(4, 3), BiLSTM(4, 3)],
                         ids=lambda layer: type(layer).__name__)
def test_backward_before_forward_says_so(layer):
    with pytest.raises(RuntimeError, match="backward needs the state of a forward"):
        layer.backward(np.zeros((2, 3), np.float32))


def test_argument_errors_are_readable(rng):
    with pytest.raises(ValueError, match=r"expected a float array x of shape \(batch, 1, H, W\), got list"):
        Conv2d(1, 2, 3).forward([[0.0]])
    with pytest.raises(ValueError, match=r"MaxPool2d: expected a float array x of shape \(batch, C, H, W\)"):
        MaxPool2d().forward(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="padding must be an integer >= 0, got 1.5"):
        Conv2d(1, 2, 3, padding=1.5)
    with pytest.raises(ValueError, match=r"bilstm: hidden is one size or a pair \(forward, backward\)"):
        BiLSTM(4, (3, 3, 3))
    bilstm = BiLSTM(4, (3, 2))
    bilstm.forward(np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"bilstm: gradient of shape \(5, 3\) does not match the output's \(5, 5\)"):
        bilstm.backward(np.zeros((5, 3), np.float32))
    dropout = Dropout(0.5)
    dropout.forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="Dropout: gradient of shape"):
        dropout.backward(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="integer labels"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(RuntimeError, match="SoftmaxCrossEntropy: backward needs the state of a forward"):
        SoftmaxCrossEntropy().backward()
    assert SoftmaxCrossEntropy().forward(np.zeros((2, 3)), [0, 2]) == pytest.approx(2 * np.log(3))  # lists do
    with pytest.raises(ValueError, match="decay_steps must be positive"):
        SGD(Linear(2, 2).params(), lr=0.1, decay_steps=0)


def test_softmax_cross_entropy_shifts_each_row_by_its_own_maximum():
    loss = SoftmaxCrossEntropy().forward(np.array([[0.0, 1.0], [-1000.0, -999.0]]), np.array([1, 1]))
    assert loss == pytest.approx(2 * np.log1p(np.exp(-1.0)))  # a shift by the batch's maximum gives inf


def test_a_float64_input_to_a_float32_layer_computes_in_float32(rng):
    layer = Linear(4, 3, k=2, rng=rng)
    y = layer.forward(rng.standard_normal((2, 4)))
    assert y.dtype == np.float32 and layer.backward(np.ones((2, 3), np.float32)).dtype == np.float32


REFERENCE_MASKS = {"top": lambda dy, k, rng: topk_mask(dy, k),
                   "rand": lambda dy, k, rng: random_k_mask(rng, dy.shape[0], dy.shape[1], k),
                   "unified": lambda dy, k, rng: unified_topk_mask(dy, k)}


@pytest.mark.parametrize("selection", ["top", "rand", "unified"])
@pytest.mark.parametrize("n_in,n_out,batch,k", [(7, 5, 3, 1), (7, 5, 3, 4), (30, 41, 6, 40), (64, 50, 10, 8),
                                                (5, 2, 1, 1), (300, 41, 40, 7)])
def test_sparse_backward_equals_the_reference(rng, selection, n_in, n_out, batch, k):
    """Each selection picks what tinyprop.reference picks, and the gradients are the reference's, the dense
    backward of the masked dy (eqs. 9, 10), with the bias's gradient dense."""
    layer = Linear(n_in, n_out, k=k, selection=selection, rng=np.random.default_rng(n_in))
    layer.rng = np.random.default_rng(7)  # "rand" draws from it; the reference from a generator in the same state
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    dy = rng.standard_normal((batch, n_out)).astype(np.float32)
    layer.forward(x)
    dx = layer.backward(dy)
    mask = REFERENCE_MASKS[selection](dy, k, np.random.default_rng(7))
    assert np.array_equal(np.broadcast_to(selection_mask(layer.selected, n_out), dy.shape), mask)
    assert mask.sum() == batch * k
    dw, db, dx_ref = linear_backward(x.astype(np.float64), layer.weight.value.astype(np.float64),
                                     dy.astype(np.float64), mask)
    np.testing.assert_allclose(layer.weight.grad, dw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
    assert np.array_equal(layer.weight.rows_with_grad, mask.any(axis=0))
    np.testing.assert_allclose(layer.bias.grad, db, rtol=1e-5, atol=1e-5)
    assert layer.bias.rows_with_grad.all()


def test_unified_gradients_are_the_same_by_the_loops_and_by_blas(rng, monkeypatch):
    """Unified meProp computes dW and dx of a small batch by loops over W's rows, of a larger one by BLAS."""
    x = rng.standard_normal((10, 784)).astype(np.float32)
    dy = rng.standard_normal((10, 500)).astype(np.float32)
    loop_calls = []

    def counted(kernel):
        def call(*args):
            loop_calls.append(kernel.__name__)
            kernel(*args)
        return call
    for kernel in (add_shared_rows_grad, shared_rows_input_grad):
        monkeypatch.setattr(f"tinyprop.layers.linear.{kernel.__name__}", counted(kernel))
    results = []
    for limit in (10 * 784 * 4, 10 * 784 * 4 - 1):  # x just within the loops' limit, just above it
        monkeypatch.setattr("tinyprop.layers.linear.UNIFIED_LOOP_MAX_BYTES", limit)
        layer = Linear(784, 500, k=80, selection="unified", rng=np.random.default_rng(2))
        layer.forward(x)
        results.append((layer.backward(dy).copy(), layer.weight.grad, layer.weight.rows_with_grad))
    assert loop_calls == ["add_shared_rows_grad", "shared_rows_input_grad"]  # the first backward only
    mask = unified_topk_mask(dy, 80)
    assert np.flatnonzero(mask[0]).tolist() == layer.selected.tolist()
    dw, _, dx_ref = linear_backward(x.astype(np.float64), layer.weight.value.astype(np.float64),
                                    dy.astype(np.float64), mask)
    for dx, weight_grad, rows_with_grad in results:
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(weight_grad, dw, rtol=1e-4, atol=1e-5)
        assert np.array_equal(rows_with_grad, mask[0])


def test_rand_selection_is_reproducible_with_a_seed(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    dy = rng.standard_normal((4, 9)).astype(np.float32)
    picks = []
    for _ in range(2):
        layer = Linear(6, 9, k=3, selection="rand", rng=np.random.default_rng(5))
        layer.forward(x)
        layer.backward(dy)
        picks.append(layer.selected.copy())
    assert np.array_equal(picks[0], picks[1])


@pytest.mark.parametrize("selection", ["top", "unified"])
def test_k_equal_to_width_gives_exactly_the_dense_gradients(rng, selection):
    dense = Linear(12, 9, rng=np.random.default_rng(1))
    sparse = Linear(12, 9, k=9, selection=selection, rng=np.random.default_rng(1))
    x = rng.standard_normal((5, 12)).astype(np.float32)
    dy = rng.standard_normal((5, 9)).astype(np.float32)
    results = []
    for layer in (dense, sparse):
        layer.forward(x)
        dx = layer.backward(dy)
        results.append((layer.weight.grad, layer.bias.grad, dx))
    for dense_array, sparse_array in zip(*results):
        np.testing.assert_allclose(sparse_array, dense_array, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make_layer,x_shape", [(lambda rng: Linear(6, 5, k=2, rng=rng), (3, 6)),
                                                (lambda rng: Linear(6, 5, rng=rng), (3, 6)),
                                                (lambda rng: Conv2d(2, 3, 3, padding=1, rng=rng), (2, 2, 5, 4)),
                                                (lambda rng: LSTM(3, 4, rng=rng), (5, 3)),
                                                (lambda rng: LSTM(3, 4, k=2, rng=rng), (5, 3))],
                         ids=["linear-top", "linear", "conv", "lstm", "lstm-top"])
def test_gradients_accumulate_until_cleared(rng, make_layer, x_shape):
    layer = make_layer(rng)
    y = layer.forward(rng.standard_normal(x_shape).astype(np.float32))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    layer.backward(dy)
    once = [param.grad.copy() for param in layer.params()]
    layer.backward(dy)
    for param, first in zip(layer.params(), once):  # float32 sums in another order: not bit-equal
        np.testing.assert_allclose(param.grad, 2 * first, rtol=1e-5, atol=1e-6 * np.abs(first).max(),
                                   err_msg=param.name)
    layer.zero_grad()
    assert not any(param.grad.any() or param.rows_with_grad.any() for param in layer.params())


def test_numerical_gradient_leaves_the_array_as_it_was():
    array = np.array([1.0, 2.0, -3.0])
    grad = numerical_gradient(lambda: float((array ** 3).sum()), array, h=1e-3)
    assert array.tolist() == [1.0, 2.0, -3.0]
    np.testing.assert_allclose(grad, 3 * array ** 2, rtol=1e-6)


def test_grad_check_ignores_gradients_left_from_before():
    layer = Linear(3, 2, dtype=np.float64, rng=np.random.default_rng(0))
    layer.forward(np.ones((1, 3)))
    layer.backward(np.ones((1, 2)))  # stale gradients
    errors = grad_check(layer, np.random.default_rng(1).standard_normal((2, 3)))
    assert max(errors.values()) < 1e-7, errors


def test_sequential_train_false_reaches_every_layer():
    model = Sequential([Linear(4, 3, rng=np.random.default_rng(0)), ReLU(), Dropout(0.5, np.random.default_rng(1))])
    model.train(False)
    assert [layer.training for layer in model.layers] == [False, False, False]
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(model.forward(x), np.maximum(x @ model.layers[0].weight.value.T, 0), rtol=1e-6)
    model.train(True)
    assert all(layer.training for layer in model.layers)


def test_take_keeps_the_gradient_of_the_rows_kept():
    param = Parameter(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    param.grad[:] = np.arange(12).reshape(4, 3) * 10
    param.rows_with_grad[[1, 2]] = True
    param.take(np.array([0, 2]), axis=0)
    assert param.grad.tolist() == [[0, 10, 20], [60, 70, 80]] and param.rows_with_grad.tolist() == [False, True]
