"""meAct (TKDE 2018, Section 3.5, Algorithm 3): the active-only kernels and layer against the dense computation on
masked activations, the selection rule against its plain version, the settings' errors, a run end to end.

Exact resume of an mlpact run (its accumulators, then its active sets, in the checkpoint) is in test_resume.py."""
import json
import os

import numpy as np
import pytest

from tinyprop import reference
from tinyprop.gradcheck import grad_check
from tinyprop.kernels import active_rows_input_grad, add_active_rows_grad, set_active_rows
from tinyprop.layers import ActiveLinear
from tinyprop.meact import MinimalEffortActivation, select_active_units
from tinyprop.optim import Adam
from tinyprop.tasks.mnist import MnistSettings
from tinyprop.tasks.run import run
from tinyprop.tasks.settings import ConfigError, make_settings

from support import numba_threads

N_EXAMPLES, N_IN, N_OUT = 7, 13, 19


@pytest.fixture
def active(rng):
    """Active sets of a training set of 7 examples over 19 units, held CSR-like, and their mask: example 0 has no
    active unit, example 1 all of them (two passes of set_active_rows' eight rows, and three alone), example 2
    eight, the others some."""
    mask = rng.random((N_EXAMPLES, N_OUT)) < 0.4
    mask[0], mask[1] = False, True
    mask[2] = np.arange(N_OUT) % 2 == 1  # eight of the odd units, then the last, 17, off
    mask[2, 17] = False
    indices, offsets = reference.active_sets(mask)
    return mask, indices, offsets


def batch_of(active, examples):
    """(the batch's mask, the layer's `active`) for the batch of training-set examples `examples`."""
    mask, indices, offsets = active
    examples = np.array(examples, dtype=np.int64)
    return mask[examples], (examples, indices, offsets)


def test_active_sets_are_the_masks_rows(active):
    mask, indices, offsets = active
    assert offsets.tolist()[:3] == [0, 0, N_OUT]
    for j in range(N_EXAMPLES):
        assert indices[offsets[j]:offsets[j + 1]].tolist() == np.flatnonzero(mask[j]).tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_compute_the_dense_layer_on_masked_activations(rng, active, dtype):
    mask, layer_active = batch_of(active, [4, 0, 1, 6, 2])  # no active unit, all active, and some, out of order
    x = rng.standard_normal((5, N_IN)).astype(dtype)
    W = rng.standard_normal((N_OUT, N_IN)).astype(dtype)
    b = rng.standard_normal(N_OUT).astype(dtype)
    dy = rng.standard_normal((5, N_OUT)).astype(dtype)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)

    y = np.zeros((5, N_OUT), dtype=dtype)
    set_active_rows(x, W, b, *layer_active, y)
    np.testing.assert_allclose(y, reference.active_linear_forward(x, W, b, mask), **tolerance)
    assert not y[1].any()  # the example without active units outputs zeros

    dW_want, db_want, dx_want = reference.active_linear_backward(x, W, dy, mask)
    dW, db = np.ones_like(W), np.ones_like(b)  # the kernel adds to what is there
    weight_rows, bias_rows = np.zeros(N_OUT, dtype=bool), np.zeros(N_OUT, dtype=bool)
    add_active_rows_grad(dy, x, *layer_active, dW, db, weight_rows, bias_rows)
    np.testing.assert_allclose(dW - 1, dW_want, **tolerance)
    np.testing.assert_allclose(db - 1, db_want, **tolerance)
    assert weight_rows.tolist() == bias_rows.tolist() == mask.any(axis=0).tolist()
    dx = np.full_like(x, np.nan)
    active_rows_input_grad(dy, W, *layer_active, dx)
    np.testing.assert_allclose(dx, dx_want, **tolerance)
    assert not dx[1].any()


def test_kernels_give_the_same_bits_on_one_and_two_threads(rng, active):
    _, layer_active = batch_of(active, [4, 0, 1, 6, 2, 5, 3])
    x = rng.standard_normal((7, N_IN)).astype(np.float32)
    W = rng.standard_normal((N_OUT, N_IN)).astype(np.float32)
    dy = rng.standard_normal((7, N_OUT)).astype(np.float32)
    results = []
    for threads in (1, 2):
        with numba_threads(threads):
            y, dW, db, dx = np.zeros((7, N_OUT), np.float32), np.ones_like(W), np.ones(N_OUT, np.float32), np.empty_like(x)
            set_active_rows(x, W, W[:, 0].copy(), *layer_active, y)
            add_active_rows_grad(dy, x, *layer_active, dW, db, np.zeros(N_OUT, bool), np.zeros(N_OUT, bool))
            active_rows_input_grad(dy, W, *layer_active, dx)
        results.append((y, dW, db, dx))
    for one, two in zip(*results):
        assert np.array_equal(one, two)


