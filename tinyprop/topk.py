"""Choosing which output units of a layer get gradient in meProp.

meProp (TKDE 2018, Section 2.1, Algorithm 1 line 2) keeps, for each example, the
indices S = {t_1, ..., t_k} of the k entries of dL/dy with the largest magnitude.
The authors' C# code finds them with a min-heap of size k, which costs O(n log k)
time and O(k) extra memory per example; so does `topk_rows` below, with two speed-ups
that leave its result unchanged. Its heap is 4-ary rather than binary: the sift-down takes half
as many levels. And the heap is not
started from the first k entries but from the first k that reach a floor read from a
histogram of the magnitudes (`magnitude_floor`, 128 counters): the weakest kept entry is
then near the k-th largest from the start, and the entries that a plain heap would take in
and later drop are turned away at once. What each gains: docs/performance.md, "The top-k
selection".

Tie rule: when magnitudes are equal the lower index wins. The selection is then
exactly what a stable descending argsort picks,

    np.argsort(-np.abs(g), kind="stable")[:k],

which is `tinyprop.reference.topk_indices`, the reference the tests hold it against.

The heap holds one 64-bit key per entry: the bits of |g| (a non-negative float32
orders like its bit pattern read as an integer) above the bits of (2^32 - 1 - index).
Comparing keys is then one integer comparison that already applies the tie rule,
which keeps the heap's inner loop short. This needs float32 gradients; meProp layers
compute in float32, as the authors' C# does. A NaN's bits exceed infinity's, so NaN
gradients are selected first (and the training loop stops on the NaN loss).

Three selections, used by `tinyprop.layers.Linear`:
- `topk_rows`: per-example top-k, the paper's meProp and nnmnist's `mlptop` (also `Conv2d`'s
  spatial top-k, per example and channel; the LSTM's per-gate top-k calls `topk_of_row` from
  its Numba time loop);
- `random_rows`: k random indices per example, nnmnist's `mlprand`;
- `unified_topk`: one top-k set for the whole mini-batch from the summed |dy|
  (Section 3.3.1, "Simple Unified Top-k").
The per-example sets feed the sparse kernels of `tinyprop.kernels`; the unified set's k
rows are read in place by loops for a small batch, gathered and multiplied by BLAS for a larger one.
"""
import numba
import numpy as np
from numba import njit, prange

# From this many rows (a parser's mini-batch, a convolution's examples x channels) the rows are shared out
# among the threads, each with a heap of its own; below it, starting the threads would cost more than they save.
SHARED_TOPK_ROWS = 256
INDEX_MASK = np.uint64(0xFFFFFFFF)
SIGN_MASK = np.uint32(0x7FFFFFFF)


@njit(cache=True)
def _key(bits, index):
    """Heap key of entry `index` whose float32 bit pattern is `bits`: larger key = kept longer."""
    return (np.uint64(bits & SIGN_MASK) << np.uint64(32)) | (INDEX_MASK - np.uint64(index))


ARITY = 4  # children per node: half a binary heap's depth, and a node's children lie side by side


@njit(cache=True)
def _sift_down(heap, position, size):
    """Move heap[position] down until all its children hold larger keys (the root is the smallest key).

    The children of node p are ARITY * p + 1 ... ARITY * p + ARITY.
    """
    item = heap[position]
    while True:
        first = ARITY * position + 1
        if first >= size:
            break
        child, smallest = first, heap[first]
        for other in range(first + 1, min(first + ARITY, size)):
            if heap[other] < smallest:
                child, smallest = other, heap[other]
        if smallest >= item:
            break
        heap[position] = smallest
        position = child
    heap[position] = item


BUCKET_SHIFT = np.uint32(19)  # buckets 2^19 wide in the bit pattern: 23 mantissa bits - 4, sixteen per factor of two
BUCKETS = 128  # about eight factors of two below the largest magnitude; all smaller ones share the last bucket


