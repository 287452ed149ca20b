"""Whole training epochs of the papers' MNIST MLP: tinyprop dense and meProp, PyTorch dense and meProp as a mask.

    TINYPROP_DATA=../shared/data python benchmarks/epoch_compare.py [--rounds 3] [--k 80] [--threads 1,2]

784-500-500-10, ReLU, Adam (lr 0.001), mini-batch 10, the 55,000 training images.
The variants take turns, one epoch each per round, in this one process (the machine
is shared and noisy); the report gives each one's median epoch time and the ratios, and
for tinyprop the medians of its forward, backward and update times within the epoch.
PyTorch is measured only if it is installed (it is not a dependency of tinyprop;
here `pip install torch==2.13.0` installs its CPU build from a local file): dense, with its
default thread count and with one thread, and with meProp as public re-implementations write
it, the gradient at each hidden layer's output multiplied by a 0/1 mask of its per-example
top-k (every product still computed densely), with the default threads. PyTorch trains in a child
process that takes its turn in each round: in this process its two OpenMP threads shared the cores with
tinyprop's (Numba's OpenMP runtime and OpenBLAS's threads), and its two-thread epoch took three times
its one-thread epoch. The child inherits this process's thread settings (tinyprop.environment); its libgomp
reads GOMP_SPINCOUNT too, and its epoch was faster with it than without (docs/performance.md). tinyprop runs
each of its variants on each count of --threads (BLAS's and the kernels', as a run's --threads sets them; default: one
and the cores this process may use), and reports for each count the ratio of mlptop's epoch to the dense one's,
and PyTorch's dense epoch over mlptop's where PyTorch ran on that count.
"""
import argparse
import dataclasses
import json
import multiprocessing
import time

from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import numpy as np  # noqa: E402

from tinyprop.tasks.mnist import Mnist, MnistSettings, MnistTask, build_mlp, locate_files, scale_pixels  # noqa: E402
from tinyprop.tasks.run import using_threads  # noqa: E402
from tinyprop.tasks.settings import KERNEL_THREADS  # noqa: E402
from tinyprop.tasks.training import Timers, make_optimizer  # noqa: E402

SIZES = [784, 500, 500, 10]
PHASES = [field.name for field in dataclasses.fields(Timers)]  # forward, backward, update
BATCH = 10


def tinyprop_epoch(net, k, data, seed, threads, unified=False):
    settings = MnistSettings(net=net, k=None if net == "mlp" else k, unified=unified).checked()
    model = build_mlp(SIZES, net, k, unified, rng=np.random.default_rng(seed))
    task = MnistTask(data, model, meta=dict(net=net, sizes=SIZES))
    task.optimizer = make_optimizer(settings, model.params(), task.train_size)
    order_rng = np.random.default_rng(seed)
    with using_threads(threads):
        task.train_step(np.arange(BATCH))  # compile the kernels (or load them from Numba's cache) before any timing

    def epoch():
        order = order_rng.permutation(task.train_size)
        with using_threads(threads):
            for first in range(0, len(order), BATCH):
                task.train_step(order[first:first + BATCH])
    return epoch, task.timers


