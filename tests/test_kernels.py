"""The Numba kernels against tinyprop.reference, and the same tests with the JIT disabled."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tinyprop.kernels import (add_selected_rows_grad, add_shared_rows_grad, add_to_looked_up_rows, add_to_rows,
                              copy_looked_up_rows, selected_input_grad, shared_rows_input_grad, small_batch_linear)
from tinyprop.reference import embedding_backward, embedding_forward, linear_backward, selection_mask

from support import numba_threads

HERE = os.path.dirname(os.path.abspath(__file__))


def on_threads(count, kernel, *arguments):
    """kernel(*arguments), with copies of the arrays among them, on `count` threads; returns the arguments."""
    arguments = [argument.copy() if isinstance(argument, np.ndarray) else argument for argument in arguments]
    with numba_threads(count):
        kernel(*arguments)
    return arguments


def reference_gradients(dy, x, weight, mask):
    """tinyprop.reference.linear_backward's dW and dx, in float64."""
    dw, _, dx = linear_backward(x.astype(np.float64), weight.astype(np.float64), dy.astype(np.float64), mask)
    return dw, dx


def test_add_selected_rows_grad_adds_the_references_dw(rng):
    dy = rng.standard_normal((4, 9)).astype(np.float32)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    selected = np.array([[0, 3], [3, 8], [1, 2], [8, 0]], dtype=np.int32)
    weight_grad = rng.standard_normal((9, 6)).astype(np.float32)
    dw, _ = reference_gradients(dy, x, np.zeros((9, 6)), selection_mask(selected, 9))
    expected = weight_grad + dw
    weight_rows = np.zeros(9, bool)
    add_selected_rows_grad(dy, x, selected, weight_grad, weight_rows)
    np.testing.assert_allclose(weight_grad, expected, rtol=1e-6)
    assert np.flatnonzero(weight_rows).tolist() == [0, 1, 2, 3, 8]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch,n_in", [(9, 70), (50, 3000)])  # x in one block of examples, and in three
def test_add_selected_rows_grad_adds_each_rows_examples_in_their_order(rng, threads, batch, n_in):
    """Row r gets w + dy[b, r] x[b] example after example in float32, as on one thread, on any number of
    threads: bit for bit (rows repeat among examples, and some examples select a row twice)."""
    dy = rng.standard_normal((batch, 40)).astype(np.float32)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    selected = rng.integers(0, 40, (batch, 13)).astype(np.int32)
    weight_grad = rng.standard_normal((40, n_in)).astype(np.float32)
    expected = weight_grad.copy()
    for b in range(batch):
        for r in selected[b]:
            expected[r] = expected[r] + dy[b, r] * x[b]
    weight_grad, weight_rows = on_threads(threads, add_selected_rows_grad, dy, x, selected, weight_grad,
                                          np.zeros(40, bool))[3:]
    assert np.array_equal(weight_grad, expected)
    assert np.array_equal(np.flatnonzero(weight_rows), np.unique(selected))


@pytest.mark.parametrize("batch,n_in,n_out,k", [(10, 784, 500, 80), (13, 200, 97, 31), (3, 5, 7, 7),
                                                 (60, 2400, 103, 20)])
def test_the_linear_kernels_give_the_same_bits_on_one_and_two_threads(rng, batch, n_in, n_out, k):
    dy = rng.standard_normal((batch, n_out)).astype(np.float32)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    weight = rng.standard_normal((n_out, n_in)).astype(np.float32)
    selected = np.sort([rng.choice(n_out, k, replace=False) for _ in range(batch)], axis=1).astype(np.int32)
    rows = rng.choice(n_out, k, replace=False).astype(np.int32)
    dx = np.full_like(x, np.nan)
    calls = [(add_selected_rows_grad, dy, x, selected, weight.copy(), np.zeros(n_out, bool)),
             (selected_input_grad, dy, weight, selected, dx),
             (add_shared_rows_grad, dy, x, rows, weight.copy(), np.zeros(n_out, bool)),
             (shared_rows_input_grad, dy, weight, rows, dx),
             (small_batch_linear, x, weight, weight[:, 0].copy(), np.full_like(dy, np.nan))]
    for kernel, *arguments in calls:
        for one, two in zip(on_threads(1, kernel, *arguments), on_threads(2, kernel, *arguments)):
            assert np.array_equal(one, two), kernel.__name__


@pytest.mark.parametrize("batch,n_in,n_out", [(10, 784, 500), (16, 500, 13)]
                         + [(batch, 33, 4 + batch % 4) for batch in range(1, 14)])
def test_small_batch_linear_is_x_wt_plus_b(rng, batch, n_in, n_out):
    """Every example and row, with the blocks of four rows and five examples cut short at the ends."""
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    weight = rng.standard_normal((n_out, n_in)).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32)
    y = np.full((batch, n_out), np.nan, dtype=np.float32)
    small_batch_linear(x, weight, bias, y)
    expected = x.astype(np.float64) @ weight.T.astype(np.float64) + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4 * np.sqrt(n_in))


def test_selected_input_grad_is_the_references_dx(rng):
    dy = rng.standard_normal((3, 7)).astype(np.float32)
    weight = rng.standard_normal((7, 5)).astype(np.float32)
    selected = np.array([[6], [0], [2]], dtype=np.int32)
    dx = np.full((3, 5), 99.0, dtype=np.float32)  # overwritten, not accumulated
    selected_input_grad(dy, weight, selected, dx)
    _, expected = reference_gradients(dy, np.zeros((3, 5)), weight, selection_mask(selected, 7))
    np.testing.assert_allclose(dx, expected, rtol=1e-6)