@njit(cache=True)
def magnitude_floor(bits, k, counts):
    """A magnitude (as float32 bits) that at least k of the entries reach: a lower bound on the k-th largest.

    From a histogram of the magnitudes' bit patterns, in buckets 2^19 wide counted down from
    the largest one (sixteen buckets per factor of two; a bucket's ends differ by a ratio of
    1.03 to 1.06; counts: a reusable (BUCKETS,) int32 buffer): the floor is the lower edge of
    the bucket in which the count of entries from the top reaches k. 0, no floor, when that
    is the last bucket (fewer than k entries within a factor of about 256 of the largest, as
    when most gradients are zero), and where the histogram would cost more than it saves
    (k < 5 or k > 7/8 of the entries, where it made the selection slower; docs/performance.md).
    """
    n = bits.shape[0]
    if k < 5 or 8 * k > 7 * n:
        return np.uint32(0)
    top = np.uint32(0)
    for i in range(n):
        top = max(top, bits[i] & SIGN_MASK)
    counts[:] = 0
    for i in range(n):
        counts[min(np.int64((top - (bits[i] & SIGN_MASK)) >> BUCKET_SHIFT), BUCKETS - 1)] += 1
    reached = 0
    for bucket in range(BUCKETS - 1):
        reached += counts[bucket]
        if reached >= k:  # buckets 0..bucket hold the magnitudes m with top - m < (bucket + 1) << BUCKET_SHIFT
            return np.uint32(max(np.int64(top) + 1 - ((bucket + 1) << np.int64(BUCKET_SHIFT)), 0))
    return np.uint32(0)


