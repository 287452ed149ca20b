"""The heap top-k picks exactly what tinyprop.reference's stable argsort picks; unified and random selections
equal the reference's too."""
import numpy as np
import pytest

from tinyprop.reference import random_k_mask, selection_mask, topk_indices, unified_topk_mask
from tinyprop.topk import (BUCKETS, SHARED_TOPK_ROWS, _topk_rows_shared, magnitude_floor, random_rows, topk_rows,
                           unified_topk)

from support import numba_threads



def heap_topk(grad, k):
    out = np.empty((grad.shape[0], k), dtype=np.int32)
    topk_rows(grad, k, np.empty(k, dtype=np.uint64), out)
    return np.sort(out, axis=1)


@pytest.mark.parametrize("n,k", [(1, 1), (7, 1), (7, 6), (7, 7), (50, 10), (500, 80), (500, 499), (33, 32)])
def test_heap_matches_the_reference_on_random_values(rng, n, k):
    grad = rng.standard_normal((6, n)).astype(np.float32)
    assert np.array_equal(heap_topk(grad, k), topk_indices(grad, k))


@pytest.mark.parametrize("k", [1, 3, 10, 39])
def test_heap_matches_the_reference_on_ties(rng, k):
    # few distinct magnitudes, both signs, and exact zeros as behind a ReLU
    grad = rng.integers(-2, 3, size=(8, 40)).astype(np.float32)
    grad[0] = 0.0
    grad[1] = 1.0
    grad[2, ::2] = -1.0
    assert np.array_equal(heap_topk(grad, k), topk_indices(grad, k))


@pytest.mark.parametrize("parts", [1, 3, 7])
def test_rows_shared_out_among_threads_match_the_reference(rng, parts):
    """From SHARED_TOPK_ROWS rows on (with more than one thread), runs of rows are selected each with a heap of
    its own: the same sets, however many runs."""
    grad = rng.integers(-3, 4, size=(SHARED_TOPK_ROWS + 5, 60)).astype(np.float32) * rng.random(60, np.float32)
    out = np.empty((grad.shape[0], 7), dtype=np.int32)
    _topk_rows_shared(grad.view(np.uint32), 7, parts, out)
    assert np.array_equal(np.sort(out, axis=1), topk_indices(grad, 7))


def test_topk_rows_shares_many_rows_out_on_two_threads(rng):
    grad = rng.standard_normal((SHARED_TOPK_ROWS, 40)).astype(np.float32)
    with numba_threads(2):
        assert np.array_equal(heap_topk(grad, 5), topk_indices(grad, 5))


@pytest.mark.parametrize("values", ["relu", "few levels", "wide range", "tiny"])
def test_heap_matches_the_reference_where_the_histogram_seeds_it(rng, values):
    """n 300, k 6..260: the floor from the histogram is set, and ties, zeros, magnitudes over
    more than the histogram's eight factors of two and subnormal numbers all meet the heap."""
    grad = rng.standard_normal((6, 300)).astype(np.float32)
    if values == "relu":  # half the entries exactly zero, as behind a ReLU
        grad[rng.random(grad.shape) < 0.5] = 0.0
    elif values == "few levels":  # the k-th largest magnitude shared by many entries
        grad = rng.integers(-6, 7, size=grad.shape).astype(np.float32)
    elif values == "wide range":
        grad *= np.exp2(rng.uniform(-40, 40, size=grad.shape)).astype(np.float32)
    else:
        grad *= np.float32(1e-42)
    for k in (6, 20, 80, 150, 260):
        assert np.array_equal(heap_topk(grad, k), topk_indices(grad, k)), k


def floor_of(grad, k):
    return float(np.array([magnitude_floor(grad.view(np.uint32), k, np.empty(BUCKETS, np.int32))],
                          dtype=np.uint32).view(np.float32)[0])


@pytest.mark.parametrize("k", [5, 10, 80, 200])
def test_magnitude_floor_is_a_close_lower_bound_on_the_kth_largest(rng, k):
    grad = rng.standard_normal(500).astype(np.float32)
    kth_largest = np.sort(np.abs(grad))[-k]
    floor = floor_of(grad, k)
    assert 0 < floor <= kth_largest
    # in its bucket (2^19 apart in the bit pattern at most), so that few entries beyond k reach it
    assert np.float32(kth_largest).view(np.uint32) - np.float32(floor).view(np.uint32) < 1 << 19
    assert k <= (np.abs(grad) >= floor).sum() < k + 30


def test_an_entry_at_the_floor_is_kept():
    """The floor is the lowest magnitude of its bucket, and an entry exactly there can be the k-th largest."""
    one = np.float32(1).view(np.uint32)
    at_floor = np.array([one + 1 - (21 << 19)], dtype=np.uint32).view(np.float32)[0]  # bucket 20's lowest
    grad = np.zeros(40, dtype=np.float32)
    grad[:10] = 0.1
    grad[10] = -at_floor
    grad[11:15] = 1.0
    assert floor_of(grad, 5) == at_floor
    assert heap_topk(grad[None], 5).tolist() == [[10, 11, 12, 13, 14]]


