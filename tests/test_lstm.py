"""The LSTM: backpropagation through time against finite differences, meProp on the gates against
tinyprop.reference (the dense math on the masked gate gradients), and meSimp's joint removal of a unit's
four gates."""
import numpy as np
import pytest

from tinyprop.gradcheck import grad_check
from tinyprop.layers import LSTM, BiLSTM, Linear
from tinyprop.mesimp import ColumnBlock, GateActivityRecord, Simplifier
from tinyprop.optim import Adam
from tinyprop.reference import lstm_backward, selection_mask


def random_lstm(rng, n_in, hidden, k=None, dtype=np.float32):
    lstm = LSTM(n_in, hidden, k, rng=rng, dtype=dtype)
    lstm.bias.value[:] = 0.5 * rng.standard_normal(4 * hidden)
    return lstm


def test_lstm_backward_through_time_matches_finite_differences(rng):
    errors = grad_check(random_lstm(rng, 3, 4, dtype=np.float64), rng.standard_normal((6, 3)))
    assert max(errors.values()) < 1e-7, errors


def test_bilstm_wiring_matches_finite_differences(rng):
    layer = BiLSTM(3, (4, 2), dtype=np.float64, rng=rng)
    assert [lstm.n_out for lstm in layer.directions] == [4, 2]
    errors = grad_check(layer, rng.standard_normal((5, 3)))
    assert max(errors.values()) < 1e-7, errors


def test_bilstm_backward_direction_reads_the_sequence_reversed(rng):
    layer = BiLSTM(3, 4, dtype=np.float64, rng=rng)
    x = rng.standard_normal((5, 3))
    out = layer.forward(x)
    ahead, behind = layer.directions
    np.testing.assert_allclose(out[:, :4], ahead.forward(x))
    np.testing.assert_allclose(out[:, 4:], behind.forward(x[::-1])[::-1])
    changed = x.copy()
    changed[0] += 1.0  # x_0 reaches every forward state, and only the backward state of step 0
    moved = np.abs(layer.forward(changed) - out) > 1e-12
    assert moved[:, :4].all() and moved[0, 4:].all() and not moved[1:, 4:].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_batch_of_sequences_gives_what_each_sequence_gives_alone(rng, dtype):
    layer = BiLSTM(7, (6, 5), dtype=dtype, rng=rng)
    x = rng.standard_normal((4, 3, 7)).astype(dtype)  # 4 steps, 3 sequences
    batched = layer.forward(x)
    assert batched.shape == (4, 3, 11)
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    for b in range(3):
        np.testing.assert_allclose(batched[:, b], layer.forward(x[:, b]), rtol=tolerance, atol=tolerance / 10)
    assert not np.allclose(batched[:, 0], batched[:, 1])


def test_backward_after_a_batch_of_sequences_is_refused(rng):
    lstm = LSTM(3, 6, rng=rng)
    lstm.forward(rng.standard_normal((5, 3)).astype(np.float32))  # one sequence: its state kept
    lstm.forward(rng.standard_normal((5, 2, 3)).astype(np.float32))
    with pytest.raises(RuntimeError, match="backward takes one sequence; the last forward had a batch of 2"):
        lstm.backward(np.zeros((5, 6), dtype=np.float32))
    assert lstm.gates is None and lstm.cells is None and lstm.cell_tanh is None and lstm.x is None


def test_an_empty_sequence_or_batch_gives_empty_states(rng):
    layer = BiLSTM(3, (4, 2), rng=rng)
    assert layer.forward(np.zeros((0, 3), np.float32)).shape == (0, 6)
    assert layer.backward(np.zeros((0, 6), np.float32)).shape == (0, 3)
    assert layer.forward(np.zeros((5, 0, 3), np.float32)).shape == (5, 0, 6)