@njit(cache=True)
def topk_of_row(bits, k, heap, counts, out_indices):
    """out_indices[:k] = indices of the k largest |values| (ties: lower index), in no set order.

    bits: (n,) uint32, the float32 values' bit patterns; heap: a reusable (>= k,) uint64 buffer;
    counts: a reusable (BUCKETS,) int32 buffer for `magnitude_floor`. The heap starts from
    the first k entries that reach the floor (no entry below it can be among the k largest).
    """
    if k == bits.shape[0]:  # all of them, nothing to choose: a k capped by a layer's width, a dense-loop reference
        for i in range(k):
            out_indices[i] = i
        return
    floor = magnitude_floor(bits, k, counts)
    filled, scanned = 0, 0
    while filled < k:
        if bits[scanned] & SIGN_MASK >= floor:
            heap[filled] = _key(bits[scanned], scanned)
            filled += 1
        scanned += 1
    for start in range((k - 2) // ARITY, -1, -1):  # from the last node with a child up to the root
        _sift_down(heap, start, k)
    smallest = np.uint32(heap[0] >> np.uint64(32))  # the magnitude bits of the root, the weakest kept entry
    for i in range(scanned, bits.shape[0]):
        if bits[i] & SIGN_MASK < smallest:  # most entries fail here, before any 64-bit key is formed
            continue
        key = _key(bits[i], i)
        if key > heap[0]:
            heap[0] = key
            _sift_down(heap, 0, k)
            smallest = np.uint32(heap[0] >> np.uint64(32))
    for i in range(k):
        out_indices[i] = np.int32(INDEX_MASK - (heap[i] & INDEX_MASK))


@njit(cache=True)
def _topk_rows(bits, k, heap, out_indices):
    counts = np.empty(BUCKETS, dtype=np.int32)
    for b in range(bits.shape[0]):
        topk_of_row(bits[b], k, heap, counts, out_indices[b])


@njit(cache=True, parallel=True)
def _topk_rows_shared(bits, k, parts, out_indices):
    """_topk_rows with the rows cut into `parts` runs, one a thread."""
    for part in prange(parts):
        heap = np.empty(k, dtype=np.uint64)
        counts = np.empty(BUCKETS, dtype=np.int32)
        for b in range(part * bits.shape[0] // parts, (part + 1) * bits.shape[0] // parts):
            topk_of_row(bits[b], k, heap, counts, out_indices[b])


def check_selection(grad, k, heap, out_indices, out_shape):
    """Readable errors before the kernels, which would otherwise read or write past their arrays."""
    if grad.dtype != np.float32:
        raise TypeError(f"top-k selection works on float32 gradients, got {grad.dtype}: meProp layers "
                        "compute in float32, so give their backward a float32 dy")
    if not 1 <= k <= grad.shape[1]:
        raise ValueError(f"top-k selection: k must be in 1..{grad.shape[1]} (the gradient's width), got {k}")
    if heap.shape[0] < k:
        raise ValueError(f"top-k selection: the heap holds {heap.shape[0]} entries, fewer than k = {k}")
    if out_indices.shape != out_shape:
        raise ValueError(f"top-k selection: the output must have shape {out_shape}, got {out_indices.shape}")


def topk_rows(grad, k, heap, out_indices):
    """Per-example top-k: out_indices[b] = top-k indices of |grad[b]|. grad: (batch, n) float32, out: (batch, k).

    tinyprop.reference.topk_indices(grad, k), in no set order within a row, faster: `topk_of_row`'s
    heap of k entries, O(n log k) an example, instead of sorting the n. From SHARED_TOPK_ROWS rows on, the
    threads share the rows out, each with a heap of its own (`heap` is then not used).
    """
    check_selection(grad, k, heap, out_indices, (grad.shape[0], k))
    threads = numba.get_num_threads()
    if threads > 1 and grad.shape[0] >= SHARED_TOPK_ROWS:
        _topk_rows_shared(grad.view(np.uint32), k, threads, out_indices)
    else:
        _topk_rows(grad.view(np.uint32), k, heap, out_indices)


def unified_topk(grad, k, heap, out_indices):
    """One top-k set for the mini-batch, from sum over examples of |grad| (Section 3.3.1).

    grad: (batch, n) float32; out_indices: (k,) int32, filled in place and returned sorted.
    The set of tinyprop.reference.unified_topk_mask (the same float32 sums, the same ties), by the heap
    on the summed magnitudes instead of a sort.
    """
    check_selection(grad, k, heap, out_indices, (k,))
    _unified_topk(np.ascontiguousarray(grad), k, heap, out_indices)
    return out_indices


@njit(cache=True)
def _unified_topk(grad, k, heap, out_indices):
    summed = np.zeros(grad.shape[1], dtype=grad.dtype)  # sum_b |grad[b]| in example order, as numpy adds a C array
    for b in range(grad.shape[0]):
        for j in range(grad.shape[1]):
            summed[j] += abs(grad[b, j])
    counts = np.empty(BUCKETS, dtype=np.int32)
    topk_of_row(summed.view(np.uint32), k, heap, counts, out_indices)
    out_indices.sort()


@njit(cache=True)
def _floyd_sample_rows(uniforms, n, seen, out_indices):
    """Robert Floyd's sampling: k distinct indices of range(n) per row, every k-subset equally likely.

    uniforms: (batch, k) in [0, 1); seen: (n,) bool scratch, all False on entry and exit.
    """
    batch, k = out_indices.shape
    for b in range(batch):
        for t in range(k):
            last = n - k + t
            pick = int(uniforms[b, t] * (last + 1))  # uniform on 0..last
            if seen[pick]:
                pick = last
            seen[pick] = True
            out_indices[b, t] = pick
        for t in range(k):
            seen[out_indices[b, t]] = False


def random_rows(rng, batch, n, k):
    """k distinct indices drawn uniformly per example (nnmnist's mlprand). Returns (batch, k) int32.

    The indices that tinyprop.reference.random_k_mask(rng, batch, n, k) marks, given a generator in the
    same state: the same Floyd's sampling compiled, writing k indices an example instead of an (n,) mask.
    """
    if not 1 <= k <= n:
        raise ValueError(f"random selection: k must be in 1..{n}, got {k}")
    out = np.empty((batch, k), dtype=np.int32)
    _floyd_sample_rows(rng.random((batch, k)), n, np.zeros(n, dtype=bool), out)
    return out
