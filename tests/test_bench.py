"""The benchmark's references and report (its timings are not tested)."""
import numpy as np
import pytest

from tinyprop.bench import _dense_loop_backward, bench_layer
from tinyprop.layers import Linear


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
