"""Timing the backward of single linear layers: dense against meProp.

Variants, all computing dW, db and dx for a (batch, in) -> (batch, out) layer:
  dense-blas   Linear(k=None).backward: numpy BLAS.
  dense-loop   the meProp kernels of tinyprop.kernels with every row selected: dense
               work written as the same plain loops (the papers' C# "theoretical
               effect" reference).
  top          Linear(k, "top").backward: heap top-k per example + the sparse kernels.
  unified      Linear(k, "unified").backward: one top-k set, BLAS on the k rows.
  rand         Linear(k, "rand").backward: k random rows per example + the sparse kernels.
The variants run alternately in one process (this machine is shared and noisy); the
report gives each one's median time per call and its ratio to both dense references.
Each call takes the next of `pool` different gradients: timing one gradient over and
over lets the branch predictor learn the heap's path and flatters the selection.
"""
import time

import numpy as np

from tinyprop.kernels import add_selected_rows_grad, selected_input_grad
from tinyprop.layers import Linear

PAPER_SHAPES = ((784, 500), (500, 500))


def _layer_backward(layer, x):
    layer.forward(x)
    return layer.backward


def _dense_loop_backward(n_in, n_out, x, rng):
    layer = Linear(n_in, n_out, rng=rng)
    every_row = np.tile(np.arange(n_out, dtype=np.int32), (x.shape[0], 1))
    dx = np.empty_like(x)

    def backward(dy):
        layer.bias.grad += dy.sum(axis=0)
        add_selected_rows_grad(dy, x, every_row, layer.weight.grad, layer.weight.rows_with_grad)
        selected_input_grad(dy, layer.weight.value, every_row, dx)
        return dx
    return backward


def bench_layer(n_in, n_out, batch, k, rounds=30, calls=20, pool=64, seed=0):
    """Median seconds per backward call of each variant, and the ratios."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    gradients = [rng.standard_normal((batch, n_out), dtype=np.float32) for _ in range(pool)]
    variants = {
        "dense-blas": _layer_backward(Linear(n_in, n_out, rng=rng), x),
        "dense-loop": _dense_loop_backward(n_in, n_out, x, rng),
        "top": _layer_backward(Linear(n_in, n_out, k, "top", rng=rng), x),
        "unified": _layer_backward(Linear(n_in, n_out, k, "unified", rng=rng), x),
        "rand": _layer_backward(Linear(n_in, n_out, k, "rand", rng=rng), x),
    }
    for backward in variants.values():  # compile and warm caches
        backward(gradients[0])
    times = {name: [] for name in variants}
    for round_number in range(rounds):
        for name, backward in variants.items():
            batch_of_calls = [gradients[(round_number * calls + i) % pool] for i in range(calls)]
            start = time.perf_counter()
            for dy in batch_of_calls:
                backward(dy)
            times[name].append((time.perf_counter() - start) / calls)
    medians = {name: float(np.median(values)) for name, values in times.items()}
    return dict(
        shape=dict(n_in=n_in, n_out=n_out, batch=batch, k=k), rounds=rounds, calls_per_round=calls,
        gradient_pool=pool,
        limit=n_out / k,
        variants={name: dict(median_us=seconds * 1e6,
                             vs_dense_blas=medians["dense-blas"] / seconds,
                             vs_dense_loop=medians["dense-loop"] / seconds)
                  for name, seconds in medians.items()},
    )


def format_report(result):
    shape = result["shape"]
    lines = [f"{shape['n_in']}->{shape['n_out']}, batch {shape['batch']}, k {shape['k']} "
             f"(limit n/k = {result['limit']:.2f}x; median of {result['rounds']} rounds x "
             f"{result['calls_per_round']} calls)",
             f"  {'variant':<11} {'median':>10}  {'vs dense-blas':>13}  {'vs dense-loop':>13}"]
    for name, entry in result["variants"].items():
        lines.append(f"  {name:<11} {entry['median_us']:8.1f}us  {entry['vs_dense_blas']:12.2f}x  "
                     f"{entry['vs_dense_loop']:12.2f}x")
    return "\n".join(lines)