@pytest.mark.parametrize("rows", [[1], [0, 2, 5, 6], [0, 1, 3, 4, 5, 6], [9, 0, 4, 8, 1, 3, 7, 2, 5]])
def test_shared_rows_input_grad_is_the_references_dx(rng, rows):
    dy = rng.standard_normal((3, 10)).astype(np.float32)
    weight = rng.standard_normal((10, 5)).astype(np.float32)
    dx = np.full((3, 5), 99.0, dtype=np.float32)  # overwritten, not accumulated
    shared_rows_input_grad(dy, weight, np.array(rows, dtype=np.int32), dx)
    mask = np.broadcast_to(selection_mask(np.array(rows), 10), dy.shape)  # the same rows for every example
    np.testing.assert_allclose(dx, reference_gradients(dy, np.zeros((3, 5)), weight, mask)[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [[7], [9, 0, 4], list(range(9))])
@pytest.mark.parametrize("batch", [1, 3, 4, 6, 9])
def test_add_shared_rows_grad_adds_the_references_dw(rng, batch, rows, dtype):
    dy = rng.standard_normal((batch, 10)).astype(dtype)
    x = rng.standard_normal((batch, 5)).astype(dtype)
    weight_grad = rng.standard_normal((10, 5)).astype(dtype)
    mask = np.broadcast_to(selection_mask(np.array(rows), 10), dy.shape)
    expected = weight_grad + reference_gradients(dy, x, np.zeros((10, 5)), mask)[0]
    weight_rows = np.zeros(10, bool)
    weight_rows[2] = True  # marked before: stays marked
    add_shared_rows_grad(dy, x, np.array(rows, dtype=np.int32), weight_grad, weight_rows)
    np.testing.assert_allclose(weight_grad, expected, rtol=1e-5, atol=1e-6)
    assert np.flatnonzero(weight_rows).tolist() == sorted(set(rows) | {2})


def test_add_to_rows(rng):
    target = rng.standard_normal((6, 4)).astype(np.float32)
    values = rng.standard_normal((2, 4)).astype(np.float32)
    expected = target.copy()
    expected[[5, 1]] += values
    marks = np.zeros(6, dtype=bool)
    add_to_rows(target, np.array([5, 1], dtype=np.int32), values, marks)
    np.testing.assert_allclose(target, expected)
    assert np.array_equal(np.flatnonzero(marks), [1, 5])


@pytest.mark.parametrize("threads", [1, 2])
def test_looked_up_rows_are_the_references_lookup_and_add_at(rng, threads):
    """Two tables of different widths side by side, their columns interleaved: the lookup and its gradient are
    reference.embedding_forward and embedding_backward (add.at) of each table bit for bit; rows repeat among and
    within examples."""
    tables = (rng.standard_normal((9, 5)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32))
    tables_of = np.array([0, 1, 0, 0, 1])
    starts = np.array([0, 5, 8, 13, 18])
    ids = np.stack([rng.integers(0, len(tables[t]), 30) for t in tables_of], axis=1)
    ids[:, 2] = ids[:, 3] = 2  # a NULL word at two places of every example
    dy = rng.standard_normal((30, 21)).astype(np.float32)
    grads = tuple(np.zeros_like(table) for table in tables)
    marks = tuple(np.zeros(len(table), dtype=bool) for table in tables)
    out = np.empty((30, 21), dtype=np.float32)
    with numba_threads(threads):
        add_to_looked_up_rows(grads, ids, tables_of, starts, dy, marks)
        copy_looked_up_rows(tables, ids, tables_of, starts, out)
    for t, (table, grad, mark) in enumerate(zip(tables, grads, marks)):
        columns = np.flatnonzero(tables_of == t)
        pieces = np.concatenate([dy[:, starts[c]:starts[c] + table.shape[1]] for c in columns], axis=1)
        np.testing.assert_array_equal(grad, embedding_backward(table, ids[:, columns], pieces))
        assert np.array_equal(np.flatnonzero(mark), np.unique(ids[:, columns]))
        looked_up = np.concatenate([out[:, starts[c]:starts[c] + table.shape[1]] for c in columns], axis=1)
        np.testing.assert_array_equal(looked_up, embedding_forward(table, ids[:, columns]))


def test_looked_up_rows_of_an_empty_batch_change_nothing(rng):
    table = rng.standard_normal((4, 3)).astype(np.float32)
    grad, marks = np.zeros_like(table), np.zeros(4, dtype=bool)
    layout = np.zeros(2, dtype=np.int64), np.array([0, 3])
    add_to_looked_up_rows((grad,), np.zeros((0, 2), dtype=np.int64), *layout, np.zeros((0, 6), np.float32), (marks,))
    copy_looked_up_rows((table,), np.zeros((0, 2), dtype=np.int64), *layout, np.zeros((0, 6), np.float32))
    assert not grad.any() and not marks.any()


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already running without the JIT")
def test_kernels_and_selection_as_plain_python():
    """The kernels' Python source (NUMBA_DISABLE_JIT=1) passes the same tests as the compiled code."""
    files = [os.path.join(HERE, name) for name in ("test_kernels.py", "test_topk.py", "test_optim.py",
                                                   "test_layers.py", "test_conv.py", "test_lstm.py")]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
                            env=dict(os.environ, NUMBA_DISABLE_JIT="1"), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
