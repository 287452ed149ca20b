"""The parser's training step, layer by layer, on one thread and on two: where a mini-batch's time goes.

    TINYPROP_DATA=../shared/data python benchmarks/parse_step.py [--batches 6] [--rounds 3]

The parser of `tinyprop train parse --net mlptop --k 20` (its default settings: dropout 0.5, mini-batch
10,000). Each layer's forward and backward, the loss and the optimizer's step are timed inside the task's
own train_step; each round runs the same mini-batches on one thread, then on two (as a run's --threads
sets them), in this one process. Prints the medians over the rounds, in milliseconds a mini-batch.
"""
import argparse
import time

from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import numpy as np  # noqa: E402

from tinyprop.tasks import task_class  # noqa: E402
from tinyprop.tasks.run import build_task, using_threads  # noqa: E402


def timed(owner, method, key, seconds):
    """Make owner.method add its time to seconds[key] (an instance attribute over the method)."""
    original = getattr(owner, method)

    def call(*args, **kwargs):
        start = time.perf_counter()
        result = original(*args, **kwargs)
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
        return result
    setattr(owner, method, call)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=6, help="mini-batches of 10,000 a round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cls = task_class("parse")
    settings = cls.Settings(net="mlptop", seed=1, epochs=1).checked()
    data = cls.load(cls.locate(settings), None)
    task = build_task(cls, settings, data, cls.describe(settings, data), 1)
    seconds = {}
    for i, layer in enumerate(task.model.layers):
        for method in ("forward", "backward"):
            timed(layer, method, f"{i} {type(layer).__name__}.{method}", seconds)
    timed(task.loss, "forward", "loss.forward", seconds)
    timed(task.loss, "backward", "loss.backward", seconds)
    timed(task.optimizer, "step", "update", seconds)
    rng = np.random.default_rng(1)
    batches = [rng.permutation(task.train_size)[:10000] for _ in range(args.batches)]
    found = {1: [], 2: []}
    for _ in range(args.rounds):
        for count in found:
            seconds.clear()
            with using_threads(count):
                start = time.perf_counter()
                for batch in batches:
                    task.train_step(batch)
                seconds["the step"] = time.perf_counter() - start
            found[count].append(dict(seconds))
    print(f"{task.model.layers}\nmilliseconds a mini-batch of 10,000, medians of {args.rounds} rounds:")
    print(f"{'':32}{'1 thread':>10}{'2 threads':>10}")
    for key in found[1][0]:
        one, two = (np.median([result[key] for result in found[count]]) / len(batches) * 1e3 for count in (1, 2))
        print(f"{key:32}{one:10.1f}{two:10.1f}")


if __name__ == "__main__":
    main()