def test_dense_lstm_in_float32_matches_the_numpy_reference(rng):
    lstm = random_lstm(rng, 7, 6)
    x, dy = rng.standard_normal((9, 7)).astype(np.float32), rng.standard_normal((9, 6)).astype(np.float32)
    lstm.forward(x)
    dx = lstm.backward(dy)
    ref_dW_x, ref_dW_h, ref_db, ref_dx, mask = lstm_backward(*(p.value.astype(np.float64) for p in lstm.params()),
                                                             x.astype(np.float64), dy.astype(np.float64))
    assert mask.all()
    for got, want in ((dx, ref_dx), (lstm.input_weight.grad, ref_dW_x), (lstm.recurrent_weight.grad, ref_dW_h),
                      (lstm.bias.grad, ref_db)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def check_meprop_lstm_against_the_reference(lstm, x, dy):
    """The fast backward selects, per step and gate, the rows the reference selects (float32, as the layer
    computes: the same ties), and its gradients are the reference's; returns the reference's mask."""
    steps, hidden, k = dy.shape[0], lstm.n_out, lstm.k
    lstm.forward(x)
    dx = lstm.backward(dy)
    ref_dW_x, ref_dW_h, ref_db, ref_dx, mask = lstm_backward(*(p.value for p in lstm.params()), x, dy, k)
    assert lstm.selected.shape == (steps, 4 * k)
    assert (mask.reshape(steps, 4, hidden).sum(axis=2) == k).all()  # k rows in each gate's block
    assert np.array_equal(selection_mask(lstm.selected, 4 * hidden), mask)
    for got, want in ((dx, ref_dx), (lstm.input_weight.grad, ref_dW_x), (lstm.recurrent_weight.grad, ref_dW_h),
                      (lstm.bias.grad, ref_db)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.array_equal(lstm.input_weight.rows_with_grad, mask.any(axis=0))
    assert np.array_equal(lstm.recurrent_weight.rows_with_grad, mask[1:].any(axis=0))  # h_{-1} = 0: no step 0
    return mask


@pytest.mark.parametrize("k", [1, 3, 6])
def test_meprop_lstm_equals_the_reference(rng, k):
    hidden, steps = 6, 8
    lstm = random_lstm(rng, 5, hidden, k)
    x, dy = rng.standard_normal((steps, 5)).astype(np.float32), rng.standard_normal((steps, hidden)).astype(np.float32)
    mask = check_meprop_lstm_against_the_reference(lstm, x, dy)
    assert not lstm.input_weight.grad[~mask.any(axis=0)].any()


@pytest.mark.parametrize("hidden,k", [(6, 3), (8, 5)])
def test_meprop_lstm_breaks_ties_in_a_gate_to_the_lower_index(rng, hidden, k):
    """Only unit 2's h has gradient, at the last step: there every gate's block of dz is zero but for unit 2,
    and the other k - 1 rows kept are the zeros of lowest index (ties to the higher index would keep the last)."""
    lstm = random_lstm(rng, 4, hidden, k)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    dy = np.zeros((5, hidden), dtype=np.float32)
    dy[-1, 2] = 1.5
    mask = check_meprop_lstm_against_the_reference(lstm, x, dy)
    for block in mask[-1].reshape(4, hidden):  # unit 2 and the k - 1 zeros of lowest index: units 0 .. k - 1
        assert np.flatnonzero(block).tolist() == list(range(k))


def test_meprop_with_k_equal_to_hidden_is_the_dense_backward(rng):
    dense, full = random_lstm(np.random.default_rng(3), 4, 5), random_lstm(np.random.default_rng(3), 4, 5, k=5)
    x, dy = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    for lstm in (dense, full):
        lstm.forward(x)
    np.testing.assert_allclose(full.backward(dy), dense.backward(dy), rtol=1e-5, atol=1e-6)
    for a, b in zip(full.params(), dense.params()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-5, atol=1e-6)


def test_lstm_checks_its_arguments():
    with pytest.raises(RuntimeError, match="call forward first"):
        LSTM(3, 6).backward(np.zeros((2, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="k=7 is larger than the layer's 6 units"):
        LSTM(3, 6, k=7)
    with pytest.raises(ValueError, match="float32"):
        LSTM(3, 6, k=2, dtype=np.float64)
    with pytest.raises(ValueError, match=r"expected a float array x of shape \(steps, 3\)"):
        LSTM(3, 6).forward(np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected a float array x of shape \(steps, batch, 3\)"):
        LSTM(3, 6).forward(np.zeros((4, 1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected a float array x of shape \(steps, 3\)"):
        LSTM(3, 6).forward(np.zeros(3, dtype=np.float32))


def test_k_is_capped_by_the_units_a_direction_has(rng):
    assert [lstm.k for lstm in BiLSTM(3, (4, 2), k=3).directions] == [3, 2]
    lstm = LSTM(3, 6, k=4, rng=rng)
    lstm.remove_outputs(np.array([0, 2]))  # meSimp left 2 units: k follows
    lstm.forward(rng.standard_normal((5, 3)).astype(np.float32))
    lstm.backward(np.ones((5, 2), np.float32))
    assert lstm.k == 2 and lstm.selected.shape == (5, 4 * 2)


def test_gate_record_counts_a_unit_once_per_step_whatever_its_gates():
    record = GateActivityRecord(3)
    # two steps, k=1 per gate: rows g*3 + j; step 0 uses units 0 (twice), 1, 2; step 1 uses unit 2 only
    record.count_steps(np.array([[0, 3, 7, 5], [2, 5, 8, 11]]))
    assert record.counts.tolist() == [1, 1, 2] and record.examples == 2


def masked_bilstm_output(bilstm, output, x, keeps):
    """The network's output with the removed units silenced: their h feeds nothing (zeroed columns)."""
    saved = [(p, p.value.copy()) for p in bilstm.params() + output.params()]
    start = 0
    for lstm, keep in zip(bilstm.directions, keeps):
        removed = np.setdiff1d(np.arange(lstm.n_out), keep)
        lstm.recurrent_weight.value[:, removed] = 0
        output.weight.value[:, start + removed] = 0
        start += lstm.n_out
    result = output.forward(bilstm.forward(x))
    for param, value in saved:
        param.value[...] = value
    return result


@pytest.mark.parametrize("keeps", [[[0, 2, 5], [1, 2, 3, 4]], [[0, 1, 2, 3, 4, 5], [0, 5]]])
def test_mesimp_removes_a_unit_from_all_gates_its_recurrent_column_and_its_output_column(rng, keeps):
    bilstm = BiLSTM(4, 6, k=2, rng=rng)
    output = Linear(12, 3, rng=rng)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    keeps = [np.array(keep) for keep in keeps]
    sizes = [len(keep) for keep in keeps]
    expected = masked_bilstm_output(bilstm, output, x, keeps)
    ahead_weights = [p.value.copy() for p in bilstm.directions[0].params()]
    directions = bilstm.directions
    simplifier = Simplifier([(lstm, ColumnBlock(output, directions, position))
                             for position, lstm in enumerate(directions)], rate=0.5)
    optimizer = Adam(bilstm.params() + output.params())
    for param in optimizer.params:
        param.state["mean"][...] = rng.standard_normal(param.shape)
    mean_before = directions[0].recurrent_weight.state["mean"].copy()
    for record, keep in zip(simplifier.records, keeps):
        assert isinstance(record, GateActivityRecord)
        record.counts[keep] = 10
        record.examples = 10
    simplifier.prune()
    assert simplifier.sizes() == sizes and simplifier.describe() == f"{sizes[0]}(6) {sizes[1]}(6)"
    rows = np.concatenate([gate * 6 + keeps[0] for gate in range(4)])
    np.testing.assert_array_equal(directions[0].input_weight.value, ahead_weights[0][rows])
    np.testing.assert_array_equal(directions[0].recurrent_weight.value, ahead_weights[1][rows][:, keeps[0]])
    np.testing.assert_array_equal(directions[0].bias.value, ahead_weights[2][rows])
    np.testing.assert_array_equal(directions[0].recurrent_weight.state["mean"], mean_before[rows][:, keeps[0]])
    assert output.weight.shape == (3, sum(sizes)) and directions[1].recurrent_weight.shape == (4 * sizes[1], sizes[1])
    np.testing.assert_allclose(output.forward(bilstm.forward(x)), expected, rtol=1e-5, atol=1e-6)
    # training goes on with the smaller matrices: gradients and state have the parameters' shapes, and a step moves them
    before = [param.value.copy() for param in optimizer.params]
    assert bilstm.backward(output.backward(np.ones((5, 3), dtype=np.float32))).shape == (5, 4)
    optimizer.step()
    for param, value in zip(optimizer.params, before):
        assert {array.shape for array in [param.grad, *param.state.values()]} == {value.shape}
        assert np.isfinite(param.value).all() and not np.array_equal(param.value, value)
