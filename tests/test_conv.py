"""Conv2d, MaxPool2d and Reshape: finite differences, and the convolution and its spatial top-k backward
against tinyprop.reference's definitions."""
import math

import numpy as np
import pytest

from tinyprop.gradcheck import grad_check
from tinyprop.layers import Conv2d, MaxPool2d, Reshape, Sequential
from tinyprop.layers.conv import col2im, im2col
from tinyprop.reference import conv_backward, conv_forward, selection_mask, topk_mask

from support import numba_threads


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 0), (3, 2, 1), (5, 1, 2), (2, 2, 0)])
def test_forward_is_the_convolution(rng, kernel, stride, padding):
    layer = Conv2d(2, 3, kernel, stride, padding, dtype=np.float64, rng=rng)
    layer.bias.value[:] = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 7, 6))
    expected = conv_forward(x, layer.weight.value, layer.bias.value, kernel, stride, padding)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(expected.shape)
    dx = layer.backward(dy)  # dense: BLAS and col2im
    for got, want in zip((layer.weight.grad, layer.bias.grad, dx),
                         conv_backward(x, layer.weight.value, dy, kernel, stride, padding)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_col2im_is_the_adjoint_of_im2col(rng):
    x = rng.standard_normal((2, 3, 6, 5))
    cols = rng.standard_normal(im2col(x, 3, 2, 1).shape)
    assert np.isclose((im2col(x, 3, 2, 1) * cols).sum(), (x * col2im(cols, x.shape, 3, 2, 1)).sum())


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (3, 2, 1), (2, 1, 0)])
def test_conv_gradients(rng, kernel, stride, padding):
    layer = Conv2d(2, 3, kernel, stride, padding, dtype=np.float64, rng=rng)
    layer.bias.value[:] = rng.standard_normal(3)
    errors = grad_check(layer, rng.standard_normal((2, 2, 5, 6)))
    assert max(errors.values()) < 1e-7, errors


def test_maxpool_and_reshape_gradients(rng):
    x = rng.permutation(2 * 3 * 4 * 6).reshape(2, 3, 4, 6) / 10.0  # distinct values: no ties at the kink
    assert grad_check(MaxPool2d(2), x)["x"] < 1e-7
    model = Sequential([Reshape((3, 4, 6)), MaxPool2d(2), Reshape((-1,))])
    assert grad_check(model, x.reshape(2, -1))["x"] < 1e-7
    pooled = MaxPool2d(2).forward(x)
    assert np.array_equal(pooled, x.reshape(2, 3, 2, 2, 3, 2).max(axis=(3, 5)))


@pytest.mark.parametrize("ratio,kernel,stride,padding", [(0.05, 5, 1, 2), (0.3, 3, 2, 1), (1.0, 3, 1, 1),
                                                         (0.01, 3, 1, 0)])
