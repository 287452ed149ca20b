"""Sparse backward kernels of a linear layer y = x W^T + b under meProp, and its forward at small batches.

W is laid out (out, in): row r is neuron r, as in the paper (Section 2.1, Figure 2).
For each example b only the rows in selected[b] (its top-k set S) take part:

    dW[r, :] += dy[b, r] * x[b, :]        for r in S_b       (eq. 9)
    dx[b, :]  = sum_{r in S_b} dy[b, r] * W[r, :]            (eq. 10)

Each touches k rows of length `in` per example: k/n of the dense work, and no
dense masked product is formed: they compute tinyprop.reference.linear_backward's dW and dx
without multiplying the zeros of the masked dy. The bias keeps its dense gradient db = sum_b dy[b],
as in both of the authors' implementations (C# nnmnist and PyTorch): the papers'
eqs. (9) and (10) sparsify the products with W and x, and db costs only `out` additions. Called with every row selected, the same loops are
the "dense loop" reference the benchmark compares against (the papers' C# figures
come from plain loops like these).

The linear kernels run on every thread Numba has (numba.set_num_threads), and give the same
bits on any number of threads: the work is split so that each entry of y, dW and dx is written by one
thread only, with the same additions in the same order as on one thread.
"""
import numpy as np
from numba import njit, prange

# The examples add_selected_rows_grad takes at a time: as many as make this many bytes of x, which then
# stay in the L2 cache (512 KB a core here) while the rows sweep them; the parser's whole x (10,000 x 2,400
# float32, 96 MB) would be read from memory once for each row.
X_BLOCK_BYTES = 256 * 1024