def test_active_linear_gradients_pass_a_gradient_check(rng, active):
    layer = ActiveLinear(N_IN, N_OUT, rng=rng, dtype=np.float64)
    _, layer.active = batch_of(active, [3, 0, 1, 5])
    errors = grad_check(layer, rng.standard_normal((4, N_IN)))
    assert max(errors.values()) < 1e-7, errors


def test_only_the_active_rows_get_gradient_and_move(rng, active):
    """The row marks of meProp's backward: Adam moves the rows of W and entries of b some example of the batch
    has active, and leaves the others (and their state) as they were."""
    layer = ActiveLinear(N_IN, N_OUT, rng=rng)
    mask, layer.active = batch_of(active, [0, 2, 3])  # example 0 has none; the others leave some units out
    optimizer = Adam(layer.params())
    before = [param.value.copy() for param in layer.params()]
    layer.backward(rng.standard_normal((3, N_OUT)).astype(np.float32) * (layer.forward(
        rng.standard_normal((3, N_IN)).astype(np.float32)) != 0), need_dx=False)
    used = mask.any(axis=0)
    assert not used.all() and layer.weight.rows_with_grad.tolist() == used.tolist()
    optimizer.step()
    for param, old in zip(layer.params(), before):
        moved = (param.value != old).reshape(N_OUT, -1).any(axis=1)
        assert not moved[~used].any()
        assert (param.state["mean"][~used] == 0).all()


def test_in_evaluation_and_without_active_sets_the_layer_is_dense(rng, active):
    layer = ActiveLinear(N_IN, N_OUT, rng=rng)
    x = rng.standard_normal((3, N_IN)).astype(np.float32)
    dense = layer.forward(x)
    _, layer.active = batch_of(active, [0, 2, 3])
    layer.train(False)
    np.testing.assert_array_equal(layer.forward(x), dense)


def test_selection_is_the_plain_rule(rng):
    g = rng.exponential(size=(40, 50)).astype(np.float32) * (rng.random((40, 50)) < 0.5)
    g[0] = 0  # an example whose gradients were all zero: no unit
    g[1] = 1  # an even share, 1/50 > p: every unit
    indices, offsets = select_active_units(g, 0.015)
    want = reference.meact_active_mask(g, 0.015)
    assert [offsets[1] - offsets[0], offsets[2] - offsets[1]] == [0, 50]
    np.testing.assert_array_equal(indices, reference.active_sets(want)[0])
    np.testing.assert_array_equal(offsets, reference.active_sets(want)[1])


def test_the_record_adds_each_examples_gradient_and_activation(rng):
    layer = ActiveLinear(N_IN, N_OUT, rng=rng)
    activator = MinimalEffortActivation([layer], N_EXAMPLES, act_after=1, threshold=0.05)
    x = rng.standard_normal((2, N_IN)).astype(np.float32)
    dy = rng.standard_normal((2, N_OUT)).astype(np.float32)
    for _ in range(2):  # the same batch twice: the sums double
        activator.use([5, 2])
        y = layer.forward(x)
        layer.backward(dy, need_dx=False)
        activator.observe()
    np.testing.assert_allclose(activator.gradients[0][[5, 2]], 2 * np.abs(dy))
    np.testing.assert_allclose(activator.activations[0][[5, 2]], 2 * np.maximum(y, 0))
    assert not activator.gradients[0][[0, 1, 3, 4, 6]].any()
    assert not activator.start_epoch(1) and activator.start_epoch(2) and activator.gradients is None
    assert activator.selection[0]["min"] == 0  # examples never seen keep no unit
    activator.use([5, 2])
    assert layer.active[0].tolist() == [5, 2]


