"""Timing the backward of single layers: dense against meProp.

Linear layers, all variants computing dW, db and dx for (batch, in) -> (batch, out):
  dense-blas   Linear(k=None).backward: numpy BLAS.
  dense-loop   the meProp kernels of tinyprop.kernels with every row selected: dense
               work written as the same plain loops (the papers' C# "theoretical
               effect" reference).
  top          Linear(k, "top").backward: heap top-k per example + the sparse kernels.
  unified      Linear(k, "unified").backward: one top-k set; loops over its k rows for a small
               batch, BLAS on them gathered for a larger one.
  rand         Linear(k, "rand").backward: k random rows per example + the sparse kernels.
Convolutions (the papers' CNN, TKDE 2018 Section 3.3.2): Conv2d.backward dense (BLAS on
the im2col patches) against spatial top-k at several ratios; both include col2im.
LSTM (the tagger's, Section 2.3.2): LSTM.backward, backpropagation through time over one
sentence, computing dW_x, dW_h, db and dx:
  dense-blas   k=None: BLAS for the recurrent product at each step and for the weight gradients.
  dense-loop   k=H: the meProp loops with every row of every gate selected (selecting all H
               of H costs nothing: the top-k returns every row at once).
  top          k: the k rows of each gate per step.

The variants run alternately in one process (this machine is shared and noisy); the
report gives each one's median time per call and its ratio to the dense references.
Each call takes the next of `pool` different gradients: timing one gradient over and
over lets the branch predictor learn the heap's path and flatters the selection.
"""
import time

import numba
import numpy as np

from tinyprop.kernels import add_selected_rows_grad, selected_input_grad
from tinyprop.layers import LSTM, Conv2d, Linear

PAPER_SHAPES = ((784, 500), (500, 500))
# the parser (Chen and Manning's MLP on EWT): 48 x 50 inputs -> 500 hidden -> 103 transitions, batch 10,000, k 20
PARSER_SHAPES = ((2400, 500), (500, 103))
PARSER_BATCH, PARSER_K = 10000, 20
# (in channels, out channels, input height = width) of the papers' CNN at MNIST size, 5x5, padding 2
PAPER_CONV_SHAPES = ((1, 16, 28), (16, 32, 14))
CONV_RATIOS = (0.01, 0.02, 0.05, 0.10)
# the tagger: 140 inputs (word 100 + suffix 30 + shape 10), 500 units, k 10; one sentence of 16 words
# (EWT's training sentences have 16.3 words on average)
TAGGER_SHAPE = dict(n_in=140, hidden=500, k=10, steps=16)


def time_alternating(variants, gradients, rounds, calls):
    """Median seconds per call of each variant; the variants take turns, `calls` calls a turn.

    The order of the turns rotates from round to round, so that no variant always follows
    the same one (after the dense loop, say, whose streaming leaves the caches cold).
    """
    for backward in variants.values():  # compile and warm caches
        backward(gradients[0])
    times = {name: [] for name in variants}
    names = list(variants)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            backward = variants[name]
            turn = [gradients[(round_number * calls + i) % len(gradients)] for i in range(calls)]
            start = time.perf_counter()
            for dy in turn:
                backward(dy)
            times[name].append((time.perf_counter() - start) / calls)
    return {name: float(np.median(values)) for name, values in times.items()}


def _ready(layer, x):
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


def _report(shape, limit, medians, references, rounds, calls, pool):
    return dict(shape=shape, limit=limit, threads=numba.get_num_threads(), rounds=rounds, calls_per_round=calls,
                gradient_pool=pool,
                variants={name: dict(median_us=seconds * 1e6,
                                     **{f"vs_{ref}": medians[ref] / seconds for ref in references})
                          for name, seconds in medians.items()})


