"""meProp in plain NumPy, to read beside the paper (TKDE 2018, Section 2.1; ICML 2017).

A layer y = x W^T + b keeps, in its backward, only the k entries of dL/dy with the largest
magnitude, top_k(dy), and passes them on as the dense backward would (Algorithm 1):

    dL/dW <- top_k(dy)^T x    (eq. 9)        dL/dx <- top_k(dy) W    (eq. 10)

The fast layers (tinyprop.layers.Linear, LSTM, Conv2d) compute exactly these functions, with the
same ties (the lower index wins) and the same dense bias gradient; the tests hold them to it.

Then the plain versions of kernels that are not meProp's: the loss (tinyprop.layers.SoftmaxCrossEntropy), a
lookup table's output and gradient (tinyprop.layers.Embedding), and the uniforms of dropout's mask
(tinyprop.layers.Dropout).
meAct (TKDE 2018, Section 3.5, Algorithm 3) is at the end: the selection of each example's active
units from its accumulated gradients, and a hidden layer's forward and backward on them alone
(tinyprop.meact and tinyprop.layers.ActiveLinear compute the same faster).
Everything here computes in the dtype it is given (the layers' float32, or float64 for a check).
"""
import numpy as np


def topk_indices(g, k):
    """S = {t_1, ..., t_k} (Algorithm 1, line 2): the indices of the k largest |g| along the last axis,
    ties to the lower index (a stable sort), in ascending order. g: (..., n) -> (..., k)."""
    return np.sort(np.argsort(-np.abs(g), axis=-1, kind="stable")[..., :k], axis=-1)


def selection_mask(indices, n):
    """mask[..., i] is True when i is among indices[...], so that top_k(dy) = where(mask, dy, 0).
    indices: (..., k) of range(n), as the layers keep them in `selected` -> (..., n) bool."""
    mask = np.zeros(indices.shape[:-1] + (n,), dtype=bool)
    np.put_along_axis(mask, indices, True, axis=-1)
    return mask


def topk_mask(dy, k):
    """Per-example top-k (Algorithm 1): row b keeps its own S_b. dy: (batch, n) -> (batch, n) bool
    (any leading axes: each row along the last one has its own S)."""
    return selection_mask(topk_indices(dy, k), dy.shape[-1])


def unified_topk_mask(dy, k):
    """Simple Unified Top-k (Section 3.3.1): one S for the mini-batch, the k largest sum_b |dy[b, i]|.
    dy: (batch, n) -> (batch, n) bool, every row the same (a read-only view of one)."""
    return np.broadcast_to(topk_mask(np.abs(dy).sum(axis=0), k), dy.shape)


def random_k_mask(rng, batch, n, k):
    """Random-k (nnmnist's mlprand): per example, k distinct indices of range(n), every k-subset equally
    likely, by Robert Floyd's sampling from rng.random((batch, k)). rng: a numpy Generator -> (batch, n) bool."""
    mask = np.zeros((batch, n), dtype=bool)
    for b, uniforms in enumerate(rng.random((batch, k))):
        for t, u in enumerate(uniforms):
            last = n - k + t
            pick = int(u * (last + 1))  # uniform on 0..last; if taken, last is new (it was out of reach before)
            mask[b, last if mask[b, pick] else pick] = True
    return mask


def linear_backward(x, W, dy, mask=None):
    """meProp's backward of y = x W^T + b: eqs. (9, 10), the dense backward (eqs. 7, 8) of top_k(dy).

    x: (batch, in), W: (out, in), dy: (batch, out), mask: (batch, out) bool, None for all
    -> dW: (out, in), db: (out,), dx: (batch, in). db = sum_b dy stays dense, as in the authors'
    C# and PyTorch code: the equations sparsify the products with W and x only.
    """
    kept = dy if mask is None else np.where(mask, dy, 0)
    return kept.T @ x, dy.sum(axis=0), kept @ W


def sigmoid(z):
    """sigma(z) = 1 / (1 + e^-z), element-wise."""
    return 1 / (1 + np.exp(-z))