def test_spatial_topk_is_the_references_backward_of_the_top_k_positions(rng, ratio, kernel, stride, padding):
    sparse = Conv2d(3, 4, kernel, stride, padding, ratio=ratio, rng=np.random.default_rng(1))
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    y = sparse.forward(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = sparse.backward(dy)
    positions = y.shape[2] * y.shape[3]
    k = math.ceil(round(ratio * positions, 9))
    mask = topk_mask(dy.reshape(2, 4, positions), k)  # per example and channel
    assert np.array_equal(selection_mask(sparse.selected, positions), mask)
    dW, db, dx_ref = conv_backward(x.astype(np.float64), sparse.weight.value.astype(np.float64), dy.astype(np.float64),
                                   kernel, stride, padding, mask.reshape(dy.shape))
    np.testing.assert_allclose(sparse.weight.grad, dW, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sparse.bias.grad, db, rtol=1e-4, atol=1e-5)  # dense bias


def test_spatial_k_is_ratio_times_positions_rounded_up_without_float_noise():
    layer = Conv2d(1, 1, 1, ratio=0.07, rng=np.random.default_rng(0))
    y = layer.forward(np.random.default_rng(1).standard_normal((1, 1, 10, 10)).astype(np.float32))
    layer.backward(np.random.default_rng(2).standard_normal(y.shape).astype(np.float32))
    assert layer.selected.shape == (1, 1, 7)  # 0.07 x 100 is 7.000000000000001 in floats


def test_maxpool_gives_a_tied_window_gradient_to_its_first_position():
    pool = MaxPool2d(2)
    pool.forward(np.ones((1, 1, 2, 2), np.float32))
    assert pool.backward(np.full((1, 1, 1, 1), 5.0, np.float32))[0, 0].tolist() == [[5.0, 0.0], [0.0, 0.0]]


def test_a_float64_input_is_computed_in_the_layers_float32(rng):
    layer = Conv2d(1, 2, 3, padding=1, ratio=0.5, rng=rng)
    x = rng.standard_normal((2, 1, 4, 4))
    y = layer.forward(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, layer.forward(x.astype(np.float32)))
    assert layer.backward(np.ones_like(y)).dtype == np.float32


def test_an_empty_batch_goes_through_the_cnn(rng):
    model = Sequential([Conv2d(1, 2, 3, padding=1, ratio=0.5, rng=rng), MaxPool2d(2), Reshape((-1,))])
    assert model.forward(np.zeros((0, 1, 4, 4), np.float32)).shape == (0, 8)
    assert model.backward(np.zeros((0, 8), np.float32)).shape == (0, 1, 4, 4)


def test_reshape_refuses_shapes_that_cannot_be(rng):
    for shape in ((0, -1), (-1, -1)):
        with pytest.raises(ValueError, match=r"Reshape: sizes must be positive, with at most one -1"):
            Reshape(shape)
    with pytest.raises(ValueError, match=r"an example of shape \(2, 3, 3\) does not fit the shape \(5, -1\)"):
        Reshape((5, -1)).forward(np.zeros((0, 2, 3, 3), np.float32))  # empty batch: still checked
    assert Reshape((3, -1)).forward(np.zeros((4, 2, 3, 3), np.float32)).shape == (4, 3, 6)


def test_conv_argument_errors():
    with pytest.raises(ValueError, match="ratio must be in"):
        Conv2d(1, 2, 3, ratio=0)
    layer = Conv2d(1, 2, 5, name="conv1")
    with pytest.raises(ValueError, match=r"conv1: expected a float array x of shape \(batch, 1, H, W\)"):
        layer.forward(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="smaller than the 5x5 kernel"):
        layer.forward(np.zeros((2, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="not divisible by the window 2"):
        MaxPool2d(2).forward(np.zeros((1, 1, 5, 4)))


def test_spatial_topk_gives_the_same_bits_on_one_and_two_threads(rng):
    """The convolution's kernels (im2col, col2im, the selected positions' dW and dx) on one and two threads."""
    x = rng.standard_normal((5, 3, 12, 11)).astype(np.float32)
    dy = None
    results = []
    for threads in (1, 2):
        layer = Conv2d(3, 6, 3, 1, 1, ratio=0.2, rng=np.random.default_rng(1))
        with numba_threads(threads):
            y = layer.forward(x)
            dy = rng.standard_normal(y.shape).astype(np.float32) if dy is None else dy
            results.append((layer.forward(x), layer.backward(dy), layer.weight.grad.copy(), im2col(x, 3, 2, 1),
                            col2im(im2col(x, 3, 2, 1), x.shape, 3, 2, 1)))
    for one, two in zip(*results):
        assert np.array_equal(one, two)


def patch_loops(x_shape, kernel, stride, padding):
    """(b, position, j, channel, row, column) of each patch entry, in the order of the kernels' loops: example,
    position, then channel, row and column within the patch (row and column in the padded input)."""
    batch, channels, height, width = x_shape
    out_h, out_w = [(size + 2 * padding - kernel) // stride + 1 for size in (height, width)]
    for b in range(batch):
        for p in range(out_h * out_w):
            j = 0
            for c in range(channels):
                for u in range(kernel):
                    for v in range(kernel):
                        yield b, p, j, c, (p // out_w) * stride + u, (p % out_w) * stride + v
                        j += 1


@pytest.mark.parametrize("kernel,stride,padding", [(2, 3, 1), (1, 2, 0), (3, 1, 2)])
def test_the_patch_kernels_add_in_the_order_of_plain_loops_to_the_bit(rng, kernel, stride, padding):
    """im2col, col2im and the selected positions' dx against plain Python loops in float32, one addition at a time
    in the loops' order: equal bits, so a rewrite that adds in another order fails here."""
    x = rng.standard_normal((2, 2, 5, 9)).astype(np.float32)
    layer = Conv2d(2, 3, kernel, stride, padding, ratio=0.4, rng=np.random.default_rng(1))
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = im2col(x, kernel, stride, padding)
    dcols = rng.standard_normal(cols.shape).astype(np.float32)
    expected_cols, expected_col2im = np.empty_like(cols), np.zeros_like(padded)
    for b, p, j, c, row, column in patch_loops(x.shape, kernel, stride, padding):
        expected_cols[b, p, j] = padded[b, c, row, column]
        expected_col2im[b, c, row, column] += dcols[b, p, j]
    expected_dx = np.zeros_like(padded)
    dy = dy.reshape(2, 3, -1)
    for b in range(2):
        for c in range(3):
            for p in layer.selected[b, c]:
                for _, position, j, ci, row, column in patch_loops((1,) + x.shape[1:], kernel, stride, padding):
                    if position == p:
                        expected_dx[b, ci, row, column] += dy[b, c, p] * layer.weight.value[c, j]
    crop = (slice(None), slice(None), slice(padding, padding + 5), slice(padding, padding + 9))
    assert np.array_equal(cols, expected_cols)
    assert np.array_equal(col2im(dcols, x.shape, kernel, stride, padding), expected_col2im[crop])
    assert np.array_equal(dx, expected_dx[crop])


def test_a_fortran_ordered_input_gives_what_a_c_ordered_one_does(rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    dy = None
    results = []
    for given in (x, np.asfortranarray(x), x.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)):
        layer = Conv2d(3, 4, 3, 1, 1, ratio=0.3, rng=np.random.default_rng(1))
        y = layer.forward(given)
        dy = rng.standard_normal(y.shape).astype(np.float32) if dy is None else dy
        results.append((y, layer.backward(dy), layer.weight.grad.copy()))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)
