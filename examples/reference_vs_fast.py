"""The fast meProp layer against the plain NumPy reference.

tinyprop.reference.linear_backward is meProp's backward written as the paper writes it
(eqs. 9, 10): mask all but each example's k largest |dy| (reference.topk_mask), then do the dense
backward, dW = top_k(dy)^T x, dx = top_k(dy) W. tinyprop.layers.Linear(k=...) computes the same
without forming the masked dy (Numba loops over the k selected rows of W). Here both run on one
random input and output gradient, and their results are printed side by side.

Run: python examples/reference_vs_fast.py   (prints a few entries of dW and dx and the max abs differences)
"""
import numpy as np

from tinyprop import reference
from tinyprop.layers import Linear


def main(batch=4, n_in=30, n_out=40, k=5):
    rng = np.random.default_rng(0)
    layer = Linear(n_in, n_out, k=k, rng=rng)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    dy = rng.standard_normal((batch, n_out)).astype(np.float32)  # as if from the layer above

    layer(x)
    fast = {"dW": layer.weight.grad, "db": layer.bias.grad, "dx": layer.backward(dy).copy()}
    mask = reference.topk_mask(dy, k)  # (batch, n_out): True at each example's k largest |dy|
    ref_dW, ref_db, ref_dx = reference.linear_backward(x, layer.weight.value, dy, mask)
    ref = {"dW": ref_dW, "db": ref_db, "dx": ref_dx}

    rows = [int(r) for r in np.flatnonzero(ref_dW[:, 0])[:3]]  # rows of W that got gradient: some example had them in its top-k
    print(f"Linear({n_in}, {n_out}, k={k}), batch {batch}: {len(np.flatnonzero(ref_dW.any(axis=1)))} of {n_out} "
          "rows of W got gradient")
    print(f"{'entry':>10} {'fast':>12} {'reference':>12}")
    for name, index in [("dW", (r, 0)) for r in rows] + [("dx", (0, j)) for j in range(3)]:
        print(f"{name}[{index[0]}, {index[1]}]".rjust(10) + f" {fast[name][index]:12.6f} {ref[name][index]:12.6f}")
    differences = {name: float(np.abs(fast[name] - ref[name]).max()) for name in fast}
    scales = {name: float(np.abs(ref[name]).max()) for name in ref}
    for name in fast:
        print(f"{name}: max abs difference {differences[name]:.2e} (max abs entry {scales[name]:.2f})")
    return {"fast": fast, "reference": ref, "max_abs_difference": differences}


if __name__ == "__main__":
    main()
