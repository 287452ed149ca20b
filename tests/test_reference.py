"""tinyprop.reference on examples small enough to work out by hand: the oracle the other tests trust."""
import itertools

import numpy as np

from tinyprop.reference import (linear_backward, lstm_backward, random_k_mask, selection_mask, topk_indices,
                                topk_mask, unified_topk_mask)


def test_topk_is_the_papers_example_and_ties_go_to_the_lower_index():
    v = np.array([1, 2, 3, -4], dtype=np.float32)
    assert np.where(topk_mask(v, 2), v, 0).tolist() == [0, 0, 3, -4]  # top_2(<1, 2, 3, -4>), Section 2.1
    ties = np.array([[1, -3, 3, 2, -3, 0], [0, 0, 0, 0, 0, 0]], dtype=np.float32)
    assert topk_indices(ties, 2).tolist() == [[1, 2], [0, 1]]
    assert topk_indices(ties, 3).tolist() == [[1, 2, 4], [0, 1, 2]]


def test_selection_mask_marks_the_indices_of_each_row():
    assert selection_mask(np.array([[2, 0], [1, 3]]), 4).tolist() == [[True, False, True, False],
                                                                      [False, True, False, True]]
    assert selection_mask(np.array([1]), 3).tolist() == [False, True, False]


def test_linear_backward_is_the_dense_backward_of_the_gradient_masked_by_hand():
    x = np.array([[1, 2], [3, -1]], dtype=np.float32)  # (batch 2, in 2)
    W = np.array([[1, 0], [0, 1], [2, -1]], dtype=np.float32)  # (out 3, in 2)
    dy = np.array([[0.5, -2, 1], [3, 1, -1]], dtype=np.float32)
    mask = topk_mask(dy, 1)
    assert mask.tolist() == [[False, True, False], [True, False, False]]  # |-2| in example 0, |3| in example 1
    dW, db, dx = linear_backward(x, W, dy, mask)
    # top_1(dy) = [[0, -2, 0], [3, 0, 0]]
    assert dW.tolist() == [[9, -3], [-2, -4], [0, 0]]  # row 0: 3 x[1]; row 1: -2 x[0]; row 2 got nothing
    assert db.tolist() == [3.5, -1, 0]  # dense: every entry of dy
    assert dx.tolist() == [[0, -2], [3, 0]]  # -2 W[1]; 3 W[0]
    assert dW.dtype == db.dtype == dx.dtype == np.float32
    dense = linear_backward(x, W, dy)
    assert dense[0].tolist() == [[9.5, -2], [1, -5], [-2, 3]] and dense[2].tolist() == [[2.5, -3], [1, 2]]


def test_unified_mask_is_one_set_for_the_batch_from_the_summed_magnitudes():
    dy = np.array([[1, 0, -2], [1, 3, 0]], dtype=np.float32)  # sum_b |dy| = [2, 3, 2]
    assert unified_topk_mask(dy, 1).tolist() == [[False, True, False]] * 2
    assert unified_topk_mask(dy, 2).tolist() == [[True, True, False]] * 2  # 2 against 2: the lower index


def test_random_k_mask_draws_k_distinct_indices_every_subset_alike():
    mask = random_k_mask(np.random.default_rng(4), 6000, 4, 2)
    assert (mask.sum(axis=1) == 2).all()
    assert np.array_equal(mask, random_k_mask(np.random.default_rng(4), 6000, 4, 2))
    subsets = [tuple(np.flatnonzero(row)) for row in mask]
    frequencies = [subsets.count(pair) / len(subsets) for pair in itertools.combinations(range(4), 2)]
    assert np.allclose(frequencies, 1 / 6, atol=0.015), frequencies
    assert random_k_mask(np.random.default_rng(0), 3, 5, 5).all()


def random_lstm_arrays(rng, n_in, hidden, steps):
    """W_x, W_h, b, x, dh of float64 normal entries."""
    shapes = [(4 * hidden, n_in), (4 * hidden, hidden), (4 * hidden,), (steps, n_in), (steps, hidden)]
    return [rng.standard_normal(shape) for shape in shapes]


def test_lstm_backward_of_one_step_keeps_each_gates_largest_gradient(rng):
    """With one step there is no recurrence: dz is the dense one (db), and each gate's block keeps its
    largest |dz| for the products with W_x; W_h gets nothing, h_{-1} being 0."""
    W_x, W_h, b, x, dh = random_lstm_arrays(rng, 3, 4, 1)
    _, _, dz, _, _ = lstm_backward(W_x, W_h, b, x, dh)
    dW_x, dW_h, db, dx, mask = lstm_backward(W_x, W_h, b, x, dh, k=1)
    expected_mask = np.zeros((4, 4), dtype=bool)
    expected_mask[np.arange(4), np.abs(dz.reshape(4, 4)).argmax(axis=1)] = True
    assert np.array_equal(mask, expected_mask.reshape(1, 16))
    kept = np.where(expected_mask.ravel(), dz, 0)
    np.testing.assert_allclose(dW_x, np.outer(kept, x[0]), rtol=1e-12)
    np.testing.assert_allclose(dx[0], kept @ W_x, rtol=1e-12)
    np.testing.assert_allclose(db, dz, rtol=1e-12)
    assert not dW_h.any()


def test_lstm_backward_with_every_row_kept_is_the_dense_one_and_with_fewer_is_not(rng):
    arrays = random_lstm_arrays(rng, 3, 5, 6)
    dense = lstm_backward(*arrays)
    for got, want in zip(lstm_backward(*arrays, k=5), dense):
        np.testing.assert_array_equal(got, want)
    dW_x, _, _, dx, mask = lstm_backward(*arrays, k=2)
    assert mask.sum() == 6 * 4 * 2 and not np.allclose(dx, dense[3]) and not dW_x[~mask.any(axis=0)].any()
