"""Threads: a run's count goes to BLAS and to the Numba kernels, is recorded, and changes only BLAS's bits."""
import json

import numba
import numpy as np
import pytest
import threadpoolctl

from tinyprop.tasks.experiments import load, run_specs
from tinyprop.tasks.mnist import MnistSettings
from tinyprop.tasks.run import run
from tinyprop.tasks.settings import ConfigError

two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has one thread on this machine")


def train(folder, mnist_dir, threads):
    """A short mlptop run on `threads` threads; its model's arrays and its config.json."""
    run("mnist", MnistSettings(net="mlptop", k=80, max_examples=2000, epochs=1, seed=1, threads=threads,
                               data_dir=mnist_dir), str(folder), log=lambda line: None)
    with np.load(folder / "model.npz") as model, open(folder / "config.json") as config:
        return {name: model[name] for name in model.files if model[name].dtype.kind == "f"}, json.load(config)


@two_threads
@pytest.mark.data
def test_a_run_on_two_threads_is_one_on_one_but_for_blas(tmp_path, mnist_dir, monkeypatch):
    """Numba's two threads give the one-thread model bit for bit; BLAS's two threads round the dense products
    otherwise, so that the model is the same only within float32 rounding carried through an epoch."""
    one, config_one = train(tmp_path / "one", mnist_dir, 1)
    two, config_two = train(tmp_path / "two", mnist_dir, 2)
    assert config_one["settings"]["threads"] == 1 and config_two["settings"]["threads"] == 2
    # read by threadpoolctl inside the run: OpenBLAS, started with one thread (conftest.py), made a second
    assert {blas["num_threads"] for blas in config_two["provenance"]["blas"]} == {2}
    assert config_two["provenance"]["numba_threads"]["in_use"] == 2
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=0, atol=1e-3, err_msg=name)
    blas_limits = threadpoolctl.threadpool_limits
    monkeypatch.setattr(threadpoolctl, "threadpool_limits",
                        lambda limits, user_api: blas_limits(limits=1, user_api=user_api))
    numba_two, config = train(tmp_path / "numba-two", mnist_dir, 2)
    assert config["provenance"]["numba_threads"]["in_use"] == 2
    assert {blas["num_threads"] for blas in config["provenance"]["blas"]} == {1}
    for name in one:
        assert np.array_equal(numba_two[name], one[name]), name


def test_threads_default_to_one_and_more_than_numba_has_are_refused(tmp_path, mnist_dir):
    assert MnistSettings().threads == 1
    too_many = numba.config.NUMBA_NUM_THREADS + 1
    with pytest.raises(ConfigError, match=f"--threads {too_many}: Numba runs at most"):
        run("mnist", MnistSettings(net="mlp", max_examples=100, epochs=1, threads=too_many, data_dir=mnist_dir),
            str(tmp_path / "run"), log=lambda line: None)


def test_a_sweep_gives_each_run_its_threads_unless_the_row_sets_them(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text('paper = "x"\ntable = "t"\ncaption = "c"\nseeds = 1\n'
                    '[[row]]\nlabel = "own"\ntask = "mnist"\nsettings = { net = "mlp", threads = 3 }\n'
                    '[[row]]\nlabel = "shared"\ntask = "mnist"\nsettings = { net = "mlp" }\n')
    experiment = load(str(path))
    assert [spec.settings.threads for spec in run_specs(experiment, tmp_path, threads=2)] == [3, 2]
    assert [spec.settings.threads for spec in run_specs(experiment, tmp_path)] == [3, 1]


@pytest.mark.parametrize("jobs,ray_address,threads,expected", [(2, None, None, 2), (None, None, None, 1),
                                                                (3, None, None, 1), (1, None, None, 4),
                                                                (None, "auto", None, 1), (2, None, 3, 3)])
def test_reproduce_gives_each_run_its_share_of_the_cores(tmp_path, monkeypatch, jobs, ray_address, threads,
                                                         expected):
    """On a 4-core machine: cores // jobs (jobs defaulting to the cores), one a Ray task, or --threads."""
    import tinyprop.tasks.experiments as experiments
    path = tmp_path / "one.toml"
    path.write_text('paper = "x"\ntable = "t"\ncaption = "c"\nseeds = 1\n'
                    '[[row]]\nlabel = "shared"\ntask = "mnist"\nsettings = { net = "mlp" }\n')
    started = []
    monkeypatch.setattr(experiments, "CORES", 4)
    monkeypatch.setattr(experiments, "local_runs", lambda todo, jobs, sweep: started.extend(todo) or [])
    monkeypatch.setattr(experiments, "ray_runs", lambda todo, address, sweep: started.extend(todo) or [])
    experiments.reproduce(str(path), tmp_path / "results", jobs=jobs, ray_address=ray_address, threads=threads,
                          log=lambda line: None)
    assert [spec.settings.threads for spec in started] == [expected]
