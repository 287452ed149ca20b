"""meSimp: the activity record, physical removal with column propagation, a run end to end.

The cycles of its training are tested with the training loop, in test_training.py."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tinyprop.cli import main
from tinyprop.tasks.mnist import build_mlp
from tinyprop.tasks.run import load_model
from tinyprop.mesimp import LinearActivityRecord, Simplifier
from tinyprop.layers import Linear, SoftmaxCrossEntropy
from tinyprop.optim import Adam


def test_record_counts_a_hand_computed_example():
    record = LinearActivityRecord(6, k=2)
    # example 1 has 3 non-zero entries >= k: its top-2 {2, 5} counts
    # example 2 has 1 non-zero entry: unit 3, and the zero of lowest index, unit 0
    dy = np.array([[0.5, 0, -2, 0, 0, 1], [0, 0, 0, 3, 0, 0]], dtype=np.float32)
    record.count_examples(np.array([[2, 5], [3, 0]]), dy)
    assert record.counts.tolist() == [1, 0, 1, 1, 0, 1] and record.examples == 2
    # keep original units 1, 3, 4; the removed 0, 2, 5 still take zero places by original index
    record.keep_and_clear(np.array([1, 3, 4]))
    assert record.counts.tolist() == [0, 0, 0] and record.examples == 0
    dy = np.array([[0, 0, 0.7], [0, 0, 0]], dtype=np.float32)
    record.count_examples(np.array([[2, 0], [0, 1]]), dy)
    # example 1: unit 4 (non-zero); its one zero place goes to removed unit 0
    # example 2: two zero places, removed unit 0 and live unit 1 (rank 1); unit 3 (rank 3) misses
    assert record.counts.tolist() == [1, 0, 1] and record.examples == 2


def test_threshold_rule_is_nnmnists():
    record = LinearActivityRecord(4, k=2)
    record.counts[:] = [1, 2, 3, 0]
    record.examples = 25
    assert record.units_to_keep(0.1).tolist() == [1, 2]  # theta = int(25 x 0.1) = 2
    record.examples = 27
    assert record.units_to_keep(0.1).tolist() == [1, 2]  # int(2.7) = 2: truncated, not rounded to 3
    assert record.units_to_keep(0.0).tolist() == [0, 1, 2, 3]  # rate 0 removes nothing
    assert record.units_to_keep(1.0).tolist() == [2]  # never below one unit: the most active stays


def masked_forward(model, x, keeps):
    """The C# reference: the same network, pruned units' outputs masked to zero."""
    linears = [layer for layer in model.layers if isinstance(layer, Linear)]
    h = x
    for position, layer in enumerate(linears):
        h = h @ layer.weight.value.T + layer.bias.value
        if position < len(linears) - 1:
            mask = np.zeros(layer.n_out, dtype=bool)
            mask[keeps[position]] = True
            h = np.maximum(h * mask, 0)
    return h


def test_removal_gives_exactly_the_masked_network_outputs(rng):
    model = build_mlp([12, 9, 7, 4], "mlpvar", k=3, rng=rng)
    linears = [layer for layer in model.layers if isinstance(layer, Linear)]
    for layer in linears:
        layer.bias.value[:] = rng.standard_normal(layer.n_out)
    x = rng.standard_normal((5, 12)).astype(np.float32)
    keeps = [np.array([0, 2, 3, 8]), np.array([1, 5, 6])]
    expected = masked_forward(model, x, keeps)
    simplifier = Simplifier(zip(linears[:-1], linears[1:]), rate=0.5)
    for record, keep in zip(simplifier.records, keeps):
        record.counts[keep] = 10
        record.examples = 10
    kept = simplifier.prune()
    assert [units.tolist() for units in kept] == [keep.tolist() for keep in keeps]
    assert simplifier.sizes() == [4, 3] and simplifier.describe() == "4(9) 3(7)"
    assert [layer.weight.shape for layer in linears] == [(4, 12), (3, 4), (4, 3)]
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-5, atol=1e-6)
    assert all(record.examples == 0 and not record.counts.any() for record in simplifier.records)


def test_prune_returns_the_kept_units_by_their_original_index(rng):
    model = build_mlp([12, 9, 7, 4], "mlpvar", k=3, rng=rng)
    linears = [layer for layer in model.layers if isinstance(layer, Linear)]
    simplifier = Simplifier(zip(linears[:-1], linears[1:]), rate=0.5)
    for keeps in ([np.array([0, 2, 3, 8]), np.arange(7)], [np.array([1, 3]), np.array([0, 4, 6])]):
        for record, keep in zip(simplifier.records, keeps):
            record.counts[keep] = 10
            record.examples = 10
        kept = simplifier.prune()
    # the second pruning kept units 1 and 3 of the four left: originally 2 and 8
    assert [units.tolist() for units in kept] == [[2, 8], [0, 4, 6]]
    kept[0][:] = 0
    assert simplifier.records[0].original_index.tolist() == [2, 8]