def test_with_act_mask_recorded_a_masked_unit_is_held_at_its_mean_and_gets_no_gradient(rng):
    """The other reading of Algorithm 3's line 7: a masked unit outputs its recorded mean activation over the e dense
    epochs for that example (the sum of max(y, 0) divided by e), a constant that gets no gradient."""
    layer = ActiveLinear(N_IN, N_OUT, rng=rng)
    activator = MinimalEffortActivation([layer], N_EXAMPLES, act_after=2, threshold=0.05, mask="recorded")
    examples = [5, 2, 0]
    x = rng.standard_normal((3, N_IN)).astype(np.float32)
    dy = rng.standard_normal((3, N_OUT)).astype(np.float32)
    for _ in range(2):  # two dense epochs over the same batch, with different inputs
        for batch in (x, 2 * x):
            activator.use(examples)
            layer.forward(batch)
            layer.backward(dy, need_dx=False)
            activator.observe()
    relu = np.maximum(layer.forward(x), 0)  # W did not change: the same outputs as the dense epochs'
    sums = activator.activations[0][examples].copy()
    np.testing.assert_allclose(sums, 2 * (relu + np.maximum(layer.forward(2 * x), 0)), rtol=1e-5)
    assert activator.start_epoch(3) and activator.held is not None
    means = sums / 2  # per example, the mean over the 2 dense epochs' (two visits each) activations
    activator.use(examples)
    indices, offsets = activator.indices[0], activator.offsets[0]
    mask = np.zeros((3, N_OUT), dtype=bool)
    for b, j in enumerate(examples):
        mask[b, indices[offsets[j]:offsets[j + 1]]] = True
    assert mask.any() and not mask.all()
    y = layer.forward(x)
    dense = x @ layer.weight.value.T + layer.bias.value
    np.testing.assert_allclose(y[~mask], means[~mask], rtol=1e-6)  # masked: held at the recorded mean
    np.testing.assert_allclose(y[mask], dense[mask], rtol=1e-5, atol=1e-6)  # active: computed
    layer.zero_grad()  # the gradients and the marks of the dense epochs
    dx = layer.backward(dy)
    # no gradient for a masked unit: a row of W gets the batch's gradient only from the examples it is active for
    np.testing.assert_allclose(layer.weight.grad, (dy * mask).T @ x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.bias.grad, (dy * mask).sum(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, (dy * mask) @ layer.weight.value, rtol=1e-5, atol=1e-6)
    # only the rows active for some example are marked for the optimizer
    np.testing.assert_array_equal(layer.weight.rows_with_grad, mask.any(axis=0))
    layer.train(False)
    np.testing.assert_allclose(layer.forward(x), dense, rtol=1e-5, atol=1e-6)  # testing: the full network


def test_act_mask_zero_keeps_no_held_means(rng):
    layer = ActiveLinear(N_IN, N_OUT, rng=rng)
    activator = MinimalEffortActivation([layer], N_EXAMPLES, act_after=1, threshold=0.05)
    activator.gradients[0][:] = activator.activations[0][:] = 1  # a record as if trained: every unit active
    activator.start_epoch(2)
    activator.use([1])
    assert activator.held is None and layer.held is None and set(activator.arrays()) == {"indices/0", "offsets/0"}
    with pytest.raises(ValueError, match="mask must be one of zero, recorded"):
        MinimalEffortActivation([layer], N_EXAMPLES, act_after=1, threshold=0.05, mask="frozen")


@pytest.mark.parametrize("act_after", [0, 1.5, True])
def test_act_after_must_be_a_whole_number_of_epochs(rng, act_after):
    layer = ActiveLinear(N_IN, N_OUT, rng=rng)
    with pytest.raises(ValueError, match=r"act_after \(e, the dense epochs before the selection\) must be a whole "
                                         f"number >= 1, got {act_after!r}"):
        MinimalEffortActivation([layer], N_EXAMPLES, act_after=act_after, threshold=0.05)


def test_active_sets_that_do_not_fit_the_batch_are_refused_before_the_kernels(rng, active):
    """The kernels index the sets unchecked: a short examples array or a wrong index would read past them."""
    layer = ActiveLinear(N_IN, N_OUT, rng=rng)
    x = rng.standard_normal((3, N_IN)).astype(np.float32)
    for examples, message in [([4, 0], r"one set for each of the batch's 3 examples, got shape \(2,\)"),
                              ([4, 0, 7], "must index its 7 active sets, got 0 to 7"),
                              ([4, -1, 2], "must index its 7 active sets, got -1 to 4")]:
        layer.active = (np.array(examples), *active[1:])
        with pytest.raises(ValueError, match=message):
            layer.forward(x)
    layer.active = batch_of(active, [4, 0, 2])[1]
    layer.held = np.zeros((N_EXAMPLES, N_OUT + 1), np.float32)
    with pytest.raises(ValueError, match=r"held must be \(active sets, out\) = \(7, 19\), got \(7, 20\)"):
        layer.forward(x)


def test_in_evaluation_the_backward_is_the_dense_layers_as_the_forward(rng, active):
    layer = ActiveLinear(N_IN, N_OUT, rng=rng)
    layer.active = batch_of(active, [4, 0, 2])[1]
    layer.train(False)
    x, dy = rng.standard_normal((3, N_IN)).astype(np.float32), rng.standard_normal((3, N_OUT)).astype(np.float32)
    np.testing.assert_allclose(layer.forward(x), x @ layer.weight.value.T + layer.bias.value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.backward(dy), dy @ layer.weight.value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.weight.grad, dy.T @ x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options, message", [
    (dict(net="mlpact", act_mask="frozen"), r"^--act-mask \(ActMask\): 'frozen' is not one of zero, recorded"),
    (dict(net="mlp", act_mask="recorded"), r"^--act-mask \(ActMask\): --net mlp does not use it"),
    (dict(net="mlpact", act_after=3, epochs=3), r"^--act-after \(ActAfter\): must be below the epochs \(--epochs, MaxEpoch\), 3, "
                                                "got 3"),
    (dict(net="mlpact", act_after=0), r"^--act-after \(ActAfter\): must be at least 1, got 0"),
    (dict(net="mlpact", act_threshold=1.0), r"^--act-threshold \(ActThreshold\): must be below 1, got 1.0"),
    (dict(net="mlpact", act_threshold=0.0), r"^--act-threshold \(ActThreshold\): must be above 0, got 0.0"),
    (dict(net="mlp", act_after=5), r"^--act-after \(ActAfter\): --net mlp does not use it; leave it out"),
    (dict(net="mlptop", act_threshold=0.01), r"^--act-threshold \(ActThreshold\): --net mlptop does not use it"),
    (dict(net="mlpact", layers=1), r"^--layers \(Layers\): mlpact applies meAct to hidden layers"),
])
def test_settings_errors_name_the_option(options, message):
    with pytest.raises(ConfigError, match=message):
        make_settings(MnistSettings, options=options)


