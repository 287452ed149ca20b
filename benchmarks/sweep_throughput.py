"""How fast `tinyprop reproduce` gets through a sweep: --jobs 2 against --jobs 1, and what the runner adds to each run.

    python benchmarks/sweep_throughput.py [--runs 8] [--max-examples 6000] [--rounds 3]

A sweep of RUNS short MNIST runs (mlptop, k 80, one epoch on the first MAX_EXAMPLES images, seeds 1..RUNS) is
made three ways, alternating in each round: the runs one after another by `run()` in this process (no
runner), `reproduce --jobs 1` and `reproduce --jobs 2`. Printed: the median wall time of each, the ratio of
--jobs 1 to --jobs 2, and the runner's cost per run: (--jobs 1 - in this process) / RUNS. Needs the data
($TINYPROP_DATA) and a quiet machine.
"""
import argparse
import os
import statistics
import tempfile
import time

from tinyprop.tasks.experiments import reproduce
from tinyprop.tasks.mnist import MnistSettings
from tinyprop.tasks.run import run

EXPERIMENT = """
paper = "benchmark"
table = "sweep throughput"
caption = "short MNIST runs"
seeds = {runs}

[[row]]
label = "mlptop"
task = "mnist"
settings = {{ net = "mlptop", k = 80 }}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--max-examples", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times = {"in this process": [], "--jobs 1": [], "--jobs 2": []}
    quiet = lambda line: None  # noqa: E731
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "throughput.toml")
        with open(path, "w") as handle:
            handle.write(EXPERIMENT.format(runs=args.runs))
        run("mnist", MnistSettings(net="mlptop", epochs=1, max_examples=200, seed=1), os.path.join(folder, "warm"),
            quiet)  # Numba's cache filled before anything is timed
        for round_ in range(args.rounds):
            start = time.perf_counter()
            for seed in range(1, args.runs + 1):
                run("mnist", MnistSettings(net="mlptop", k=80, epochs=1, max_examples=args.max_examples, seed=seed),
                    os.path.join(folder, f"plain-{round_}-{seed}"), quiet)
            times["in this process"].append(time.perf_counter() - start)
            for jobs in (1, 2):
                start = time.perf_counter()
                sweep = reproduce(path, os.path.join(folder, f"jobs{jobs}-{round_}"), jobs=jobs,
                                  max_examples=args.max_examples, epochs=1, log=quiet)
                assert not sweep.failed, sweep.failed
                times[f"--jobs {jobs}"].append(time.perf_counter() - start)
            print(f"round {round_ + 1}: " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in times.items()),
                  flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.runs} runs of mnist mlptop k 80, 1 epoch on {args.max_examples} examples; medians of "
          f"{args.rounds} rounds, alternating; load average now {os.getloadavg()[0]:.2f}")
    for name, value in median.items():
        print(f"  {name:16s} {value:7.1f} s")
    print(f"  --jobs 1 / --jobs 2: {median['--jobs 1'] / median['--jobs 2']:.2f}x")
    print(f"  the runner's cost per run (--jobs 1 against in this process): "
          f"{(median['--jobs 1'] - median['in this process']) / args.runs:+.2f} s")


if __name__ == "__main__":
    main()