def torch_epoch(data, seed, threads, k=None):
    """k: the hidden layers' output gradients masked to their per-example top-k (meProp as a mask)."""
    import torch

    class TopkGradientMask(torch.autograd.Function):
        """Identity forward; backward keeps each row's k largest |dy| and zeros the rest."""

        @staticmethod
        def forward(ctx, y):
            return y.view_as(y)

        @staticmethod
        def backward(ctx, dy):
            return dy * torch.zeros_like(dy).scatter_(1, dy.abs().topk(k, dim=1).indices, 1.0)

    class MaskedGradient(torch.nn.Module):
        def forward(self, y):
            return TopkGradientMask.apply(y)

    def hidden(n_in, n_out):  # the mask sits between the Linear and the ReLU: it sees dL/dy of the Linear
        return [torch.nn.Linear(n_in, n_out)] + ([MaskedGradient()] if k else []) + [torch.nn.ReLU()]

    torch.manual_seed(seed)
    model = torch.nn.Sequential(*hidden(784, 500), *hidden(500, 500), torch.nn.Linear(500, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    images, labels = data.splits["train"]
    order_rng = np.random.default_rng(seed)
    default_threads = torch.get_num_threads()

    def epoch():
        torch.set_num_threads(threads or default_threads)
        order = order_rng.permutation(len(labels))
        for first in range(0, len(order), BATCH):
            batch = order[first:first + BATCH]
            x = torch.from_numpy(scale_pixels(images[batch]))
            y = torch.from_numpy(labels[batch].astype(np.int64))
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        torch.set_num_threads(default_threads)
    return epoch, default_threads


def torch_worker(connection, max_examples, seed, k):
    """PyTorch's variants in a process of their own: sends their names (None without PyTorch), then runs one
    epoch of each name it receives, until None."""
    try:
        import torch
    except ImportError:
        connection.send(None)
        return
    data = Mnist(locate_files())
    data.keep_first(max_examples)
    epoch, threads = torch_epoch(data, seed, threads=None)
    epochs = {f"pytorch {torch.__version__} dense, {threads} threads": epoch,
              f"pytorch {torch.__version__} dense, 1 thread": torch_epoch(data, seed, threads=1)[0],
              f"pytorch mask k={k}, {threads} threads": torch_epoch(data, seed, None, k)[0]}
    connection.send(list(epochs))
    for name in iter(connection.recv, None):
        epochs[name]()
        connection.send(name)


def torch_variants(max_examples, seed, k):
    """{name: one epoch in the PyTorch child process} and the child (to join), or ({}, None) without PyTorch."""
    context = multiprocessing.get_context("spawn")
    connection, child_end = context.Pipe()
    child = context.Process(target=torch_worker, args=(child_end, max_examples, seed, k), daemon=True)
    child.start()
    names = connection.recv()
    if names is None:
        child.join()
        return {}, None

    def remote(name):
        connection.send(name)
        connection.recv()
    return {name: lambda name=name: remote(name) for name in names}, (child, connection)


def threads_text(count):
    return f"{count} thread" + ("s" if count > 1 else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=80)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--max-examples", type=int, help="train on the first N training images only (quick runs)")
    parser.add_argument("--threads", default=f"1,{KERNEL_THREADS}",
                        help="tinyprop's thread counts, comma-separated (default: 1 and the cores this process may "
                             "use)")
    args = parser.parse_args()
    counts = sorted({int(count) for count in args.threads.split(",")})

    data = Mnist(locate_files())
    data.keep_first(args.max_examples)
    variants, timers = {}, {}  # timers: each tinyprop variant's forward, backward and update seconds, summed

    def tinyprop_name(variant, count):
        return f"tinyprop {variant}, {threads_text(count)}"
    for count in counts:
        for variant, net, unified in (("mlp (dense)", "mlp", False), (f"mlptop k={args.k}", "mlptop", False),
                                      (f"mlptop k={args.k} unified", "mlptop", True)):
            name = tinyprop_name(variant, count)
            variants[name], timers[name] = tinyprop_epoch(net, args.k, data, args.seed, count, unified)
    pytorch, child = torch_variants(args.max_examples, args.seed, args.k)
    variants.update(pytorch)
    if child is None:
        print("PyTorch is not installed: measuring tinyprop only (pip install torch==2.13.0)")

    times = {name: [] for name in variants}
    phases = {name: [] for name in timers}  # per epoch: seconds of forward, backward, update
    for round_number in range(1, args.rounds + 1):
        for name, epoch in variants.items():
            before = dataclasses.astuple(timers[name]) if name in timers else None
            start = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - start)
            if before is not None:
                phases[name].append([now - then for now, then in zip(dataclasses.astuple(timers[name]), before)])
            print(f"round {round_number}: {name}: {times[name][-1]:.2f} s", flush=True)
    if child is not None:
        child[1].send(None)
        child[0].join()
    medians = {name: float(np.median(values)) for name, values in times.items()}
    phase_medians = {name: dict(zip(PHASES, np.median(values, axis=0).tolist())) for name, values in phases.items()}
    dense = medians[tinyprop_name("mlp (dense)", counts[0])]  # on the fewest threads measured
    print(f"\nmedian epoch time over {args.rounds} rounds ({len(data.splits['train'][1]):,} images, batch {BATCH}, "
          "Adam):")
    for name, seconds in medians.items():
        split = ", ".join(f"{phase} {value:.2f}" for phase, value in phase_medians.get(name, {}).items())
        print(f"  {name:<48} {seconds:7.2f} s   dense tinyprop, {threads_text(counts[0])} / this: "
              f"{dense / seconds:5.2f}x"
              + (f"   ({split} s)" if split else ""))
    ratios = {count: medians[tinyprop_name(f"mlptop k={args.k}", count)] / medians[tinyprop_name("mlp (dense)", count)]
              for count in counts}
    for count, ratio in ratios.items():
        print(f"  on {threads_text(count)}: mlptop k={args.k}'s epoch / the dense one's: {ratio:.2f}")
    against_pytorch = {}  # on each thread count: PyTorch's dense epoch / mlptop's, where both ran
    for count in counts:
        pytorch_dense = [name for name in pytorch if name.endswith(f" dense, {threads_text(count)}")]
        if pytorch_dense:
            against_pytorch[count] = medians[pytorch_dense[0]] / medians[tinyprop_name(f"mlptop k={args.k}", count)]
            print(f"  on {threads_text(count)}: PyTorch's dense epoch / mlptop k={args.k}'s: "
                  f"{against_pytorch[count]:.2f}x")
    if args.json:
        print(json.dumps(dict(rounds=args.rounds, seconds=times, medians=medians, phase_medians=phase_medians,
                              mlptop_over_dense={str(count): ratio for count, ratio in ratios.items()},
                              pytorch_dense_over_mlptop={str(count): ratio for count, ratio
                                                         in against_pytorch.items()}), indent=2))


if __name__ == "__main__":
    main()
