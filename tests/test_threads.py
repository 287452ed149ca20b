"""Threads: a run's count goes to the Numba kernels (and BLAS's large products), is recorded, and changes no bits."""
import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import threadpoolctl

from tinyprop.tasks.experiments import load, run_specs
from tinyprop.tasks.mnist import MnistSettings
from tinyprop.tasks.run import run
from tinyprop.tasks.settings import CORES, KERNEL_THREADS, ConfigError

two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has one thread on this machine")


def train(folder, mnist_dir, threads):
    """A short mlptop run on `threads` threads; its model's arrays and its config.json."""
    run("mnist", MnistSettings(net="mlptop", k=80, max_examples=2000, epochs=1, seed=1, threads=threads,
                               data_dir=mnist_dir), str(folder), log=lambda line: None)
    with np.load(folder / "model.npz") as model, open(folder / "config.json") as config:
        return {name: model[name] for name in model.files if model[name].dtype.kind == "f"}, json.load(config)


@two_threads
@pytest.mark.data
def test_a_run_on_two_threads_is_the_run_on_one(tmp_path, mnist_dir):
    """The kernels give the same bits on two threads, and BLAS stays on one for a mini-batch's products: the
    models are equal bit for bit. The evaluations' products (2,000 images) share BLAS's threads."""
    one, config_one = train(tmp_path / "one", mnist_dir, 1)
    two, config_two = train(tmp_path / "two", mnist_dir, 2)
    assert config_one["settings"]["threads"] == 1 and config_two["settings"]["threads"] == 2
    # read by threadpoolctl inside the run, outside any shared product
    assert {blas["num_threads"] for blas in config_two["provenance"]["blas"]} == {1}
    assert config_two["provenance"]["numba_threads"]["in_use"] == 2
    assert one.keys() == two.keys()
    for name in one:
        assert np.array_equal(two[name], one[name]), name


@two_threads
def test_large_products_share_blas_threads_and_small_ones_do_not():
    """blas_threads_for: BLAS on the kernels' count for a product of SHARED_MIN_MACS multiply-adds or more."""
    from tinyprop.tasks.run import using_threads
    from tinyprop.threads import SHARED_MIN_MACS, blas_threads_for

    def blas_threads():
        return {library["num_threads"] for library in threadpoolctl.threadpool_info()
                if library["user_api"] == "blas"}
    with using_threads(2):
        assert blas_threads() == {1}
        with blas_threads_for(SHARED_MIN_MACS - 1):
            assert blas_threads() == {1}
        with blas_threads_for(SHARED_MIN_MACS):
            assert blas_threads() == {2}
        assert blas_threads() == {1}
    with using_threads(1), blas_threads_for(10 * SHARED_MIN_MACS):
        assert blas_threads() == {1}


def test_threads_default_to_the_cores_and_more_than_numba_has_are_refused(tmp_path, mnist_dir):
    assert MnistSettings().threads == KERNEL_THREADS == min(CORES, numba.config.NUMBA_NUM_THREADS)
    too_many = numba.config.NUMBA_NUM_THREADS + 1
    with pytest.raises(ConfigError, match=f"--threads {too_many}: Numba runs at most"):
        run("mnist", MnistSettings(net="mlp", max_examples=100, epochs=1, threads=too_many, data_dir=mnist_dir),
            str(tmp_path / "run"), log=lambda line: None)


def test_the_default_threads_stay_within_numba_num_threads():
    """One who sets NUMBA_NUM_THREADS=1 and gives no --threads trains on one thread, not on the cores (refused)."""
    code = "from tinyprop.tasks.mnist import MnistSettings; print(MnistSettings().threads)"
    shown = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NUMBA_NUM_THREADS="1"),
                           capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "1"


def test_a_sweep_gives_each_run_its_threads_unless_the_row_sets_them(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text('paper = "x"\ntable = "t"\ncaption = "c"\nseeds = 1\n'
                    '[[row]]\nlabel = "own"\ntask = "mnist"\nsettings = { net = "mlp", threads = 3 }\n'
                    '[[row]]\nlabel = "shared"\ntask = "mnist"\nsettings = { net = "mlp" }\n')
    experiment = load(str(path))
    assert [spec.settings.threads for spec in run_specs(experiment, tmp_path, threads=2)] == [3, 2]
    assert [spec.settings.threads for spec in run_specs(experiment, tmp_path)] == [3, KERNEL_THREADS]


@pytest.mark.parametrize("jobs,ray_address,threads,numba_threads,expected", [
    (2, None, None, 4, 2), (None, None, None, 4, 1), (3, None, None, 4, 1), (1, None, None, 4, 4),
    (1, None, None, 3, 3), (None, "auto", None, 4, 1), (2, None, 3, 4, 3)])
def test_reproduce_gives_each_run_its_share_of_the_cores(tmp_path, monkeypatch, jobs, ray_address, threads,
                                                         numba_threads, expected):
    """On a 4-core machine: cores // jobs (jobs defaulting to the cores) but at most NUMBA_NUM_THREADS, one a
    Ray task, or --threads."""
    import tinyprop.tasks.experiments as experiments
    path = tmp_path / "one.toml"
    path.write_text('paper = "x"\ntable = "t"\ncaption = "c"\nseeds = 1\n'
                    '[[row]]\nlabel = "shared"\ntask = "mnist"\nsettings = { net = "mlp" }\n')
    started = []
    monkeypatch.setattr(experiments, "CORES", 4)
    monkeypatch.setattr(experiments, "KERNEL_THREADS", numba_threads)
    def runs(todo, *where):  # as local_runs and ray_runs: a generator, of no runs here
        started.extend(todo)
        yield from ()
    monkeypatch.setattr(experiments, "local_runs", runs)
    monkeypatch.setattr(experiments, "ray_runs", runs)
    experiments.reproduce(str(path), tmp_path / "results", jobs=jobs, ray_address=ray_address, threads=threads,
                          log=lambda line: None)
    assert [spec.settings.threads for spec in started] == [expected]