def test_optimizer_state_follows_the_parameters_and_training_continues(rng):
    model = build_mlp([10, 8, 3], "mlpvar", k=3, rng=rng)
    first, last = [layer for layer in model.layers if isinstance(layer, Linear)]
    optimizer = Adam(model.params())
    loss = SoftmaxCrossEntropy()
    simplifier = Simplifier([(first, last)], rate=0.4)
    x = rng.standard_normal((4, 10)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    for _ in range(3):
        loss.forward(model.forward(x), labels)
        model.backward(loss.backward(), need_dx=False)
        simplifier.observe()
        optimizer.step()
        model.zero_grad()
    keep = simplifier.records[0].units_to_keep(0.4)
    mean_before = first.weight.state["mean"][keep].copy()
    column_state_before = last.weight.state["mean_square"][:, keep].copy()
    simplifier.prune()
    assert first.n_out == keep.size and 1 <= first.n_out < 8 and first.k == min(3, first.n_out)
    for param in model.params():
        assert all(array.shape == param.shape for array in param.state.values())
        assert param.grad.shape == param.shape and param.rows_with_grad.shape == param.shape[:1]
    assert np.array_equal(first.weight.state["mean"], mean_before)
    assert np.array_equal(last.weight.state["mean_square"], column_state_before)
    loss.forward(model.forward(x), labels)
    model.backward(loss.backward(), need_dx=False)
    optimizer.step()
    assert np.isfinite(model.forward(x)).all()


def test_a_model_pruned_below_k_is_rebuilt_with_k_capped():
    model = build_mlp([784, 60, 10], "mlpvar", k=80)
    assert model.layers[0].k == 60 and model.layers[-1].k is None


@pytest.mark.data
def test_mlpvar_end_to_end_on_a_slice(tmp_path, mnist_dir):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "mnist", "--net", "mlpvar", "--k", "160", "--prune", "0.1", "--train-cycle", "1", "--epochs", "3",
        "--iter-per-epoch", "3", "--max-examples", "10000", "--seed", "2", "--data-dir", os.path.dirname(mnist_dir),
        "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.load(open(out / "summary.json"))
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["epoch"] for r in records if "pruned_sizes" in r] == [1, 1, 1, 3, 3, 3]
    # each line's sizes are those of the model it scored: before that part's pruning
    assert records[0]["hidden_sizes"] == [500, 500]
    assert all(after["hidden_sizes"] == before.get("pruned_sizes", before["hidden_sizes"])
               for before, after in zip(records, records[1:]))
    final = summary["hidden_sizes"]
    assert final == records[-1]["pruned_sizes"] and summary["original_hidden_sizes"] == [500, 500]
    _, _, saved = load_model(out / "model.npz")  # the model whose test score the summary reports
    best = [r for r in records if (r["epoch"], r["part"]) == (summary["best_epoch"], summary["best_part"])][0]
    assert summary["saved_hidden_sizes"] == best["hidden_sizes"] == [layer.n_out for layer in saved.layers
                                                                     if isinstance(layer, Linear)][:-1]
    assert summary["saved_param_count"] == sum(param.value.size for param in saved.params())
    assert all(1 <= size < 500 for size in final) and final[0] != final[1]
    assert summary["param_count"] == 784 * final[0] + final[0] + final[0] * final[1] + final[1] + final[1] * 10 + 10
    assert summary["decode_time_unsimplified_s"] > 0 and summary["decode_time_s"] > 0
    assert summary["test_acc"] > 90.0
    assert "dims: " in result.output
    saved = np.load(out / "model.npz")
    assert saved["layer1.weight"].shape[1] == 784
    evaluated = CliRunner().invoke(main, ["evaluate", "--model", str(out / "model.npz"),
                                          "--data-dir", os.path.dirname(mnist_dir)])
    assert evaluated.exit_code == 0 and f"dev: accuracy {summary['best_dev_acc']:.2f}%" in evaluated.output


def test_a_simplifier_refuses_pairs_it_cannot_simplify():
    with pytest.raises(ValueError, match=r"Linear\(4, 5\) must run per-example top-k meProp"):
        Simplifier([(Linear(4, 5), Linear(5, 2))], 0.1)
    # the record emulates top-k sets; a random draw or a unified set would be counted wrong
    for selection in ("unified", "rand"):
        with pytest.raises(ValueError, match=f"selection='{selection}'\\) must run per-example top-k meProp"):
            Simplifier([(Linear(4, 5, k=2, selection=selection), Linear(5, 2))], 0.1)
    with pytest.raises(ValueError, match=r"Linear\(4, 2\) takes 4 inputs, but Linear\(4, 5, k=2, selection='top'\) "
                                         r"gives 5"):
        Simplifier([(Linear(4, 5, k=2), Linear(4, 2))], 0.1)


def test_misuses_of_a_simplifier_are_told_not_crashed(rng):
    layer, consumer = Linear(4, 5, k=2, rng=rng), Linear(5, 2, rng=rng)
    simplifier = Simplifier([(layer, consumer)], 0.1)
    with pytest.raises(RuntimeError, match=r"has no top-k sets to record; call observe after its backward"):
        simplifier.observe()
    with pytest.raises(ValueError, match="linear.weight: cannot remove every unit"):
        layer.remove_outputs(np.array([], dtype=int))
