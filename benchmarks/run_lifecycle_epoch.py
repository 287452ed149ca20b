"""One MNIST epoch through the run of an earlier checkout's tasks against this checkout's, alternating in one
process: what the run lifecycle (checkpoints, provenance) costs.

Both use this checkout's engine (tinyprop/), so the comparison is of the run around it. The earlier
checkout's tasks are imported as the top-level `tasks` package it had before they became tinyprop.tasks:

    git worktree add /tmp/before bb3ebc8
    TINYPROP_DATA=../shared/data python benchmarks/run_lifecycle_epoch.py --before /tmp/before --rounds 6

Prints a line per run and the medians (training seconds, the loop's wall seconds, the whole call's seconds),
and checks that the two give the same model.npz.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import numpy as np  # noqa: E402

import tinyprop.tasks.run as after  # noqa: E402
from tinyprop.tasks.mnist import MnistSettings  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a checkout whose tasks/ is a top-level package")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    sys.path.insert(0, args.before)
    import tasks.mnist as before  # noqa: E402 (the earlier checkout's)
    from tasks.config import make_settings  # noqa: E402
    data = os.environ.get("TINYPROP_DATA")
    folder = tempfile.mkdtemp()
    times = {}
    for round_ in range(args.rounds):
        for net, k in (("mlptop", 80), ("mlp", None)):
            for version in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                out = os.path.join(folder, f"{version}-{net}")
                shutil.rmtree(out, ignore_errors=True)
                start = time.perf_counter()
                if version == "before":
                    os.makedirs(out)
                    summary = before.run(make_settings({}, dict(net=net, k=k, epochs=1, seed=1, data_dir=data)), out,
                                         log=lambda line: None)
                else:
                    summary = after.run("mnist", MnistSettings(net=net, k=k or 80, epochs=1, seed=1, data_dir=data),
                                        out, log=lambda line: None)
                row = (summary["train_time_s"], summary["wall_time_s"], time.perf_counter() - start)
                times.setdefault((net, version), []).append(row)
                print(round_, net, version, "train %.2f loop-wall %.2f call %.2f" % row, f"test {summary['test_acc']}",
                      flush=True)
            with np.load(os.path.join(folder, f"before-{net}", "model.npz")) as a, \
                    np.load(os.path.join(folder, f"after-{net}", "model.npz")) as b:
                same = all(np.array_equal(a[name], b[name]) for name in a.files if name != "meta")
            print(round_, net, "model.npz the same bit for bit" if same else "model.npz DIFFERS", flush=True)
    for (net, version), rows in sorted(times.items()):
        print(net, version, "median train %.2f loop-wall %.2f call %.2f" % tuple(np.median(rows, axis=0)))
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
