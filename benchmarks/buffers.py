"""Cost of fresh dx arrays (the default) against reused buffers (the training loops' opt-in): the MNIST
meProp MLP 784-500-500-10 (top-k 80, Adam), one training step at batch 10, in one process, the two
variants alternating, medians over rounds.

    python benchmarks/buffers.py [ROUNDS] [STEPS]    (docs/performance.md: 600 20)
"""
from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from tinyprop.layers import Linear, ReLU, Sequential, SoftmaxCrossEntropy  # noqa: E402
from tinyprop.optim import Adam  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
BATCH = 10


def make(reuse):
    rng = np.random.default_rng(1)
    model = Sequential([Linear(784, 500, k=80, rng=rng), ReLU(), Linear(500, 500, k=80, rng=rng), ReLU(),
                        Linear(500, 10, rng=rng)])
    model.reuse_buffers(reuse)
    return model, SoftmaxCrossEntropy(), Adam(model.params(), lr=0.001)


data = np.random.default_rng(2)
x = data.random((STEPS * BATCH, 784), dtype=np.float32)
t = data.integers(0, 10, STEPS * BATCH)
variants = {"fresh": make(False), "reused": make(True)}


def run(model, loss, optimizer):
    start = time.perf_counter()
    for first in range(0, STEPS * BATCH, BATCH):
        loss.forward(model.forward(x[first:first + BATCH]), t[first:first + BATCH])
        model.backward(loss.backward(), need_dx=False)
        optimizer.step()
        model.zero_grad()
    return (time.perf_counter() - start) / STEPS


for variant in variants.values():  # noqa: E305
    run(*variant)  # compile and warm up
seconds = {name: [] for name in variants}
for round_ in range(ROUNDS):
    for name in (variants if round_ % 2 == 0 else reversed(list(variants))):
        seconds[name].append(run(*variants[name]))
fresh, reused = (statistics.median(seconds[name]) for name in ("fresh", "reused"))
ratios = [f / r for f, r in zip(seconds["fresh"], seconds["reused"])]
print(f"rounds {ROUNDS} x {STEPS} steps; median step: fresh {fresh * 1e6:.1f} us, reused {reused * 1e6:.1f} us; "
      f"fresh/reused {fresh / reused:.4f} (median of per-round ratios {statistics.median(ratios):.4f}, "
      f"quartiles {statistics.quantiles(ratios, n=4)[0]:.4f} to {statistics.quantiles(ratios, n=4)[2]:.4f})")
same = all(np.array_equal(a.value, b.value) for a, b in zip(variants["fresh"][0].params(), variants["reused"][0].params()))
print(f"parameters bit-identical after the same steps: {same}")
# what the default adds per step: two fresh (10, 500) float32 arrays (the 2nd and 3rd layers' dx; the 1st computes none)
import timeit  # noqa: E402
dx_like = np.empty((BATCH, 500), dtype=np.float32)
allocation = min(timeit.repeat(lambda: (np.empty_like(dx_like), np.empty_like(dx_like)), number=10000, repeat=7)) / 10000
print(f"two np.empty_like((10, 500)): {allocation * 1e6:.2f} us = {allocation / reused:.2%} of the reused step")