def lstm_backward(W_x, W_h, b, x, dh, k=None):
    """An LSTM's forward over x, then backpropagation through time of dh = dL/dh_t with meProp on each gate
    (Section 2.3.2, "the gates independently"). z_t = W_x x_t + b + W_h h_{t-1} holds gates i, f, g, o in
    blocks of H rows; at each step each block of dz_t = dL/dz_t keeps its k largest entries (topk_mask, ties
    to the lower index), and only those carry eqs. (9, 10) through W_x and W_h to dx_t and dh_{t-1}. The
    cell path dc_{t-1} = f dc_t and db = sum_t dz_t stay dense.

    W_x: (4H, in), W_h: (4H, H), b: (4H,), x: (steps, in), dh: (steps, H), k: None for all
    -> dW_x: (4H, in), dW_h: (4H, H), db: (4H,), dx: (steps, in), and mask: (steps, 4H) bool, the entries
    of dz kept.
    """
    steps, n = dh.shape
    h, c = np.zeros((steps + 1, n), x.dtype), np.zeros((steps + 1, n), x.dtype)  # h[t + 1] is h_t; h[0] = 0
    gates = np.zeros((steps, 4 * n), x.dtype)
    for t in range(steps):
        z = W_x @ x[t] + b + W_h @ h[t]
        gates[t] = np.concatenate([sigmoid(z[:2 * n]), np.tanh(z[2 * n:3 * n]), sigmoid(z[3 * n:])])
        i, f, g, o = np.split(gates[t], 4)
        c[t + 1] = f * c[t] + i * g
        h[t + 1] = o * np.tanh(c[t + 1])
    dW_x, dW_h, dx, dz = np.zeros_like(W_x), np.zeros_like(W_h), np.zeros_like(x), np.zeros_like(gates)
    mask = np.ones(dz.shape, dtype=bool)
    dh_next, dc_next = np.zeros(n, x.dtype), np.zeros(n, x.dtype)
    for t in range(steps - 1, -1, -1):
        i, f, g, o = np.split(gates[t], 4)
        dh_t, tanh_c = dh[t] + dh_next, np.tanh(c[t + 1])
        dc = dh_t * o * (1 - tanh_c * tanh_c) + dc_next
        dz[t] = np.concatenate([dc * g * i * (1 - i), dc * c[t] * f * (1 - f), dc * i * (1 - g * g),
                                dh_t * tanh_c * o * (1 - o)])
        if k is not None:
            mask[t] = topk_mask(dz[t].reshape(4, n), k).ravel()
        kept = np.where(mask[t], dz[t], 0)
        dW_x += np.outer(kept, x[t])
        dW_h += np.outer(kept, h[t])
        dx[t], dh_next, dc_next = kept @ W_x, kept @ W_h, dc * f
    return dW_x, dW_h, dz.sum(axis=0), dx, mask


def conv_forward(x, W, b, kernel, stride, padding):
    """A convolution (cross-correlation, Section 3.3.2) by its definition, one output position at a time:
    y[:, c, i, j] = W[c] . the patch of x (zero-padded) at (i * stride, j * stride), plus b[c].
    x: (batch, C_in, H, W_in), W: (C_out, C_in * kernel * kernel), b: (C_out,) -> (batch, C_out, H_out, W_out)."""
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h, out_w = ((size + 2 * padding - kernel) // stride + 1 for size in x.shape[2:])
    w = W.reshape(W.shape[0], x.shape[1], kernel, kernel)
    y = np.zeros((x.shape[0], W.shape[0], out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, :, i * stride:i * stride + kernel, j * stride:j * stride + kernel]
            y[:, :, i, j] = np.einsum("bcuv,ocuv->bo", patch, w) + b
    return y


def conv_backward(x, W, dy, kernel, stride, padding, mask=None):
    """Spatial top-k meProp's backward of conv_forward (Section 3.3.2): eqs. (9, 10) at each output position,
    for the entries of dy in `mask` (per example and channel, its k positions of largest |dy|: topk_mask over
    dy.reshape(batch, C_out, -1)): dW[c] gets sum of kept dy[b, c, i, j] times the patch at (i, j), and
    dx gets each one's dy W[c] laid back onto its patch. db = sum dy stays dense, as in linear_backward.
    x: (batch, C_in, H, W_in), W: (C_out, C_in * kernel * kernel), dy: (batch, C_out, H_out, W_out), mask: dy's
    shape, bool, None for all -> dW: W's shape, db: (C_out,), dx: x's shape."""
    kept = dy if mask is None else np.where(mask, dy, 0)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    w = W.reshape(W.shape[0], x.shape[1], kernel, kernel)
    dw, dpadded = np.zeros_like(w), np.zeros_like(padded)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            rows, columns = slice(i * stride, i * stride + kernel), slice(j * stride, j * stride + kernel)
            dw += np.einsum("bo,bcuv->ocuv", kept[:, :, i, j], padded[:, :, rows, columns])
            dpadded[:, :, rows, columns] += np.einsum("bo,ocuv->bcuv", kept[:, :, i, j], w)
    dx = dpadded[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]]
    return dw.reshape(W.shape), dy.sum(axis=(0, 2, 3)), dx


def softmax_cross_entropy(z, t):
    """The papers' classification loss: per example b, -log softmax(z_b)[t_b], softmax(z_b) computed from z_b
    less its maximum (the same function, and exp cannot overflow). z: (batch, classes); t: (batch,) ints.
    Returns (losses (batch,), probs (batch, classes)); the gradient of sum_b losses[b] in z is probs - onehot(t).
    """
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(z.shape[0]), t], np.exp(log_probs)