@njit(cache=True, parallel=True, fastmath={"reassoc"})
def small_batch_linear(x, weight, bias, y):
    """y = x W^T + b (eq. 1), the forward of tinyprop.layers.linear.Linear, for a small batch.
    x: (batch, in); weight: (out, in); bias: (out,); y: (batch, out), overwritten.

    Four rows of W and five examples at a time: twenty sums in registers, each row of W read once per five
    examples, and each five rows of x once per four rows of W. At LOOP_FORWARD_BATCHES' sizes this is faster
    than BLAS's product
    (tinyprop.layers.linear). Each entry of y is one thread's, summed in an order fixed by the compiled
    code ("reassoc" lets the sums run in SIMD lanes): the same bits on any number of threads. The blocks at
    the ends of W and of the batch repeat their last row or example, which writes the same value again.
    """
    n_out, n_in = weight.shape
    last_row, last_example = n_out - 1, x.shape[0] - 1
    zero = weight.dtype.type(0)
    for block in prange((n_out + 3) // 4):
        r0 = 4 * block
        r1, r2, r3 = min(r0 + 1, last_row), min(r0 + 2, last_row), min(r0 + 3, last_row)
        for b0 in range(0, x.shape[0], 5):
            b1, b2 = min(b0 + 1, last_example), min(b0 + 2, last_example)
            b3, b4 = min(b0 + 3, last_example), min(b0 + 4, last_example)
            s00 = s01 = s02 = s03 = s04 = s10 = s11 = s12 = s13 = s14 = zero  # s<row><example>
            s20 = s21 = s22 = s23 = s24 = s30 = s31 = s32 = s33 = s34 = zero
            for j in range(n_in):
                x0, x1, x2, x3, x4 = x[b0, j], x[b1, j], x[b2, j], x[b3, j], x[b4, j]
                w0, w1, w2, w3 = weight[r0, j], weight[r1, j], weight[r2, j], weight[r3, j]
                s00 += w0 * x0
                s01 += w0 * x1
                s02 += w0 * x2
                s03 += w0 * x3
                s04 += w0 * x4
                s10 += w1 * x0
                s11 += w1 * x1
                s12 += w1 * x2
                s13 += w1 * x3
                s14 += w1 * x4
                s20 += w2 * x0
                s21 += w2 * x1
                s22 += w2 * x2
                s23 += w2 * x3
                s24 += w2 * x4
                s30 += w3 * x0
                s31 += w3 * x1
                s32 += w3 * x2
                s33 += w3 * x3
                s34 += w3 * x4
            for r, bias_r, s0, s1, s2, s3, s4 in ((r0, bias[r0], s00, s01, s02, s03, s04),
                                                  (r1, bias[r1], s10, s11, s12, s13, s14),
                                                  (r2, bias[r2], s20, s21, s22, s23, s24),
                                                  (r3, bias[r3], s30, s31, s32, s33, s34)):
                y[b0, r], y[b1, r], y[b2, r] = s0 + bias_r, s1 + bias_r, s2 + bias_r
                y[b3, r], y[b4, r] = s3 + bias_r, s4 + bias_r


@njit(cache=True)
def examples_by_row_csr(examples, indices, offsets, n_rows):
    """Which of a batch's examples have each row in their sets, in order: row r's are batch[starts[r]:starts[r + 1]],
    positions in the batch. Example b's rows are indices[offsets[examples[b]]:offsets[examples[b] + 1]] (CSR; meAct's
    active sets hold the whole training set so, and examples[b] is b's index in it). A counting sort of the batch's
    entries by row: starts (n_rows + 1,), batch (the entries' count,) int32.
    """
    starts = np.zeros(n_rows + 1, dtype=np.int64)
    for b in range(examples.shape[0]):
        j = examples[b]
        for t in range(offsets[j], offsets[j + 1]):
            starts[indices[t] + 1] += 1
    for r in range(n_rows):
        starts[r + 1] += starts[r]
    filled = starts[:n_rows].copy()
    batch = np.empty(starts[n_rows], dtype=np.int32)
    for b in range(examples.shape[0]):
        j = examples[b]
        for t in range(offsets[j], offsets[j + 1]):
            r = indices[t]
            batch[filled[r]] = b
            filled[r] += 1
    return starts, batch


@njit(cache=True)
def examples_by_row(selected, n_rows):
    """Which examples selected each row, in order: row r's are examples[starts[r]:starts[r + 1]].

    selected: (batch, k) int32, example b's rows in selected[b]: examples_by_row_csr with offsets 0, k, 2k, ...
    Returns starts (n_rows + 1,), examples (batch * k,).
    """
    k = selected.shape[1]
    return examples_by_row_csr(np.arange(selected.shape[0]), selected.ravel(), np.arange(0, selected.size + 1, k),
                               n_rows)


@njit(cache=True, parallel=True)
def add_selected_rows_grad(dy, x, selected, weight_grad, weight_rows):
    """Eq. (9): accumulate dW on the selected rows and mark those rows as having gradient.
    Adds tinyprop.reference.linear_backward's dW for the mask of `selected`, touching only its rows.

    dy: (batch, out); x: (batch, in); selected: (batch, k) int32; weight_grad: (out, in);
    weight_rows: (out,) bool. The rows are shared out among the threads, each row adding the examples
    that selected it in their order, one after another as on one thread (the same bits on any number
    of threads); a block of examples (X_BLOCK_BYTES of x) at a time. Two examples per sweep over the
    row, which loads and stores it once per two.
    """
    n_in = x.shape[1]
    block = max(1, X_BLOCK_BYTES // (n_in * x.itemsize))
    for low in range(0, x.shape[0], block):
        starts, examples = examples_by_row(selected[low:low + block], weight_grad.shape[0])
        for r in prange(weight_grad.shape[0]):
            first, last = starts[r], starts[r + 1]
            if first == last:
                continue
            weight_rows[r] = True
            for i in range(first, last - 1, 2):
                b0, b1 = low + examples[i], low + examples[i + 1]
                g0, g1 = dy[b0, r], dy[b1, r]
                for j in range(n_in):
                    weight_grad[r, j] = weight_grad[r, j] + g0 * x[b0, j] + g1 * x[b1, j]  # (w + a) + b: in order
            if (last - first) % 2:
                b = low + examples[last - 1]
                g = dy[b, r]
                for j in range(n_in):
                    weight_grad[r, j] += g * x[b, j]


@njit(cache=True, parallel=True)
def selected_input_grad(dy, weight, selected, dx):
    """Eq. (10): dx[b] = sum over r in selected[b] of dy[b, r] * W[r]. dx: (batch, in), overwritten.
    tinyprop.reference.linear_backward's dx for the mask of `selected`, reading only those rows of W.

    Four selected rows per sweep over dx[b], which is then loaded and stored once per four
    rows instead of once per row (docs/performance.md, "The sparse kernels").
    The examples are shared out among the threads; each dx[b] is one thread's.
    """
    n_in = weight.shape[1]
    k = selected.shape[1]
    for b in prange(selected.shape[0]):
        for j in range(n_in):
            dx[b, j] = 0.0
        for t in range(0, k - 3, 4):
            r0, r1, r2, r3 = selected[b, t], selected[b, t + 1], selected[b, t + 2], selected[b, t + 3]
            g0, g1, g2, g3 = dy[b, r0], dy[b, r1], dy[b, r2], dy[b, r3]
            for j in range(n_in):
                dx[b, j] += g0 * weight[r0, j] + g1 * weight[r1, j] + g2 * weight[r2, j] + g3 * weight[r3, j]
        for t in range(k - k % 4, k):
            r = selected[b, t]
            g = dy[b, r]
            for j in range(n_in):
                dx[b, j] += g * weight[r, j]


@njit(cache=True, parallel=True)
def add_shared_rows_grad(dy, x, rows, weight_grad, weight_rows):
    """Eq. (9) with one set of rows for the whole batch (unified top-k): dW[r] += sum_b dy[b, r] * x[b]
    for r in rows, and mark those rows. dy: (batch, out); x: (batch, in); rows: (k,) int32.
    Adds tinyprop.reference.linear_backward's dW for the mask of `rows` in every example (unified_topk_mask's).

    The rows are the outer loop, four examples a sweep: each row of dW is loaded and stored once
    per four examples, and x is read from the L1 cache. For a small x this beats BLAS's product
    of dy's k gathered columns with x added into dW's rows afterwards (tinyprop.layers.linear).
    The rows (distinct, as unified_topk gives them) are shared out among the threads; each is one thread's.
    """
    n_in = x.shape[1]
    batch = dy.shape[0]
    for t in prange(rows.shape[0]):
        r = rows[t]
        weight_rows[r] = True
        for b in range(0, batch - 3, 4):
            g0, g1, g2, g3 = dy[b, r], dy[b + 1, r], dy[b + 2, r], dy[b + 3, r]
            for j in range(n_in):
                weight_grad[r, j] += g0 * x[b, j] + g1 * x[b + 1, j] + g2 * x[b + 2, j] + g3 * x[b + 3, j]
        for b in range(batch - batch % 4, batch):
            g = dy[b, r]
            for j in range(n_in):
                weight_grad[r, j] += g * x[b, j]


@njit(cache=True, parallel=True)
def shared_rows_input_grad(dy, weight, rows, dx):
    """Eq. (10) with one set of rows for the whole batch (unified top-k): dx[b] = sum over r in rows
    of dy[b, r] * W[r]. dy: (batch, out); rows: (k,) int32; dx: (batch, in), overwritten.
    tinyprop.reference.linear_backward's dx for the mask of `rows` in every example (unified_topk_mask's).

    The rows are the outer loop, four at a time: each is read from memory once and then from the
    L1 cache for every example, and W's rows are not gathered into a copy first. For a small dx
    this beats BLAS on the gathered rows; for a larger one BLAS wins (docs/performance.md).
    The two halves of the batch are two threads' (W's rows are read once a half); each dx[b] sums its
    rows in the same order on any number of threads.
    """
    n_in = weight.shape[1]
    k = rows.shape[0]
    batch = dy.shape[0]
    half = (batch + 1) // 2
    for part in prange(2):
        low, high = part * half, min(batch, (part + 1) * half)
        for b in range(low, high):
            for j in range(n_in):
                dx[b, j] = 0.0
        for t in range(0, k - 3, 4):
            r0, r1, r2, r3 = rows[t], rows[t + 1], rows[t + 2], rows[t + 3]
            for b in range(low, high):
                g0, g1, g2, g3 = dy[b, r0], dy[b, r1], dy[b, r2], dy[b, r3]
                for j in range(n_in):
                    dx[b, j] += g0 * weight[r0, j] + g1 * weight[r1, j] + g2 * weight[r2, j] + g3 * weight[r3, j]
        for t in range(k - k % 4, k):
            r = rows[t]
            for b in range(low, high):
                g = dy[b, r]
                for j in range(n_in):
                    dx[b, j] += g * weight[r, j]


@njit(cache=True)
def add_to_rows(target, rows, values, target_rows):
    """target[rows[i]] += values[i] and mark target_rows[rows[i]], for 2-d target (n, m), values
    (len(rows), m) and target_rows (n,) bool; rows may repeat."""
    for i in range(rows.shape[0]):
        r = rows[i]
        target_rows[r] = True
        for j in range(target.shape[1]):
            target[r, j] += values[i, j]


# Lookup tables (tinyprop.layers.Embedding, Embeddings): column c of ids looks up a row of table tables_of[c], which
# goes to out[b, starts[c]:starts[c] + dim] (its dim: that table's). A parser's 48 features of three tables are
# one call, so that the output and dy are walked row after row, not a table at a time (slower at the parser's
# mini-batch, docs/performance.md). The tables' tuple holds arrays of one dtype and layout: Numba indexes a tuple
# at run time only when its items share one type.


@njit(cache=True, parallel=True)
def copy_looked_up_rows(tables, ids, tables_of, starts, out):
    """out[b, starts[c]:starts[c] + dim] = tables[tables_of[c]][ids[b, c]]: tinyprop.reference.embedding_forward
    of each table, side by side. tables: a tuple of (vocab_t, dim_t) arrays; ids: (batch, n) integers, column c in
    [0, vocab of its table); tables_of, starts: (n,) integers; out: (batch, width), C-contiguous. The examples are
    shared out among the threads."""
    for b in prange(ids.shape[0]):
        for c in range(ids.shape[1]):
            row = tables[tables_of[c]][ids[b, c]]
            piece = out[b, starts[c]:starts[c] + row.shape[0]]  # a contiguous slice: the copy vectorises
            for j in range(row.shape[0]):
                piece[j] = row[j]


@njit(cache=True)
def add_to_looked_up_rows(grads, ids, tables_of, starts, dy, grad_rows):
    """grads[tables_of[c]][ids[b, c]] += dy[b, starts[c]:starts[c] + dim] for every b, c in that order, marking
    those rows in grad_rows[tables_of[c]]: tinyprop.reference.embedding_backward (NumPy's add.at) of each table,
    with the same bits. grads, grad_rows: tuples of (vocab_t, dim_t) arrays and of (vocab_t,) bool; ids,
    tables_of, starts as for copy_looked_up_rows; dy: (batch, width), C-contiguous.

    On one thread: a row repeats (a parser's NULL word is most of its pieces), so the threads could only share
    out rows, and then each thread read all of dy; at the parser's mini-batch that was slower on two threads
    than this one pass is on one (docs/performance.md)."""
    for b in range(ids.shape[0]):
        for c in range(ids.shape[1]):
            t, r = tables_of[c], ids[b, c]
            grad_rows[t][r] = True
            row = grads[t][r]
            piece = dy[b, starts[c]:starts[c] + row.shape[0]]
            for j in range(row.shape[0]):
                row[j] += piece[j]


# The parser's cube activation (tinyprop.layers.Cube) in one pass on the threads: NumPy's y * y * y and
# 3 * y * y * dz make a temporary per product, on one thread.


@njit(cache=True, parallel=True)
def cube(y, z):
    """z = y * y * y, NumPy's bits. y, z: (n,) of one float dtype."""
    for i in prange(y.shape[0]):
        z[i] = y[i] * y[i] * y[i]


@njit(cache=True, parallel=True)
def cube_grad(y, dz, dy):
    """dy = 3 y^2 dz, in the order of NumPy's 3 * y * y * dz and with its bits. y, dz, dy: (n,) of one float dtype."""
    three = y.dtype.type(3)
    for i in prange(y.shape[0]):
        dy[i] = three * y[i] * y[i] * dz[i]


@njit(cache=True, parallel=True)
def relu(y, z, active):
    """active = y > 0 and z = y * active, NumPy's bits (a negative y gives -0). y, z: (n,) of one float dtype;
    active: (n,) bool."""
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for i in prange(y.shape[0]):
        active[i] = y[i] > 0
        z[i] = y[i] * (one if active[i] else zero)


@njit(cache=True, parallel=True)
def relu_grad(dz, active, dy):
    """dy = dz * active, NumPy's bits. dz, dy: (n,) of one float dtype; active: (n,) bool."""
    one, zero = dz.dtype.type(1), dz.dtype.type(0)
    for i in prange(dz.shape[0]):
        dy[i] = dz[i] * (one if active[i] else zero)


@njit(cache=True, parallel=True, error_model="numpy")
def softmax_cross_entropy(logits, labels, probs, losses):
    """tinyprop.reference.softmax_cross_entropy's probabilities and per-example losses, a row per pass.
    logits, probs: (batch, classes); labels: (batch,) ints; losses: (batch,) of logits' dtype.

    Returns -1, or the position of the first label outside [0, classes) (then nothing is computed).
    Each row is one thread's, so the same bits on any number of threads; within a few units in the last
    place of NumPy's (its exp and its pairwise sums differ from these).
    """
    batch, classes = logits.shape
    for b in range(batch):
        if labels[b] < 0 or labels[b] >= classes:
            return b
    for b in prange(batch):
        top = logits[b, 0]
        for c in range(1, classes):
            top = max(top, logits[b, c])
        total = logits.dtype.type(0)
        for c in range(classes):
            total += np.exp(logits[b, c] - top)
        log_norm = np.log(total)
        for c in range(classes):
            probs[b, c] = np.exp(logits[b, c] - top - log_norm)
        losses[b] = log_norm - (logits[b, labels[b]] - top)
    return -1


@njit(cache=True, parallel=True)
def softmax_cross_entropy_grad(probs, labels, scale, dz):
    """dz = (probs - onehot(labels)) * scale, tinyprop.reference.softmax_cross_entropy's gradient.
    probs, dz: (batch, classes); labels: (batch,) ints; scale: a Python float (1, or 1 / batch for a mean)."""
    scale, one = probs.dtype.type(scale), probs.dtype.type(1)  # not the literal 1, which would compute in float64
    for b in prange(probs.shape[0]):
        for c in range(probs.shape[1]):
            dz[b, c] = probs[b, c] * scale
        dz[b, labels[b]] = (probs[b, labels[b]] - one) * scale


# Dropout's mask (tinyprop.layers.Dropout). The uniform of entry i is SplitMix64's output (Steele, Lea and Flood,
# 2014) for the state key + (i + 1) * gamma: a hash of (key, i), so the threads draw the entries in any order and
# the same mask comes out on any number of them.
SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
SPLITMIX_MULTIPLIERS = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


@njit(cache=True)
def splitmix64_uniform(key, i):
    """The uniform of entry i under `key` (uint64): SplitMix64's output's top 24 bits / 2^24, a float32 in [0, 1)."""
    z = key + (np.uint64(i) + np.uint64(1)) * SPLITMIX_GAMMA
    z = (z ^ (z >> np.uint64(30))) * SPLITMIX_MULTIPLIERS[0]
    z = (z ^ (z >> np.uint64(27))) * SPLITMIX_MULTIPLIERS[1]
    z = z ^ (z >> np.uint64(31))
    return np.float32(z >> np.uint64(40)) * np.float32(2.0 ** -24)


@njit(cache=True, parallel=True)
def drop_out(y, p, key, scale, z):
    """Inverted dropout's forward in one pass on the threads: scale = m / (1 - p) and z = y * scale, where m_i = 1
    when entry i's uniform (splitmix64_uniform(key, i), tinyprop.reference.dropout_uniforms) is at least p.
    y, scale, z: (n,) of one float dtype; p: float in [0, 1); key: uint64."""
    kept = y.dtype.type(1) / y.dtype.type(1 - p)
    for i in prange(y.shape[0]):
        scale[i] = kept if splitmix64_uniform(key, i) >= np.float32(p) else y.dtype.type(0)
        z[i] = y[i] * scale[i]


# Convolution as a matrix product (TKDE 2018, Section 3.3.2): with the input unfolded into
# patches, cols: (batch, positions, patch) and W: (channels, patch), the output at position p
# of channel c is W[c] . cols[b, p]. Spatial top-k keeps, per example and channel, the k
# positions S_bc with the largest |dy[b, c, p]|; only those take part in the backward.


@njit(cache=True)
def patch_offsets(channels, kernel, height, width):
    """offsets[(c, u, v)] = (c * height + u) * width + v, a (channels * kernel * kernel,) int64 array: where a
    patch's entries lie in a C-contiguous (channels, height, width) input read as one flat array, from the patch's
    top-left corner. The kernels below visit a patch through them, one index per entry in place of three nested
    loops: the same order, faster."""
    offsets = np.empty(channels * kernel * kernel, dtype=np.int64)
    j = 0
    for c in range(channels):
        for u in range(kernel):
            for v in range(kernel):
                offsets[j] = (c * height + u) * width + v
                j += 1
    return offsets


@njit(cache=True)
def patch_corner(p, stride, out_w, width):
    """The flat index of output position p's patch's top-left corner in a channel `width` wide."""
    return (p // out_w) * stride * width + (p % out_w) * stride


@njit(cache=True, parallel=True)
def add_selected_positions_grad(dy, cols, selected, weight_grad):
    """dW[c] += dy[b, c, p] * cols[b, p] for p in selected[b, c]: tinyprop.reference.conv_backward's dW,
    visiting only the selected positions.

    dy: (batch, channels, positions); cols: (batch, positions, patch); selected: (batch, channels, k).
    The channels are shared out among the threads, each adding its examples in order: the same bits on any number.
    """
    patch = cols.shape[2]
    for c in prange(selected.shape[1]):
        for b in range(selected.shape[0]):
            for t in range(selected.shape[2]):
                p = selected[b, c, t]
                g = dy[b, c, p]
                for j in range(patch):
                    weight_grad[c, j] += g * cols[b, p, j]


@njit(cache=True, parallel=True)
def add_selected_positions_input_grad(dy, weight, selected, kernel, stride, out_w, padded_dx):
    """dx += sum over selected (b, c, p) of dy[b, c, p] * W[c] laid back onto position p's patch.

    The sparse form of col2im(dy W), tinyprop.reference.conv_backward's dx: only the k selected positions per
    example and channel are visited. padded_dx: (batch, C_in, H + 2 padding, W + 2 padding), C-contiguous,
    accumulated into; each example's by one thread, in the order of the loops (the same bits on any number of
    threads).
    """
    batch, channels, height, width = padded_dx.shape
    offsets = patch_offsets(channels, kernel, height, width)
    for b in prange(batch):
        flat = padded_dx[b].reshape(channels * height * width)
        for c in range(selected.shape[1]):
            w = weight[c]
            for t in range(selected.shape[2]):
                p = selected[b, c, t]
                g = dy[b, c, p]
                corner = patch_corner(p, stride, out_w, width)
                for j in range(offsets.shape[0]):
                    flat[corner + offsets[j]] += g * w[j]


@njit(cache=True, parallel=True)
def im2col_copy(padded, kernel, stride, out_w, cols):
    """cols[b, i*out_w + j, (c, u, v)] = padded[b, c, i*stride + u, j*stride + v]: the patches, one row each.

    padded: (batch, channels, H + 2p, W + 2p), C-contiguous; cols: (batch, positions, channels * kernel * kernel).
    """
    batch, channels, height, width = padded.shape
    offsets = patch_offsets(channels, kernel, height, width)
    for b in prange(batch):
        flat = padded[b].reshape(channels * height * width)
        for p in range(cols.shape[1]):
            corner = patch_corner(p, stride, out_w, width)
            for j in range(offsets.shape[0]):
                cols[b, p, j] = flat[corner + offsets[j]]


@njit(cache=True, parallel=True)
def col2im_add(dcols, kernel, stride, out_w, padded):
    """The adjoint of im2col: padded[b, c, i*stride + u, j*stride + v] += dcols[b, i*out_w + j, (c, u, v)].

    dcols: (batch, positions, channels * kernel * kernel); padded: (batch, channels, H + 2p, W + 2p), C-contiguous;
    each example's by one thread, in the order of the loops (the same bits on any number of threads).
    """
    batch, channels, height, width = padded.shape
    offsets = patch_offsets(channels, kernel, height, width)
    for b in prange(batch):
        flat = padded[b].reshape(channels * height * width)
        for p in range(dcols.shape[1]):
            corner = patch_corner(p, stride, out_w, width)
            for j in range(offsets.shape[0]):
                flat[corner + offsets[j]] += dcols[b, p, j]


# meAct (TKDE 2018, Section 3.5, Algorithm 3): each example b uses only its own active units of a hidden
# layer, held CSR-like for the whole training set: example j's units are indices[offsets[j]:offsets[j + 1]].
# examples[b] is the training-set index of the batch's example b. The inactive units' outputs are zero (or,
# with act_mask "recorded", held at constants that do not depend on W or x), so these kernels skip their
# gradients.


@njit(cache=True, parallel=True, fastmath={"reassoc"})
def set_active_rows(x, weight, bias, examples, indices, offsets, y):
    """y[b, r] = W[r] . x[b] + bias[r] for r in example examples[b]'s active set; the other entries of y (the
    masked units': zero, or the held constants of act_mask "recorded") are left as the caller set them.
    y: (batch, out). tinyprop.reference.active_linear_forward, reading only the active rows of W.

    Example by example (each y[b] one thread's), eight of its rows a pass over x[b]: eight sums in registers
    for each load of x, where one row at a time would load x[b] as often as W. (Row by row, each row read once
    for the examples that need it, was slower: a row of MNIST's serves two of ten examples on average.)
    "reassoc" lets the dot products run in SIMD lanes.
    """
    n_in = x.shape[1]
    zero = weight.dtype.type(0)
    for b in prange(x.shape[0]):
        j = examples[b]
        t, last = offsets[j], offsets[j + 1]
        while t + 8 <= last:
            r0, r1, r2, r3 = indices[t], indices[t + 1], indices[t + 2], indices[t + 3]
            r4, r5, r6, r7 = indices[t + 4], indices[t + 5], indices[t + 6], indices[t + 7]
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
            for c in range(n_in):
                v = x[b, c]
                s0 += weight[r0, c] * v
                s1 += weight[r1, c] * v
                s2 += weight[r2, c] * v
                s3 += weight[r3, c] * v
                s4 += weight[r4, c] * v
                s5 += weight[r5, c] * v
                s6 += weight[r6, c] * v
                s7 += weight[r7, c] * v
            y[b, r0], y[b, r1], y[b, r2], y[b, r3] = s0 + bias[r0], s1 + bias[r1], s2 + bias[r2], s3 + bias[r3]
            y[b, r4], y[b, r5], y[b, r6], y[b, r7] = s4 + bias[r4], s5 + bias[r5], s6 + bias[r6], s7 + bias[r7]
            t += 8
        for u in range(t, last):
            r = indices[u]
            s = zero
            for c in range(n_in):
                s += weight[r, c] * x[b, c]
            y[b, r] = s + bias[r]


@njit(cache=True, parallel=True)
def add_active_rows_grad(dy, x, examples, indices, offsets, weight_grad, bias_grad, weight_rows, bias_rows):
    """dW[r] += dy[b, r] x[b] and db[r] += dy[b, r] for r in example examples[b]'s active set, marking those
    rows of W and b. tinyprop.reference.active_linear_backward's dW and db, touching only the active rows.

    Row by row (examples_by_row_csr), the rows shared out among the threads, each adding its examples in
    the batch's order: the same bits on any number of threads."""
    starts, batch = examples_by_row_csr(examples, indices, offsets, weight_grad.shape[0])
    n_in = x.shape[1]
    for r in prange(weight_grad.shape[0]):
        first, last = starts[r], starts[r + 1]
        if first == last:
            continue
        weight_rows[r] = bias_rows[r] = True
        for i in range(first, last):
            b = batch[i]
            g = dy[b, r]
            bias_grad[r] += g
            for c in range(n_in):
                weight_grad[r, c] += g * x[b, c]


@njit(cache=True, parallel=True)
def active_rows_input_grad(dy, weight, examples, indices, offsets, dx):
    """dx[b] = sum of dy[b, r] W[r] over r in example examples[b]'s active set; dx: (batch, in), overwritten.
    tinyprop.reference.active_linear_backward's dx, reading only the active rows of W; each dx[b] one thread's."""
    for b in prange(dx.shape[0]):
        dx[b, :] = 0.0
        j = examples[b]
        for t in range(offsets[j], offsets[j + 1]):
            r = indices[t]
            g = dy[b, r]
            for c in range(dx.shape[1]):
                dx[b, c] += g * weight[r, c]
