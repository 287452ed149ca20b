"""Whole training epochs of the papers' MNIST MLP: tinyprop dense, tinyprop meProp, and PyTorch dense.

    TINYPROP_DATA=../shared/data python benchmarks/epoch_compare.py [--rounds 3] [--k 80]

784-500-500-10, ReLU, Adam (lr 0.001), mini-batch 10, the 55,000 training images.
The variants take turns, one epoch each per round, in this one process (the machine
is shared and noisy); the report gives each one's median epoch time and the ratios.
PyTorch is measured only if it is installed (it is not a dependency of tinyprop;
here `pip install torch==2.13.0` installs its CPU build from a local file), with its
default thread count and with one thread. tinyprop runs with one BLAS thread, as its
command line does.
"""
import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from tasks.config import make_settings  # noqa: E402
from tasks.mnist import Mnist, MnistTask, build_mlp, locate_files, scale_pixels  # noqa: E402
from tasks.training import make_optimizer  # noqa: E402

SIZES = [784, 500, 500, 10]
BATCH = 10


def tinyprop_epoch(net, k, data, seed, unified=False):
    settings = make_settings({}, dict(net=net, k=None if net == "mlp" else k, unified=unified))
    model = build_mlp(SIZES, net, k, unified, rng=np.random.default_rng(seed))
    optimizer = make_optimizer(settings, model.params(), data.splits["train"][1].shape[0])
    task = MnistTask(data, model, optimizer, meta=dict(net=net))
    order_rng = np.random.default_rng(seed)

    def epoch():
        order = order_rng.permutation(task.train_size)
        for first in range(0, len(order), BATCH):
            task.train_step(order[first:first + BATCH])
    return epoch


def torch_epoch(data, seed, threads):
    import torch
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 500),
                                torch.nn.ReLU(), torch.nn.Linear(500, 10))
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=80)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    data = Mnist(locate_files())
    variants = {
        "tinyprop mlp (dense)": tinyprop_epoch("mlp", args.k, data, args.seed),
        f"tinyprop mlptop k={args.k}": tinyprop_epoch("mlptop", args.k, data, args.seed),
        f"tinyprop mlptop k={args.k} unified": tinyprop_epoch("mlptop", args.k, data, args.seed, unified=True),
    }
    try:
        import torch
        epoch, threads = torch_epoch(data, args.seed, threads=None)
        variants[f"pytorch {torch.__version__} dense, {threads} threads"] = epoch
        variants[f"pytorch {torch.__version__} dense, 1 thread"] = torch_epoch(data, args.seed, threads=1)[0]
    except ImportError:
        print("PyTorch is not installed: measuring tinyprop only (pip install torch==2.13.0)")

    times = {name: [] for name in variants}
    for round_number in range(1, args.rounds + 1):
        for name, epoch in variants.items():
            start = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - start)
            print(f"round {round_number}: {name}: {times[name][-1]:.2f} s", flush=True)
    medians = {name: float(np.median(values)) for name, values in times.items()}
    dense = medians["tinyprop mlp (dense)"]
    print(f"\nmedian epoch time over {args.rounds} rounds (55,000 images, batch {BATCH}, Adam):")
    for name, seconds in medians.items():
        print(f"  {name:<40} {seconds:7.2f} s   dense tinyprop / this: {dense / seconds:5.2f}x")
    if args.json:
        print(json.dumps(dict(rounds=args.rounds, seconds=times, medians=medians), indent=2))


if __name__ == "__main__":
    main()
