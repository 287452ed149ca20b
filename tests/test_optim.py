"""Optimizers: nnmnist's update rules, and sparse row updates that leave other rows alone."""
import numpy as np
import pytest

from tinyprop.optim import SGD, AdaGrad, Adam
from tinyprop.parameter import Parameter

from support import numba_threads


def make_param(rng, shape=(6, 4)):
    return Parameter(rng.standard_normal(shape).astype(np.float32), "w")


def give_gradient(param, rows, rng):
    param.grad[rows] += rng.standard_normal((len(rows),) + param.shape[1:]).astype(np.float32)
    param.rows_with_grad[rows] = True


def nnmnist_adam(w, m, v, g, t, lr=0.001, b1=0.9, b2=0.999, eps=1e-8, l2=0.0, clip=0.0):
    """Adam.cs of nnmnist, in float64."""
    d = g + l2 * w
    if clip > 0:
        d = np.clip(d, -clip, clip)
    m = b1 * m + (1 - b1) * d
    v = b2 * v + (1 - b2) * d * d
    w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return w, m, v


@pytest.mark.parametrize("make", [lambda p: Adam(p), lambda p: AdaGrad(p, lr=0.01, l2=0.01),
                                  lambda p: SGD(p, lr=0.1, decay_rate=0.5, decay_steps=3, l2=0.01)])
def test_sparse_step_leaves_other_rows_and_state_bit_identical(rng, make):
    """(With L2, a row without gradient would still move, were it updated.)"""
    param = make_param(rng)
    optimizer = make([param])
    for _ in range(3):  # build up state on every row
        give_gradient(param, [0, 1, 2, 3, 4, 5], rng)
        optimizer.step()
        param.zero_grad()
    before = param.value.copy(), {name: array.copy() for name, array in param.state.items()}
    give_gradient(param, [1, 4], rng)
    optimizer.step()
    untouched = [0, 2, 3, 5]
    assert np.array_equal(param.value[untouched], before[0][untouched])
    for name, array in param.state.items():
        assert np.array_equal(array[untouched], before[1][name][untouched])
    assert not np.array_equal(param.value[[1, 4]], before[0][[1, 4]])


RULES = {"adam": lambda p, **kw: Adam(p, clip_bound=0.3, l2=0.01, **kw),
         "adagrad": lambda p, **kw: AdaGrad(p, lr=0.01, l2=0.01, clip_bound=0.5, **kw),
         "sgd": lambda p, **kw: SGD(p, lr=0.1, decay_rate=0.5, decay_steps=3, l2=0.01, clip_bound=0.5, **kw)}


def train_steps(rng, make, fused, threads=1, dense_updates=False):
    """Five steps on a (300, 40) parameter and a bias, each row getting gradient at some of them; the parameters."""
    params = [make_param(rng, (300, 40)), make_param(rng, (300,))]
    optimizer = make(params, dense_updates=dense_updates)
    with numba_threads(threads):
        for _ in range(5):
            for param in params:
                give_gradient(param, rng.choice(300, 90, replace=False), rng)
            if fused:
                optimizer.step(zero_grad=True)
            else:
                optimizer.step()
                optimizer.zero_grad()
    return params


@pytest.mark.parametrize("dense_updates", [False, True])
@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_fused_step_is_the_step_then_zero_grad_bit_for_bit(rule, dense_updates):
    fused = train_steps(np.random.default_rng(3), RULES[rule], True, dense_updates=dense_updates)
    unfused = train_steps(np.random.default_rng(3), RULES[rule], False, dense_updates=dense_updates)
    for one, other in zip(fused, unfused):
        assert np.array_equal(one.value, other.value)
        assert all(np.array_equal(one.state[name], other.state[name]) for name in one.state)
        assert not one.grad.any() and not one.rows_with_grad.any()


@pytest.mark.parametrize("rule", sorted(RULES))
def test_steps_give_the_same_bits_on_one_and_two_threads(rule):
    one = train_steps(np.random.default_rng(4), RULES[rule], True, threads=1)
    two = train_steps(np.random.default_rng(4), RULES[rule], True, threads=2)
    for a, b in zip(one, two):
        assert np.array_equal(a.value, b.value)
        assert all(np.array_equal(a.state[name], b.state[name]) for name in a.state)


