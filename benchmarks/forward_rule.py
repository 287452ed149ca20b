"""Linear.forward's rule: BLAS or tinyprop.kernels.small_batch_linear, by batch size.

    python benchmarks/forward_rule.py [--rounds 9] [--threads 1]

y = x W^T + b at the shapes of the papers' MLP (784 -> 500, 500 -> 500, 500 -> 10) and the parser's
(2400 -> 500, 500 -> 103), for batches from 1 to 64, each way on each thread count, alternating in one
process; medians per call, and BLAS's time over the kernel's (above 1: the kernel is faster). The rule in
tinyprop/layers/linear.py (LOOP_FORWARD_BATCHES) is read from this table, on one thread.
"""
import argparse
import time

from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import numpy as np  # noqa: E402

from tinyprop.kernels import small_batch_linear  # noqa: E402
from tinyprop.tasks.run import using_threads  # noqa: E402

SHAPES = ((784, 500), (500, 500), (500, 10), (2400, 500), (500, 103))
BATCHES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 64)


def blas(x, weight, bias, y):
    """Linear.forward's product outside LOOP_FORWARD_BATCHES."""
    return np.ascontiguousarray((weight @ x.T).T) + bias


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", default="1")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'shape':>12} {'batch':>5} {'threads':>7} {'blas us':>9} {'kernel us':>9} {'blas/kernel':>11}")
    for n_in, n_out in SHAPES:
        weight = rng.standard_normal((n_out, n_in), dtype=np.float32)
        bias = rng.standard_normal(n_out, dtype=np.float32)
        for batch in BATCHES:
            x = rng.random((batch, n_in), dtype=np.float32)
            y = np.empty((batch, n_out), dtype=np.float32)
            calls = max(5, int(3e7 // (batch * n_in * n_out)))
            for count in map(int, args.threads.split(",")):
                times = {"blas": [], "kernel": []}
                with using_threads(count):
                    small_batch_linear(x, weight, bias, y)
                    for _ in range(args.rounds):
                        for name, compute in (("blas", blas), ("kernel", small_batch_linear)):
                            start = time.perf_counter()
                            for _ in range(calls):
                                compute(x, weight, bias, y)
                            times[name].append((time.perf_counter() - start) / calls * 1e6)
                blas_us, kernel_us = np.median(times["blas"]), np.median(times["kernel"])
                print(f"{n_in:>5} -> {n_out:<4} {batch:>5} {count:>7} {blas_us:>9.1f} {kernel_us:>9.1f} "
                      f"{blas_us / kernel_us:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