def bench_layer(n_in, n_out, batch, k, rounds=30, calls=20, pool=64, seed=0):
    """A linear layer's backward: median per call of each variant, and ratios to both dense references."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    gradients = [rng.standard_normal((batch, n_out), dtype=np.float32) for _ in range(pool)]
    variants = {
        "dense-blas": _ready(Linear(n_in, n_out, rng=rng), x),
        "dense-loop": _dense_loop_backward(n_in, n_out, x, rng),
        "top": _ready(Linear(n_in, n_out, k, "top", rng=rng), x),
        "unified": _ready(Linear(n_in, n_out, k, "unified", rng=rng), x),
        "rand": _ready(Linear(n_in, n_out, k, "rand", rng=rng), x),
    }
    medians = time_alternating(variants, gradients, rounds, calls)
    return _report(dict(kind="linear", n_in=n_in, n_out=n_out, batch=batch, k=k), n_out / k, medians,
                   ("dense-blas", "dense-loop"), rounds, calls, pool)


def bench_conv(in_channels, out_channels, size, batch, ratios=CONV_RATIOS, rounds=10, calls=5, pool=16, seed=0):
    """A 5x5, padding 2 convolution's backward: dense against spatial top-k at each ratio."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, in_channels, size, size), dtype=np.float32)
    gradients = [rng.standard_normal((batch, out_channels, size, size), dtype=np.float32) for _ in range(pool)]
    variants = {"dense": _ready(Conv2d(in_channels, out_channels, 5, padding=2, rng=rng), x)}
    for ratio in ratios:
        variants[f"top {ratio:.2f}"] = _ready(Conv2d(in_channels, out_channels, 5, padding=2, ratio=ratio, rng=rng), x)
    medians = time_alternating(variants, gradients, rounds, calls)
    return _report(dict(kind="conv", in_channels=in_channels, out_channels=out_channels, size=size, batch=batch,
                        kernel=5, padding=2), None, medians, ("dense",), rounds, calls, pool)


def bench_lstm(n_in, hidden, k, steps, rounds=20, calls=10, pool=16, seed=0):
    """An LSTM's backward through time over one sequence: dense (BLAS and loops) against meProp top-k."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, n_in), dtype=np.float32)
    gradients = [rng.standard_normal((steps, hidden), dtype=np.float32) for _ in range(pool)]
    variants = {name: _ready(LSTM(n_in, hidden, layer_k, rng=rng), x)
                for name, layer_k in (("dense-blas", None), ("dense-loop", hidden), ("top", k))}
    medians = time_alternating(variants, gradients, rounds, calls)
    return _report(dict(kind="lstm", n_in=n_in, hidden=hidden, k=k, steps=steps, batch=1), hidden / k, medians,
                   ("dense-blas", "dense-loop"), rounds, calls, pool)


def format_report(result, single=None):
    """The table of one bench_* result; with `single`, the same layer's one-thread result, each variant's time on
    one thread over its time here (the speed-up of the threads)."""
    shape = result["shape"]
    if shape["kind"] == "linear":
        title = (f"linear {shape['n_in']}->{shape['n_out']}, batch {shape['batch']}, k {shape['k']} "
                 f"(limit n/k = {result['limit']:.2f}x)")
    elif shape["kind"] == "lstm":
        title = (f"lstm {shape['n_in']}->{shape['hidden']} (4 gates), one sequence of {shape['steps']} steps, "
                 f"k {shape['k']} per gate (limit H/k = {result['limit']:.0f}x)")
    else:
        title = (f"conv {shape['in_channels']}->{shape['out_channels']} channels, {shape['size']}x{shape['size']}, "
                 f"5x5 padding 2, batch {shape['batch']}")
    references = [key for key in next(iter(result["variants"].values())) if key.startswith("vs_")]
    threads = f"{result['threads']} thread" + ("s" if result["threads"] > 1 else "")
    lines = [f"{title}; {threads}, median of {result['rounds']} rounds x {result['calls_per_round']} calls",
             f"  {'variant':<11} {'median':>10}" + "".join(f"  {key[3:] + ' / this':>16}" for key in references)
             + (f"  {'1 thread / this':>16}" if single else "")]
    for name, entry in result["variants"].items():
        lines.append(f"  {name:<11} {entry['median_us']:8.1f}us" + "".join(f"  {entry[key]:15.2f}x"
                                                                         for key in references)
                     + (f"  {single['variants'][name]['median_us'] / entry['median_us']:15.2f}x" if single else ""))
    return "\n".join(lines)
