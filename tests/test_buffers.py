"""What forward and backward return is the caller's to keep (issue 25); a training loop may opt into
reused buffers (Layer.reuse_buffers), and the tasks' loops do, with results bit-identical to fresh arrays."""
from types import SimpleNamespace

import numpy as np
import pytest

from tinyprop.layers import (LSTM, BiLSTM, Conv2d, Cube, Dropout, Embedding, Embeddings, Linear, MaxPool2d, ReLU,
                             Reshape, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh)
from tinyprop.optim import Adam
from tinyprop.tasks.conllu import Sentence
from tinyprop.tasks.mnist import MnistTask, build_mlp
from tinyprop.tasks.parse import ParseData, ParserModel, ParseTask, Vocabulary
from tinyprop.tasks.pos import TaggerData, TaggerModel, TaggerTask, TagVocabulary


def floats(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# name -> (layer, input maker); every layer type, and each of Linear's, Conv2d's and LSTM's backward paths
LAYERS = {
    "linear dense": (lambda rng: Linear(6, 5, rng=rng), lambda rng: floats(rng, 3, 6)),
    "linear top": (lambda rng: Linear(6, 5, k=2, rng=rng), lambda rng: floats(rng, 3, 6)),
    "linear rand": (lambda rng: Linear(6, 5, k=2, selection="rand", rng=rng), lambda rng: floats(rng, 3, 6)),
    "linear unified, loops": (lambda rng: Linear(6, 5, k=2, selection="unified", rng=rng),
                              lambda rng: floats(rng, 3, 6)),
    "linear unified, blas": (lambda rng: Linear(500, 7, k=3, selection="unified", rng=rng),
                             lambda rng: floats(rng, 20, 500)),  # x above UNIFIED_LOOP_MAX_BYTES
    "conv dense": (lambda rng: Conv2d(2, 3, 3, padding=1, rng=rng), lambda rng: floats(rng, 2, 2, 5, 5)),
    "conv top": (lambda rng: Conv2d(2, 3, 3, padding=1, ratio=0.3, rng=rng), lambda rng: floats(rng, 2, 2, 5, 5)),
    "maxpool": (lambda rng: MaxPool2d(2), lambda rng: floats(rng, 2, 3, 4, 4)),
    "reshape": (lambda rng: Reshape((-1,)), lambda rng: floats(rng, 2, 3, 4)),
    "relu": (lambda rng: ReLU(), lambda rng: floats(rng, 3, 4)),
    "tanh": (lambda rng: Tanh(), lambda rng: floats(rng, 3, 4)),
    "sigmoid": (lambda rng: Sigmoid(), lambda rng: floats(rng, 3, 4)),
    "cube": (lambda rng: Cube(), lambda rng: floats(rng, 3, 4)),
    "dropout": (lambda rng: Dropout(0.5, rng), lambda rng: floats(rng, 3, 4)),
    "dropout off": (lambda rng: Dropout(0.0, rng), lambda rng: floats(rng, 3, 4)),
    "lstm dense": (lambda rng: LSTM(3, 4, rng=rng), lambda rng: floats(rng, 5, 3)),
    "lstm top": (lambda rng: LSTM(3, 4, k=2, rng=rng), lambda rng: floats(rng, 5, 3)),
    "bilstm": (lambda rng: BiLSTM(3, (4, 2), k=2, rng=rng), lambda rng: floats(rng, 5, 3)),
    "sequential": (lambda rng: Sequential([Linear(6, 8, k=3, rng=rng), ReLU(), Linear(8, 5, k=2, rng=rng)]),
                   lambda rng: floats(rng, 3, 6)),
    "embedding": (lambda rng: Embedding(7, 3, rng=rng), lambda rng: rng.integers(0, 7, (3, 2))),
    "embeddings": (lambda rng: Embeddings([Embedding(7, 3, rng=rng), Embedding(5, 2, rng=rng)], [2, 1]),
                   lambda rng: np.concatenate([rng.integers(0, 7, (3, 2)), rng.integers(0, 5, (3, 1))], axis=1)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_what_forward_and_backward_return_is_not_changed_by_later_calls(rng, name):
    make_layer, make_input = LAYERS[name]
    layer = make_layer(rng)
    returned = []  # (array, its copy when returned)

    def keep(array):
        if array is not None:
            returned.append((array, array.copy()))
        return array

    y = keep(layer.forward(make_input(rng)))
    keep(layer.backward(floats(rng, *y.shape)))
    keep(layer.backward(floats(rng, *y.shape)))  # again on the same forward: g1 = backward(dy1); g2 = backward(dy2)
    y = keep(layer.forward(make_input(rng)))
    keep(layer.backward(floats(rng, *y.shape)))
    assert len(returned) >= 2  # the embeddings return no dx
    for array, when_returned in returned:
        np.testing.assert_array_equal(array, when_returned)


def test_the_losss_gradient_is_not_changed_by_later_calls(rng):
    loss = SoftmaxCrossEntropy()
    loss.forward(floats(rng, 3, 4), np.array([0, 2, 1]))
    first = loss.backward()
    kept = first.copy()
    loss.backward()
    loss.forward(floats(rng, 3, 4), np.array([1, 1, 3]))
    loss.backward()
    np.testing.assert_array_equal(first, kept)


@pytest.mark.parametrize("selection", ["top", "rand", "unified", None])
def test_a_linear_layer_reusing_buffers_returns_the_same_values_in_its_own_array(selection):
    def backwards(reuse):
        rng = np.random.default_rng(3)
        layer = Linear(6, 5, k=selection and 2, selection=selection or "top", rng=rng)
        if reuse:
            layer.reuse_buffers()
        results = []
        for _ in range(3):
            layer.forward(floats(rng, 3, 6))
            results.append(layer.backward(floats(rng, 3, 5)))
        return results

    fresh, reused = backwards(False), backwards(True)
    assert reused[0] is reused[1] is reused[2]  # what the opt-in means: the next backward overwrites it
    assert fresh[0] is not fresh[1]
    np.testing.assert_array_equal(reused[2], fresh[2])


def test_the_loss_reusing_buffers_returns_the_same_values_in_its_own_arrays():
    def steps(reuse):
        rng = np.random.default_rng(3)
        loss = SoftmaxCrossEntropy()
        loss.reuse_buffers(reuse)
        return [(loss.forward(floats(rng, 3, 4), rng.integers(0, 4, 3)), loss.probs, loss.backward())
                for _ in range(3)]

    fresh, reused = steps(False), steps(True)
    assert reused[0][2] is reused[2][2] and reused[0][1] is reused[2][1] and fresh[0][2] is not fresh[2][2]
    assert [value for value, _, _ in reused] == [value for value, _, _ in fresh]
    np.testing.assert_array_equal(reused[2][1], fresh[2][1])
    np.testing.assert_array_equal(reused[2][2], fresh[2][2])


def test_embeddings_reusing_buffers_return_the_same_values_in_their_own_array():
    def forwards(reuse):
        rng = np.random.default_rng(3)
        layer = Embeddings([Embedding(7, 3, rng=rng), Embedding(5, 2, rng=rng)], [2, 1])
        layer.reuse_buffers(reuse)
        return [layer.forward(np.concatenate([rng.integers(0, 7, (3, 2)), rng.integers(0, 5, (3, 1))], axis=1))
                for _ in range(3)]

    fresh, reused = forwards(False), forwards(True)
    assert reused[0] is reused[1] is reused[2] and fresh[0] is not fresh[1]
    np.testing.assert_array_equal(reused[2], fresh[2])


def test_reuse_buffers_reaches_every_layer_and_is_undone_by_false():
    rng = np.random.default_rng(0)
    parts = [Linear(6, 8, rng=rng), ReLU(), Embeddings([Embedding(4, 2, rng=rng)], [1]), BiLSTM(3, 2, rng=rng)]
    model = Sequential(parts)

    def layers(layer):
        inner = getattr(layer, "layers", None) or getattr(layer, "tables", None) or getattr(layer, "directions", [])
        return [layer] + [deeper for part in inner for deeper in layers(part)]

    everything = layers(model)
    assert len(everything) == 8 and not any(layer.reusing_buffers for layer in everything)
    model.reuse_buffers()
    assert all(layer.reusing_buffers for layer in everything)
    model.reuse_buffers(False)
    assert not any(layer.reusing_buffers for layer in everything)
    vocabulary = TagVocabulary([Sentence(forms=["The", "cat"], xpos=["DT", "NN"])] * 2)
    tagger = TaggerModel(vocabulary, hidden=(3, 2), rng=rng)
    tagger.reuse_buffers()
    assert all(layer.reusing_buffers for layer in layers(tagger.embeddings) + layers(tagger.bilstm)
               + [tagger.dropout, tagger.output])


# The three tasks' loops (Task.step: forward, loss, backward, Adam's step) on small made-up data

def mnist_task(seed):
    rng = np.random.default_rng(seed)
    data = SimpleNamespace(splits={"train": (rng.integers(0, 256, (40, 784), dtype=np.uint8),
                                             rng.integers(0, 10, 40).astype(np.uint8))}, train_size=40)
    model = build_mlp([784, 30, 20, 10], "mlptop", k=5, rng=rng)
    return MnistTask(data, model, {"net": "mlptop", "sizes": [784, 30, 20, 10]}), 8


def parse_task(seed, sentences):
    vocabulary = Vocabulary(sentences, min_count=1)
    data = ParseData({}, {"train": sentences}, vocabulary)
    model = ParserModel(vocabulary, hidden=20, k=5, k_out=3, dropout=0.5, rng=np.random.default_rng(seed))
    return ParseTask(data, model, {}), 4


def pos_task(seed):
    sentences = [Sentence(forms=["The", "cat", "sat", "down"], xpos=["DT", "NN", "VBD", "RP"]),
                 Sentence(forms=["A", "dog", "ran"], xpos=["DT", "NN", "VBD"])] * 3
    vocabulary = TagVocabulary(sentences)
    model = TaggerModel(vocabulary, hidden=(6, 5), k=2, dropout=0.5, rng=np.random.default_rng(seed))
    return TaggerTask(TaggerData({}, {"train": sentences}, vocabulary), model, {}), 2


@pytest.mark.parametrize("task_name", ["mnist", "parse", "pos"])
def test_the_training_loops_reuse_buffers_with_results_bit_identical_to_fresh_arrays(task_name, tiny_treebank):
    def train(reuse):
        task, batch = {"mnist": lambda: mnist_task(5), "parse": lambda: parse_task(5, tiny_treebank),
                       "pos": lambda: pos_task(5)}[task_name]()
        assert task.model.reusing_buffers and task.loss.reusing_buffers  # the task opts in
        if not reuse:
            task.model.reuse_buffers(False)
            task.loss.reuse_buffers(False)
        task.optimizer = Adam(task.model.params(), lr=0.01)
        order = np.random.default_rng(1).permutation(task.train_size)
        results = [task.train_step(order[first:first + batch]) for first in range(0, task.train_size, batch)]
        linears = [layer for layer in task.product_layers() if isinstance(layer, Linear)]
        assert any(layer._dx is not None for layer in linears) == reuse  # a Linear's dx buffer kept, or none
        return results, [param.value for param in task.model.params()]

    (reused_results, reused_params), (fresh_results, fresh_params) = train(True), train(False)
    assert reused_results == fresh_results
    for reused, fresh in zip(reused_params, fresh_params, strict=True):
        np.testing.assert_array_equal(reused, fresh)