def test_an_nnmnist_config_sets_the_meact_keys(tmp_path):
    from tinyprop.tasks.settings import read_nnmnist_config
    path = tmp_path / "run.json"
    path.write_text(json.dumps(dict(NetType="mlpact", ActAfter=4, ActThreshold=0.01, ActMask="recorded", MaxEpoch=6)))
    settings = make_settings(MnistSettings, read_nnmnist_config(MnistSettings, str(path)))
    assert (settings.net, settings.act_after, settings.act_threshold, settings.act_mask) == (
        "mlpact", 4, 0.01, "recorded")
    assert MnistSettings().act_mask == "zero"


@pytest.mark.data
def test_mlpact_learns_mnist_from_a_slice(tmp_path, mnist_dir):
    """Dense for one epoch, then each example on its own active units for two: the summary has the active sets'
    sizes and the update sizes of both phases, and the full network scores the test set."""
    settings = MnistSettings(net="mlpact", act_after=1, epochs=3, max_examples=3000, seed=1, data_dir=mnist_dir)
    summary = run("mnist", settings, str(tmp_path / "run"), log=lambda line: None)
    assert summary["test_acc"] > 85  # 87.7 here (its best dev came in the dense epoch)
    lines = [json.loads(line) for line in open(os.path.join(tmp_path, "run", "metrics.jsonl"))]
    assert [line["meact"] for line in lines] == [False] * 8 + [True] * 16
    # Each example's active units carry it at once: 96.3 in meAct's first part here, 54.9 with every active unit
    # index shifted by one (a broken selection or kernel); the full network's dev accuracy in meAct's parts: 86.4
    # on average here (it overfits the slice), 76.1 shifted.
    assert lines[8]["train_acc"] > 90
    assert np.mean([line["dev_acc"] for line in lines[8:]]) > 83
    for layer in summary["active_units"]:
        assert 50 < layer["mean"] < 200 and layer["min"] <= layer["median"] <= layer["max"] <= 500
    assert summary["update_size_meact"]["all"] < summary["update_size_dense"]["all"]
