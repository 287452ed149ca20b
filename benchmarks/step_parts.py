"""Where an MNIST training step's time goes: each layer's forward and backward, the loss, each parameter's update.

    TINYPROP_DATA=../shared/data python benchmarks/step_parts.py [--net mlptop] [--k 80] [--threads 1,2]

The papers' MLP (784-500-500-10, Adam, batch 10) built as `tinyprop train mnist` builds it, trained on the
training images in a fixed random order; each thread count in turn for --steps steps a round (the counts
alternate, in this one process), after a warm-up. Each part is timed around its call, Python included; the
report gives, per thread count, the median over the rounds of the whole step and of each part, in microseconds.
What no part holds (the batch's gather and scaling, the timers, the count of correct predictions) is the
difference of the step and the parts' sum.
"""
import argparse
import collections
import itertools
import time

from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import numpy as np  # noqa: E402

from tinyprop.tasks import task_class  # noqa: E402
from tinyprop.tasks.run import build_task, using_threads  # noqa: E402
from tinyprop.tasks.settings import KERNEL_THREADS  # noqa: E402


def timed_parts(task):
    """Wrap the model's layers, the loss and the optimizer's per-parameter update so that each adds its seconds to
    the returned {part: seconds}."""
    seconds = collections.defaultdict(float)

    def timing(function, part):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = function(*args, **kwargs)
            seconds[part] += time.perf_counter() - start
            return result
        return timed
    for position, layer in enumerate(task.model.layers):
        layer.forward = timing(layer.forward, f"forward {position} {type(layer).__name__}")
    task.loss.forward = timing(task.loss.forward, "loss forward")
    task.loss.backward = timing(task.loss.backward, "loss backward")
    for position, layer in reversed(list(enumerate(task.model.layers))):
        layer.backward = timing(layer.backward, f"backward {position} {type(layer).__name__}")
    update_rows = task.optimizer.update_rows

    def update(param, rows, clear):
        start = time.perf_counter()
        update_rows(param, rows, clear)
        seconds[f"update {param.name}"] += time.perf_counter() - start
    task.optimizer.update_rows = update
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", default="mlptop", choices=["mlp", "mlptop"])
    parser.add_argument("--k", type=int, default=80)
    parser.add_argument("--threads", default=f"1,{KERNEL_THREADS}",
                        help="thread counts, comma-separated (default: 1 and the cores this process may use)")
    parser.add_argument("--steps", type=int, default=2000, help="steps a round on each thread count")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    counts = sorted({int(count) for count in args.threads.split(",")})

    cls = task_class("mnist")
    settings = cls.Settings(net=args.net, k=args.k if args.net == "mlptop" else None, seed=1, epochs=1).checked()
    data = cls.load(cls.locate(settings), None)
    task = build_task(cls, settings, data, cls.describe(settings, data), settings.seed)
    seconds = timed_parts(task)
    order = np.random.default_rng(1).permutation(task.train_size)
    batches = itertools.cycle([order[first:first + 10] for first in range(0, len(order) - 9, 10)])
    steps = {count: [] for count in counts}  # per round: seconds of the whole step
    parts = {count: collections.defaultdict(list) for count in counts}  # per part, per round: seconds a step

    def run(count, number):
        with using_threads(count):
            start = time.perf_counter()
            for _ in range(number):
                task.train_step(next(batches))
            return time.perf_counter() - start
    for count in counts:
        run(count, 200)  # compile, or load from Numba's cache, and warm the caches
    for round_number in range(1, args.rounds + 1):
        for count in counts:
            seconds.clear()
            steps[count].append(run(count, args.steps) / args.steps)
            for part, total in seconds.items():
                parts[count][part].append(total / args.steps)
            parts[count]["the rest (batch, timers, accuracy)"].append(steps[count][-1] - sum(seconds.values())
                                                                      / args.steps)
            print(f"round {round_number}, {count} thread(s): {steps[count][-1] * 1e6:.1f} us a step", flush=True)
    net = f"{args.net} k={args.k}" if args.net == "mlptop" else args.net
    print(f"\n784-500-500-10 {net}, batch 10, medians over {args.rounds} rounds of {args.steps} steps, microseconds "
          "a step:")
    print(f"  {'part':<40}" + "".join(f"{count:>9} thread(s)" for count in counts))
    for name in list(parts[counts[0]]) + ["the step"]:
        values = {count: steps[count] if name == "the step" else parts[count][name] for count in counts}
        print(f"  {name:<40}" + "".join(f"{np.median(values[count]) * 1e6:20.1f}" for count in counts))


if __name__ == "__main__":
    main()