def embedding_forward(E, ids):
    """A lookup table's output: the rows E[ids[b, i]] of the table E: (vocab, dim), side by side for each example.
    ids: (batch, n) -> (batch, n * dim)."""
    return E[ids].reshape(ids.shape[0], ids.shape[1] * E.shape[1])


def embedding_backward(E, ids, dy):
    """Its gradient: each piece dy[b, i * dim:(i + 1) * dim] added onto row ids[b, i], in order (a row used twice
    gets both) -> dE: (vocab, dim). The ids get none."""
    dE = np.zeros_like(E)
    np.add.at(dE, ids.ravel(), dy.reshape(ids.size, E.shape[1]))
    return dE


def dropout_uniforms(key, n):
    """The uniforms of Dropout's mask for `key`: entry i's is SplitMix64's output for the state key + (i + 1) *
    0x9E3779B97F4A7C15 (Steele, Lea and Flood, 2014, in uint64 arithmetic, which wraps), its top 24 bits / 2^24
    -> (n,) float32 in [0, 1). An entry is kept when its uniform is at least the rate p."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)


def meact_active_mask(g, p):
    """Algorithm 3, lines 6-10, as tinyprop reads line 7: unit i stays active for example j when its share of
    the example's accumulated absolute gradient exceeds p, g_ij > p * sum_i g_ij; the other units are masked
    (their activation a_ij is set to zero). An example whose gradients are all zero keeps no unit.
    g: (examples, units), |dL/dy| summed over the dense epochs -> (examples, units) bool."""
    return g > p * g.sum(axis=1, keepdims=True, dtype=np.float64)


def active_sets(mask):
    """A mask's active sets held CSR-like: (indices int32, offsets int64), example j's units
    indices[offsets[j]:offsets[j + 1]], ascending. mask: (examples, units) bool."""
    offsets = np.zeros(mask.shape[0] + 1, dtype=np.int64)
    np.cumsum(mask.sum(axis=1), out=offsets[1:])
    return np.nonzero(mask)[1].astype(np.int32), offsets


def active_linear_forward(x, W, b, mask):
    """meAct's forward of a hidden layer: y = x W^T + b on each example's active units, 0 on the masked ones,
    which "contribute none to the results" (Section 3.5).
    x: (batch, in), W: (out, in), b: (out,), mask: (batch, out) bool -> y: (batch, out)."""
    return np.where(mask, x @ W.T + b, 0)


def active_linear_backward(x, W, dy, mask):
    """Its backward: a masked unit's output is the constant 0, so its gradient is zero, for W's row and the
    bias entry too; the dense backward (eqs. 7, 8) of the masked dy -> dW: (out, in), db: (out,), dx: (batch, in)."""
    return linear_backward(x, W, np.where(mask, dy, 0))