def test_dense_adam_moves_every_row_as_nnmnist(rng):
    param = make_param(rng)
    optimizer = Adam([param], dense_updates=True, clip_bound=0.5, l2=0.01)
    w = param.value.astype(np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, rows in enumerate([[0, 1, 2, 3, 4, 5], [2], [4, 5]], 1):
        give_gradient(param, rows, rng)
        g = param.grad.astype(np.float64)
        optimizer.step()
        param.zero_grad()
        w, m, v = nnmnist_adam(w, m, v, g, t, l2=0.01, clip=0.5)
        np.testing.assert_allclose(param.value, w, rtol=1e-5, atol=1e-7)
    # rows 0, 1, 3 had no gradient at the last step and still moved, on their momentum
    assert np.all(param.state["mean"][[0, 1, 3]] != 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_flushes_moments_that_decay_below_the_smallest_normal_float(rng, dtype):
    """A moment that would turn subnormal is set to zero; weights move as nnmnist's Adam moves them,
    and a NaN gradient still makes its weight NaN (for the training loop to stop on)."""
    tiny = np.finfo(dtype).tiny
    param = Parameter(rng.standard_normal((3, 4)).astype(dtype), "w")
    optimizer = Adam([param], dense_updates=True)
    mean = np.array([tiny, 3 * tiny, -tiny, 0.0], dtype)  # times beta1 = 0.9: below tiny, above, below, zero
    mean_square = np.array([tiny, 2 * tiny, 1e-6, 1e-6], dtype)  # times beta2 = 0.999: below tiny, above, ...
    param.state["mean"][:2] = mean  # rows 0 and 1: no gradient, the moments only decay
    param.state["mean_square"][:2] = mean_square
    param.grad[2] = rng.standard_normal(4)  # row 2: a gradient, from zero moments
    w = param.value.astype(np.float64)
    optimizer.step()
    assert np.array_equal(param.state["mean"][:2] != 0, [[False, True, False, False]] * 2)
    assert np.array_equal(param.state["mean_square"][:2] != 0, [[False, True, True, True]] * 2)
    assert np.all(param.state["mean"][:2, 1] == dtype(0.9) * mean[1])
    m, v = np.zeros_like(w), np.zeros_like(w)
    m[:2], v[:2] = mean, mean_square
    w_new, _, _ = nnmnist_adam(w, m, v, param.grad.astype(np.float64), 1)
    assert np.all(np.abs(w_new[2] - w[2]) > 1e-4)  # row 2 moved (by about lr)
    np.testing.assert_allclose(param.value, w_new, rtol=1e-6, atol=1e-7)
    param.grad[0, 0] = np.nan
    optimizer.step()
    assert np.isnan(param.value[0, 0]) and np.isnan(param.state["mean"][0, 0])


@pytest.mark.parametrize("make,rule", [
    (lambda p: SGD(p, lr=0.1, l2=0.01, clip_bound=0.5),
     lambda w, g, f: w - f(0.1) * np.clip(g + f(0.01) * w, f(-0.5), f(0.5))),
    (lambda p: AdaGrad(p, lr=0.1, eps=1e-6, l2=0.01),
     lambda w, g, f: w - f(0.1) * (g + f(0.01) * w) / np.sqrt((g + f(0.01) * w) ** 2 + f(1e-6)))])
@pytest.mark.parametrize("zero_grad", [False, True])
def test_float32_parameters_step_in_float32_arithmetic(rng, make, rule, zero_grad):
    """The kernels take their scalars as Python floats and compute in the parameter's type: the step
    equals the rule computed in float32 numpy bit for bit (in float64 and rounded, it would not), fused
    with zero_grad or not."""
    param = make_param(rng, (50, 4))
    give_gradient(param, range(50), rng)
    w, g = param.value.copy(), param.grad.copy()
    make([param]).step(zero_grad=zero_grad)
    assert np.array_equal(param.value, rule(w, g, np.float32))
    assert param.grad.any() != zero_grad
    in_float64 = rule(w.astype(np.float64), g.astype(np.float64), np.float64)
    assert not np.array_equal(param.value, in_float64.astype(np.float32))


def test_hyperparameters_that_would_fail_mid_training_are_refused(rng):
    param = make_param(rng)
    for beta1, beta2 in ((1.0, 0.999), (0.9, 1.5), (-0.1, 0.999)):
        with pytest.raises(ValueError, match="Adam: beta1 and beta2 must be in"):
            Adam([param], beta1=beta1, beta2=beta2)
    with pytest.raises(ValueError, match="Adam: eps must be positive"):
        Adam([param], eps=0)
    with pytest.raises(ValueError, match="AdaGrad: eps must be positive"):
        AdaGrad([param], eps=0)


def test_sparse_adam_matches_nnmnist_on_the_rows_it_updates(rng):
    param = make_param(rng)
    optimizer = Adam([param], lr=0.01)
    w = param.value.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    give_gradient(param, [3], rng)
    g = param.grad.astype(np.float64)
    optimizer.step()
    w_new, _, _ = nnmnist_adam(w, m, v, g, 1, lr=0.01)
    np.testing.assert_allclose(param.value[3], w_new[3], rtol=1e-6, atol=1e-7)


def test_adagrad_and_sgd_rules(rng):
    param = make_param(rng, (3,))
    w0 = param.value.astype(np.float64)
    optimizer = AdaGrad([param], lr=0.1, eps=1e-6)
    give_gradient(param, [0, 1, 2], rng)
    g = param.grad.astype(np.float64)
    optimizer.step()
    np.testing.assert_allclose(param.value, w0 - 0.1 * g / np.sqrt(g * g + 1e-6), rtol=1e-5)
    small = make_param(rng, (1,))
    small.value[:] = 0.0
    small.grad[:] = 1e-3  # where eps matters: inside the root -0.0707, outside it -0.0999
    small.mark_all_rows()
    AdaGrad([small], lr=0.1, eps=1e-6).step()
    np.testing.assert_allclose(small.value, -0.1 * 1e-3 / np.sqrt(2e-6), rtol=1e-5)
    small.value[:] = 0.0
    optimizer = AdaGrad([small], lr=0.1, eps=1e-6)
    for _ in range(2):  # the squares add up over steps: 1, then 2
        small.grad[:] = 1.0
        small.mark_all_rows()
        optimizer.step()
        small.zero_grad()
    assert small.state["sum_squares"][0] == pytest.approx(2.0)
    np.testing.assert_allclose(small.value, -0.1 / np.sqrt(1 + 1e-6) - 0.1 / np.sqrt(2 + 1e-6), rtol=1e-5)

    param = make_param(rng, (2, 2))
    w0 = param.value.astype(np.float64)
    optimizer = SGD([param], lr=0.1, decay_rate=0.5, decay_steps=2, clip_bound=0.3)
    param.grad[:] = [[1.0, -0.2], [0.1, -5.0]]
    param.mark_all_rows()
    optimizer.step()  # t = 1: lr 0.1 * 0.5 ** 0.5
    np.testing.assert_allclose(param.value, w0 - 0.1 * 0.5 ** 0.5 * np.array([[0.3, -0.2], [0.1, -0.3]]),
                               rtol=1e-5)


def test_reset_forgets_state_and_steps(rng):
    param = make_param(rng)
    optimizer = Adam([param])
    give_gradient(param, [0], rng)
    optimizer.step()
    optimizer.reset()
    assert optimizer.steps == 0 and not param.state["mean"].any() and not param.state["mean_square"].any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="learning rate must be positive"):
        Adam([], lr=0)
    with pytest.raises(ValueError, match="decay_rate"):
        SGD([], lr=0.1, decay_rate=1.5)


def test_zero_grad_clears_the_gradients_and_row_marks_of_its_parameters_only(rng):
    params = [make_param(rng), make_param(rng, (5,)), make_param(rng)]
    for param in params:
        give_gradient(param, [0, 2, 3], rng)
    optimizer = Adam(params[:2])
    optimizer.step()
    optimizer.zero_grad()
    for param in params[:2]:
        assert not param.grad.any() and not param.rows_with_grad.any()
    assert params[2].grad[[0, 2, 3]].all() and params[2].rows_with_grad.tolist() == [1, 0, 1, 1, 0, 0]
