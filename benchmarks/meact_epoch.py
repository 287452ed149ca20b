"""meAct's epoch against a dense epoch of the papers' MNIST MLP (TKDE 2018, Section 3.5, Table 13).

    TINYPROP_DATA=../shared/data python benchmarks/meact_epoch.py [--rounds 3] [--act-after 1] [--max-examples N]
        [--batch 10]

784-500-500-10, ReLU, Adam, mini-batch 10. The mlpact model first trains densely for --act-after epochs
while recording each example's gradients, then selects its active sets (p = --act-threshold); the dense
`mlp` model starts from the same weights and trains as many epochs, untimed. Then the two take turns, one
epoch each per round, in this one process (the machine is shared and noisy): a dense epoch, and an
epoch of meAct's phase, each example computing only its active units. The report gives each one's median
epoch time, forward, backward and update times, the hidden layers' forward alone, and the share of the
dense forward's multiply-adds that the active sets leave (hidden layers, and the whole forward).
"""
import argparse
import json
import time

from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import numpy as np  # noqa: E402

from tinyprop.tasks.mnist import Mnist, MnistSettings, MnistTask, locate_files  # noqa: E402
from tinyprop.tasks.run import build_task  # noqa: E402

PHASES = ("forward", "backward", "update")


def timed_hidden_forward(task, seconds):
    """Make each hidden layer's forward add its time to seconds[0] (an instance attribute over the method)."""
    for layer in task.model.layers[:-1]:
        if hasattr(layer, "weight"):
            def forward(x, layer_forward=layer.forward):
                start = time.perf_counter()
                y = layer_forward(x)
                seconds[0] += time.perf_counter() - start
                return y
            layer.forward = forward


def make_task(net, data, seed, act_after, threshold):
    options = dict(act_after=act_after, act_threshold=threshold, epochs=act_after + 1) if net == "mlpact" else {}
    settings = MnistSettings(net=net, seed=seed, **options).checked()
    task = build_task(MnistTask, settings, data, MnistTask.describe(settings, data), seed)
    task.update_sizes = None  # not timed, and not wanted here
    return task


def run_epoch(task, order_rng, batch=10):
    order = order_rng.permutation(task.train_size)
    for first in range(0, len(order), batch):
        task.train_step(order[first:first + batch])


def forward_work_share(activator, sizes):
    """The share of the dense forward's multiply-adds the active sets leave: (hidden layers, whole forward)."""
    examples = activator.offsets[0].shape[0] - 1
    active = sum(int(offsets[-1]) * n_in for offsets, n_in in zip(activator.offsets, sizes[:-2]))
    hidden = examples * sum(n_in * n_out for n_in, n_out in zip(sizes[:-2], sizes[1:-1]))
    output = examples * sizes[-2] * sizes[-1]
    return active / hidden, (active + output) / (hidden + output)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--act-after", type=int, default=1, help="dense epochs before meAct's selection")
    parser.add_argument("--act-threshold", type=float, default=0.004)
    parser.add_argument("--max-examples", type=int, default=None, help="a slice of each split (a quick try)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=10, help="the timed epochs' mini-batch (the dense ones': 10)")
    args = parser.parse_args()
    data = Mnist(locate_files())
    data.keep_first(args.max_examples)
    tasks = {net: make_task(net, data, args.seed, args.act_after, args.act_threshold) for net in ("mlp", "mlpact")}
    for net, task in tasks.items():
        order_rng = np.random.default_rng(args.seed)
        for _ in range(args.act_after):
            run_epoch(task, order_rng)
    meact = tasks["mlpact"].activator
    meact.start_epoch(args.act_after + 1)
    print(f"active units per example: {meact.describe()}")
    hidden_seconds = {net: [0.0] for net in tasks}
    for net, task in tasks.items():
        timed_hidden_forward(task, hidden_seconds[net])
    results = {net: {name: [] for name in ("epoch", "hidden_forward") + PHASES} for net in tasks}
    order_rngs = {net: np.random.default_rng(args.seed + 1) for net in tasks}
    for round_ in range(args.rounds):
        for net, task in tasks.items():
            before = {name: getattr(task.timers, name) for name in PHASES}
            hidden_seconds[net][0] = 0.0
            start = time.perf_counter()
            run_epoch(task, order_rngs[net], args.batch)
            results[net]["epoch"].append(time.perf_counter() - start)
            results[net]["hidden_forward"].append(hidden_seconds[net][0])
            for name in PHASES:
                results[net][name].append(getattr(task.timers, name) - before[name])
        print(f"round {round_ + 1}: " + ", ".join(f"{net} {results[net]['epoch'][-1]:.2f}s" for net in tasks))
    medians = {net: {name: float(np.median(values)) for name, values in result.items()}
               for net, result in results.items()}
    hidden_share, forward_share = forward_work_share(meact, tasks["mlpact"].meta["sizes"])
    print(f"median seconds over {args.rounds} rounds, {tasks['mlp'].train_size} examples an epoch, batch {args.batch}:")
    print(f"{'':16}" + "".join(f"{name:>16}" for name in ("epoch", "forward", "hidden_forward", "backward", "update")))
    for net in tasks:
        print(f"{net:16}" + "".join(f"{medians[net][name]:16.3f}"
                                    for name in ("epoch", "forward", "hidden_forward", "backward", "update")))
    print(f"{'mlpact / mlp':16}" + "".join(f"{medians['mlpact'][name] / medians['mlp'][name]:16.3f}"
                                         for name in ("epoch", "forward", "hidden_forward", "backward", "update")))
    print(f"the active sets leave {hidden_share:.3f} of the hidden layers' forward multiply-adds, {forward_share:.3f} "
          "of the whole forward's")
    print(json.dumps(dict(medians=medians, hidden_work_share=hidden_share, forward_work_share=forward_share,
                          active_units=meact.selection, rounds=args.rounds, act_after=args.act_after)))


if __name__ == "__main__":
    main()