@pytest.mark.parametrize("n,k", [(300, 20), (6, 5)])
def test_nan_and_infinity_come_first_with_the_histogram(rng, n, k):
    """NaN's bits exceed infinity's, which exceed every finite magnitude's (the module's order)."""
    # magnitudes of 1e37 to 2e37, within the histogram's range of a NaN's bits
    grad = (rng.uniform(1, 2, (4, n)) * rng.choice([-1e37, 1e37], (4, n))).astype(np.float32)
    grad[0, 1], grad[1, 3], grad[2, 2], grad[2, 4] = np.nan, -np.inf, np.inf, -np.nan
    magnitude_bits = (grad.view(np.uint32) & 0x7FFFFFFF).astype(np.int64)
    expected = topk_indices(magnitude_bits, k)  # the reference on the bits' order rather than on |g|
    assert np.array_equal(heap_topk(grad, k), expected)
    assert all(floor_of(row, k) > 0 for row in grad)  # the histogram's path


def test_magnitude_floor_is_zero_where_it_would_not_help():
    grad = np.linspace(1, 2, 64, dtype=np.float32)
    assert floor_of(grad, 4) == 0  # small k: the plain heap is as fast
    assert floor_of(grad, 57) == 0  # k above 7/8 of the entries
    assert floor_of(grad, 56) > 0
    mostly_zero = np.zeros(64, dtype=np.float32)
    mostly_zero[:7] = 1.0
    assert floor_of(mostly_zero, 10) == 0  # fewer than k entries within 2^8 of the largest
    spread = np.exp2(-np.arange(64, dtype=np.float32))  # one entry per factor of two
    assert spread[8] < floor_of(spread, 8) <= spread[7] and floor_of(spread, 9) == 0


def test_ties_go_to_the_lower_index():
    grad = np.array([[1, -3, 3, 2, -3, 0]], dtype=np.float32)
    assert heap_topk(grad, 2).tolist() == [[1, 2]]
    assert heap_topk(grad, 3).tolist() == [[1, 2, 4]]


def test_buffers_are_reused_across_calls(rng):
    heap = np.empty(5, dtype=np.uint64)
    out = np.empty((3, 5), dtype=np.int32)
    for _ in range(3):
        grad = rng.standard_normal((3, 30)).astype(np.float32)
        topk_rows(grad, 5, heap, out)
        assert np.array_equal(np.sort(out, axis=1), topk_indices(grad, 5))


def test_float64_gradients_are_refused():
    with pytest.raises(TypeError, match="works on float32 gradients, got float64"):
        topk_rows(np.zeros((2, 5)), 2, np.empty(2, np.uint64), np.empty((2, 2), np.int32))


def test_arguments_the_kernels_would_overrun_are_refused():
    grad = np.ones((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"k must be in 1..5 \(the gradient's width\), got 7"):
        topk_rows(grad, 7, np.empty(7, np.uint64), np.empty((2, 7), np.int32))
    with pytest.raises(ValueError, match="k must be in 1..5"):
        unified_topk(grad, 0, np.empty(1, np.uint64), np.empty(0, np.int32))
    with pytest.raises(ValueError, match="the heap holds 2 entries, fewer than k = 3"):
        topk_rows(grad, 3, np.empty(2, np.uint64), np.empty((2, 3), np.int32))
    with pytest.raises(ValueError, match=r"the output must have shape \(2, 3\), got \(1, 3\)"):
        topk_rows(grad, 3, np.empty(3, np.uint64), np.empty((1, 3), np.int32))
    with pytest.raises(ValueError, match=r"the output must have shape \(3,\), got \(2,\)"):
        unified_topk(grad, 3, np.empty(3, np.uint64), np.empty(2, np.int32))
    with pytest.raises(ValueError, match="random selection: k must be in 1..3, got 5"):
        random_rows(np.random.default_rng(0), 2, 3, 5)


@pytest.mark.parametrize("ties", [False, True])
def test_unified_is_the_topk_of_summed_magnitudes(rng, ties):
    grad = rng.standard_normal((10, 60)).astype(np.float32)
    if ties:  # small integers: many columns sum to the same magnitude
        grad = np.round(grad * 1.5).astype(np.float32)
    rows = unified_topk(grad, 7, np.empty(7, np.uint64), np.empty(7, np.int32))
    expected = np.flatnonzero(unified_topk_mask(grad, 7)[0])
    assert np.array_equal(rows, expected)
    assert np.array_equal(unified_topk(np.asfortranarray(grad), 7, np.empty(7, np.uint64), np.empty(7, np.int32)),
                          expected)


def test_random_rows_are_distinct_reproducible_and_uniform():
    picks = random_rows(np.random.default_rng(3), 4000, 10, 3)
    assert picks.shape == (4000, 3) and picks.dtype == np.int32
    assert all(len(set(row)) == 3 for row in picks)
    assert np.array_equal(picks, random_rows(np.random.default_rng(3), 4000, 10, 3))
    counts = np.bincount(picks.ravel(), minlength=10) / picks.size
    assert np.allclose(counts, 0.1, atol=0.01)


@pytest.mark.parametrize("n,k", [(10, 3), (7, 7), (9, 1), (500, 80)])
def test_random_rows_draw_what_the_reference_draws_from_the_same_generator(n, k):
    picks = random_rows(np.random.default_rng(11), 50, n, k)
    assert np.array_equal(selection_mask(picks, n), random_k_mask(np.random.default_rng(11), 50, n, k))
