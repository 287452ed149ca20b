"""The benchmark's references and report (its timings are not tested)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tinyprop.bench import _dense_loop_backward, bench_layer
from tinyprop.layers import Linear

HERE = os.path.dirname(os.path.abspath(__file__))


def test_dense_loop_reference_computes_the_whole_input_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6), dtype=np.float32)
    dy = rng.standard_normal((3, 5), dtype=np.float32)
    reference = Linear(6, 5, rng=np.random.default_rng(7))
    dx = _dense_loop_backward(6, 5, x, np.random.default_rng(7))(dy)
    np.testing.assert_allclose(dx, dy @ reference.weight.value, rtol=1e-5, atol=1e-6)


def test_linear_bench_reports_ratios_to_both_dense_references():
    report = bench_layer(8, 6, 2, 3, rounds=1, calls=1, pool=2)
    variants = report["variants"]
    assert report["limit"] == 2.0 and set(variants) == {"dense-blas", "dense-loop", "top", "unified", "rand"}
    for entry in variants.values():  # each ratio is the reference's median over this variant's
        for reference in ("dense-blas", "dense-loop"):
            assert entry[f"vs_{reference}"] == pytest.approx(variants[reference]["median_us"] / entry["median_us"])


@pytest.mark.data
def test_epoch_compare_reports_medians_ratios_and_the_phases_within_each_epoch(mnist_dir):
    """benchmarks/epoch_compare.py on 300 images: each tinyprop variant's forward, backward and update
    fit within its epoch, and the printed ratios are the dense median over each variant's."""
    script = os.path.join(os.path.dirname(HERE), "benchmarks", "epoch_compare.py")
    env = dict(os.environ, TINYPROP_DATA=os.path.dirname(mnist_dir), PYTHONPATH=os.path.dirname(HERE))
    result = subprocess.run([sys.executable, script, "--rounds", "2", "--max-examples", "300", "--threads", "1",
                             "--json"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[result.stdout.index("\n{") + 1:])
    medians, phases = report["medians"], report["phase_medians"]
    assert set(phases) == {"tinyprop mlp (dense), 1 thread", "tinyprop mlptop k=80, 1 thread",
                           "tinyprop mlptop k=80 unified, 1 thread"}
    for name, split in phases.items():
        assert list(split) == ["forward", "backward", "update"] and min(split.values()) > 0
        # the epoch also shuffles, slices and scales the batches (over two rounds each median is a mean)
        assert sum(split.values()) <= medians[name]
        assert len(report["seconds"][name]) == 2
    assert "300 images, batch 10" in result.stdout
    dense = medians["tinyprop mlp (dense), 1 thread"]
    lines = {line[:54].strip(): line for line in result.stdout.splitlines() if line.startswith("  ")}
    for name, seconds in medians.items():
        assert f"dense tinyprop, 1 thread / this: {dense / seconds:5.2f}x" in lines[name]


@pytest.mark.data
def test_step_parts_names_every_layer_and_parameter_and_its_parts_fit_in_the_step(mnist_dir):
    """benchmarks/step_parts.py over one round: a line for each layer's forward and backward, the loss and each
    parameter's update, and, with one round (medians are the values), the parts fit in the step."""
    script = os.path.join(os.path.dirname(HERE), "benchmarks", "step_parts.py")
    env = dict(os.environ, TINYPROP_DATA=os.path.dirname(mnist_dir), PYTHONPATH=os.path.dirname(HERE))
    result = subprocess.run([sys.executable, script, "--threads", "1", "--steps", "30", "--rounds", "1"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("microseconds a step:"):].splitlines()[2:]
    times = {line[:42].strip(): float(line[42:]) for line in table}
    layers = ["0 Linear", "1 ReLU", "2 Linear", "3 ReLU", "4 Linear"]
    updates = [f"layer{n}.{name}" for n in (1, 2, 3) for name in ("weight", "bias")]
    assert list(times) == ([f"forward {layer}" for layer in layers] + ["loss forward", "loss backward"]
                           + [f"backward {layer}" for layer in reversed(layers)] + [f"update {u}" for u in updates]
                           + ["the rest (batch, timers, accuracy)", "the step"])
    # with one round each median is the round's value: the rest is the step less the parts, and it is positive
    # (it gathers and scales the batch) unless a part is counted twice
    assert min(times.values()) > 0


def test_bench_on_two_threads_gives_each_variants_speed_up():
    """`tinyprop bench --threads 2`: each layer's one-thread table, then its two-thread table with a column of
    one-thread time over two-thread time, which the two tables' medians give."""
    from click.testing import CliRunner

    from tinyprop.cli import main
    result = CliRunner().invoke(main, ["bench", "--in", "12", "--out", "8", "--batch", "3", "--k", "2", "--rounds", "1",
                                       "--calls", "1", "--threads", "2"])
    assert result.exit_code == 0, result.output
    tables = [table.splitlines() for table in re.split(r"\n(?=\S)", result.output.strip())]
    mine = [table for table in tables if table[0].startswith("linear 12->8")]
    assert [table[0].split("; ")[1].split(",")[0] for table in mine] == ["1 thread", "2 threads"]
    for table in tables:
        assert ("1 thread / this" in table[1]) == ("2 threads" in table[0]), table[:2]

    def medians(table):
        return {line.split()[0]: float(line.split()[1][:-2]) for line in table[2:]}
    one, two = medians(mine[0]), medians(mine[1])
    top = next(line for line in mine[1][2:] if line.split()[0] == "top")
    # the medians are printed to 0.1 us and the ratio to 0.01, so the ratio of the printed medians is only that close
    low, high = (one["top"] - 0.05) / (two["top"] + 0.05), (one["top"] + 0.05) / (two["top"] - 0.05)
    assert low - 0.005 <= float(top.split()[-1][:-1]) <= high + 0.005
