"""A task's training epoch on one thread and on more: whole runs of one epoch, alternating in one process.

    TINYPROP_DATA=../shared/data python benchmarks/task_threads.py parse [--net mlptop] [--rounds 3]
        [--threads 1,2] [--max-examples N] [--set key=value ...]

Each round runs `tinyprop.tasks.run.run(TASK, settings with epochs=1, threads=T)` for each T in turn
(one evaluation at the epoch's end: iter_per_epoch 1), and reads the epoch's training time and its
forward, backward and update parts from the run's summary. Prints every run and the medians, and the
one-thread time over each other count's. The parser's epoch is 40 mini-batches of 10,000 transitions;
the tagger's, one sentence a mini-batch.
"""
import argparse
import os
import shutil
import tempfile

from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import numpy as np  # noqa: E402

from tinyprop.tasks import task_class  # noqa: E402
from tinyprop.tasks.run import run  # noqa: E402

PARTS = ("train_time_s", "forward_time_s", "backward_time_s", "update_time_s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=("mnist", "pos", "parse"))
    parser.add_argument("--net", default=None, help="default: the task's meProp net")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--max-examples", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="another setting, as an int, a float or a string")
    args = parser.parse_args()
    cls = task_class(args.task)
    extra = {}
    for item in args.set:
        key, value = item.split("=", 1)
        for kind in (int, float, str):
            try:
                extra[key] = kind(value)
                break
            except ValueError:
                continue
    net = args.net or cls.Settings.meprop_nets[0]
    counts = [int(count) for count in args.threads.split(",")]
    folder = tempfile.mkdtemp()
    found = {count: [] for count in counts}
    try:
        for round_number in range(1, args.rounds + 1):
            for count in counts:
                settings = cls.Settings(net=net, epochs=1, iter_per_epoch=1, seed=1, threads=count,
                                        max_examples=args.max_examples, **extra)
                out = os.path.join(folder, f"{round_number}-{count}")
                summary = run(args.task, settings, out, log=lambda line: None)
                found[count].append([summary[part] for part in PARTS])
                print(f"round {round_number}, {count} thread(s): " + ", ".join(
                    f"{part[:-len('_time_s')]} {value:.2f} s" for part, value in zip(PARTS, found[count][-1])),
                    flush=True)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    medians = {count: np.median(values, axis=0) for count, values in found.items()}
    print(f"\n{args.task} {net}, one epoch{extra and f' ({extra})' or ''}, medians of {args.rounds} rounds:")
    for count, values in medians.items():
        print(f"  {count} thread(s): " + ", ".join(f"{part[:-len('_time_s')]} {value:.2f} s"
                                                   for part, value in zip(PARTS, values))
              + f"; 1 thread / this: {medians[counts[0]][0] / values[0]:.2f}x")


if __name__ == "__main__":
    main()
