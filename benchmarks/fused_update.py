"""Does fusing meProp's dW with the optimizer's step pay? Adam on the rows the top-k chose, two ways.

    python benchmarks/fused_update.py [--rounds 15] [--calls 200] [--threads 1]

Unfused (what training does): tinyprop.kernels.add_selected_rows_grad writes each selected row's dW into
the gradient array, then tinyprop.optim.adam.adam_update_rows reads it, updates the row and its moments
and clears it (the fused step + zero_grad). Fused (a prototype, here only): one kernel sums each selected
row's dW into a row buffer that stays in the L1 cache and applies Adam to the row at once, so the gradient
array is neither written, read nor cleared. Both give the same bits (checked first). The first layer of
the MNIST MLP (784 -> 500) at mini-batch 10 and k 80, and the second (500 -> 500); alternating in one
process, medians per step.
"""
import argparse
import math
import time

from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

from tinyprop.kernels import add_selected_rows_grad, examples_by_row  # noqa: E402
from tinyprop.optim.adam import adam_update_rows  # noqa: E402

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


@njit(cache=True, error_model="numpy", parallel=True)
def adam_on_selected_rows(dy, x, selected, value, mean, mean_square, step_size, beta1, beta2, eps, tiny):
    """add_selected_rows_grad into a zeroed row buffer, then adam_update_rows's step on that row."""
    to = value.dtype.type
    step_size, beta1, beta2, eps, tiny = to(step_size), to(beta1), to(beta2), to(eps), to(tiny)
    one, zero = to(1), to(0)
    starts, examples = examples_by_row(selected, value.shape[0])
    n_in = x.shape[1]
    for r in prange(value.shape[0]):
        first, last = starts[r], starts[r + 1]
        if first == last:
            continue
        g = np.zeros(n_in, dtype=value.dtype)
        for i in range(first, last - 1, 2):
            b0, b1 = examples[i], examples[i + 1]
            g0, g1 = dy[b0, r], dy[b1, r]
            for j in range(n_in):
                g[j] = g[j] + g0 * x[b0, j] + g1 * x[b1, j]
        if (last - first) % 2:
            b = examples[last - 1]
            gb = dy[b, r]
            for j in range(n_in):
                g[j] += gb * x[b, j]
        for j in range(n_in):
            d = g[j]
            m = beta1 * mean[r, j] + (one - beta1) * d
            v = beta2 * mean_square[r, j] + (one - beta2) * d * d
            mean[r, j] = zero if abs(m) < tiny else m
            mean_square[r, j] = zero if v < tiny else v
            value[r, j] -= step_size * mean[r, j] / (math.sqrt(mean_square[r, j]) + eps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    tiny = float(np.finfo(np.float32).tiny)
    for n_in, n_out in ((784, 500), (500, 500)):
        batch, k, pool = 10, 80, 32
        xs = [rng.random((batch, n_in), dtype=np.float32) for _ in range(pool)]
        dys = [rng.standard_normal((batch, n_out), dtype=np.float32) for _ in range(pool)]
        selections = [np.sort([rng.choice(n_out, k, replace=False) for _ in range(batch)], axis=1).astype(np.int32)
                      for _ in range(pool)]
        union = np.mean([len(np.unique(selected)) for selected in selections])
        value = rng.standard_normal((n_out, n_in), dtype=np.float32)
        states = {name: [value.copy(), np.zeros_like(value), np.zeros_like(value)] for name in ("unfused", "fused")}
        grad, rows = np.zeros_like(value), np.zeros(n_out, dtype=bool)

        def unfused(i):
            v, m, s = states["unfused"]
            add_selected_rows_grad(dys[i], xs[i], selections[i], grad, rows)
            adam_update_rows(v, grad, m, s, rows, 1e-3, BETA1, BETA2, EPS, 0.0, 0.0, tiny, True)

        def fused(i):
            v, m, s = states["fused"]
            adam_on_selected_rows(dys[i], xs[i], selections[i], v, m, s, 1e-3, BETA1, BETA2, EPS, tiny)
        for i in range(3):
            unfused(i), fused(i)
        assert all(np.array_equal(a, b) for a, b in zip(states["unfused"], states["fused"])), "not the same bits"
        times = {"unfused": [], "fused": []}
        for _ in range(args.rounds):
            for name, step in (("unfused", unfused), ("fused", fused)):
                start = time.perf_counter()
                for call in range(args.calls):
                    step(call % pool)
                times[name].append((time.perf_counter() - start) / args.calls * 1e6)
        unfused_us, fused_us = np.median(times["unfused"]), np.median(times["fused"])
        print(f"{n_in} -> {n_out}, batch {batch}, k {k} ({union:.0f} rows of {n_out} a step), {args.threads} "
              f"thread(s): unfused {unfused_us:.1f} us, fused {fused_us:.1f} us a step; unfused / fused "
              f"{unfused_us / fused_us:.2f}", flush=True)


if __name__ == "__main__":
    main()
