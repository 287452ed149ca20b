"""Part-of-speech tagging: word features, the vocabulary, and the tagger end to end on a slice of EWT."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tinyprop.cli import main
from tinyprop.tasks.conllu import Sentence, locate_treebank, read_conllu
from tinyprop.tasks.pos import UNKNOWN, TaggerData, TaggerModel, TaggerTask, TagVocabulary, word_shape
from tinyprop.tasks.run import load_model
from tinyprop.layers import SoftmaxCrossEntropy
from tinyprop.optim import Adam


def tagging(sentences, vocabulary, model, meta=None):
    """The tagging task on some splits' sentences, as evaluation makes it."""
    return TaggerTask(TaggerData({}, sentences, vocabulary), model, meta or {})


def saved_tagger(path):
    """(meta, vocabulary, model) of a saved tagger."""
    _, meta, model = load_model(path)
    return meta, TagVocabulary.from_json(meta["vocabulary"]), model


@pytest.fixture(scope="module")
def data_dir(ewt_dir):
    return os.path.dirname(ewt_dir)


@pytest.mark.parametrize("form, shape", [("walked", 0), ("London", 4), ("USA", 8), ("iPhone", 12), ("1990s", 2),
                                         ("well-known", 1), ("F-16", 7), (",", 12), ("(Hello", 4), ("'Tis", 4)])
def test_word_shape(form, shape):
    assert word_shape(form) == shape


def test_vocabulary_keeps_words_and_suffixes_seen_twice_and_marks_unseen_tags():
    train = [Sentence(forms=["The", "cat", "sat"], xpos=["DT", "NN", "VBD"]),
             Sentence(forms=["the", "bat", "sat"], xpos=["DT", "NN", "VBD"])]
    vocabulary = TagVocabulary(train)
    assert set(vocabulary.words) == {"the", "sat"} and set(vocabulary.suffixes) == {"the", "sat"}
    assert vocabulary.tags == ["DT", "NN", "VBD"]
    ids, tags = vocabulary.encode(Sentence(forms=["THE", "dog", "sat"], xpos=["DT", "NN", "UH"]))
    assert ids[:, 0].tolist() == [vocabulary.words["the"], UNKNOWN, vocabulary.words["sat"]]
    assert ids[:, 2].tolist() == [8, 0, 0] and tags.tolist() == [0, 1, -1]


def test_suffixes_are_lower_cased_and_their_ids_start_after_unknown():
    vocabulary = TagVocabulary([Sentence(forms=["running", "JUMPING"], xpos=["VBG", "VBG"])])
    assert vocabulary.suffixes == {"ing": 1} and UNKNOWN == 0
    ids, _ = vocabulary.encode(Sentence(forms=["SINGING", "sat"], xpos=["VBG", "VBD"]))
    assert ids[:, 1].tolist() == [1, UNKNOWN]


def test_tagger_loss_is_the_mean_over_the_words_whose_tag_was_seen_in_training():
    vocabulary = TagVocabulary([Sentence(forms=["The", "cat", "sat"], xpos=["DT", "NN", "VBD"])] * 2)
    model = TaggerModel(vocabulary, hidden=(4, 3), rng=np.random.default_rng(0))
    dev = Sentence(forms=["The", "cat", "sat"], xpos=["DT", "NN", "UH"])  # UH: unseen in training
    ids, tags = vocabulary.encode(dev)
    model.train(False)
    expected = SoftmaxCrossEntropy().forward(model.forward(ids)[:2], tags[:2]) / 2
    loss, _, _ = tagging({"dev": [dev]}, vocabulary, model, {}).evaluate("dev")
    assert loss == pytest.approx(expected, rel=1e-6)


def test_evaluation_tags_sentences_of_one_length_together_and_scores_as_one_at_a_time(monkeypatch):
    monkeypatch.setattr("tinyprop.tasks.pos.EVALUATION_BATCH", 2)
    train = [Sentence(forms=["The", "cat", "sat", "."], xpos=["DT", "NN", "VBD", "."]),
             Sentence(forms=["A", "dog", "ran"], xpos=["DT", "NN", "VBD"])] * 2
    vocabulary = TagVocabulary(train)
    model = TaggerModel(vocabulary, hidden=(6, 5), rng=np.random.default_rng(4))
    model.train(False)
    rng = np.random.default_rng(5)
    words = ["the", "cat", "dog", "sat", "ran", "a", "."]
    tags = ["DT", "NN", "VBD", ".", "UH"]  # UH: unseen in training
    dev = [Sentence(forms=list(rng.choice(words, n)), xpos=list(rng.choice(tags, n))) for n in (3, 5, 3, 1, 3, 5)]
    task = tagging({"dev": dev}, vocabulary, model, {})
    shapes = sorted(ids.shape for ids, _ in task._batches_of_one_length("dev"))
    assert shapes == [(1, 1, 3), (1, 3, 3), (2, 3, 3), (2, 5, 3)]  # at most 2 sentences of one length a batch
    loss = correct = scored = 0
    for ids, gold in task.encoded["dev"]:
        logits = model.forward(ids)
        known = gold >= 0
        loss += SoftmaxCrossEntropy().forward(logits[known], gold[known])
        correct += int((logits.argmax(axis=1) == gold).sum())
        scored += int(known.sum())
    batched_loss, accuracy, _ = task.evaluate("dev")
    assert batched_loss == pytest.approx(loss / scored, rel=1e-6)
    assert accuracy == 100.0 * correct / 20
    ids = np.stack([task.encoded["dev"][i][0] for i in (0, 2, 4)])
    for row, i in enumerate((0, 2, 4)):
        np.testing.assert_allclose(model.forward(ids)[row], model.forward(task.encoded["dev"][i][0]), rtol=1e-5,
                                   atol=1e-6)


def test_tagger_dropout_acts_in_training_only_and_evaluation_turns_it_off():
    sentences = [Sentence(forms=["The", "cat", "sat", "."], xpos=["DT", "NN", "VBD", "."])] * 2
    vocabulary = TagVocabulary(sentences)
    model = TaggerModel(vocabulary, hidden=(6, 4), dropout=0.5, rng=np.random.default_rng(3))
    plain = TaggerModel(vocabulary, hidden=(6, 4), rng=np.random.default_rng(3))
    ids, _ = vocabulary.encode(sentences[0])
    model.train(False)
    np.testing.assert_array_equal(model.forward(ids), plain.forward(ids))
    model.train(True)
    model.forward(ids)
    scale = model.dropout.scale
    dropped = scale == 0
    assert scale.shape == (4, 10) and 0.2 < dropped.mean() < 0.8 and np.all(scale[~dropped] == 2.0)
    dlogits = np.random.default_rng(4).standard_normal((4, 4)).astype(np.float32)
    model.backward(dlogits)  # the output layer's gradient sees the BiLSTM's output as dropout left it
    ahead, behind = model.bilstm.directions
    kept = np.concatenate([ahead.hidden, behind.hidden[::-1]], axis=1) * scale
    np.testing.assert_allclose(model.output.weight.grad, dlogits.T @ kept, rtol=1e-5, atol=1e-7)
    task = tagging({"dev": sentences}, vocabulary, model, {})
    assert task.evaluate("dev")[:2] == tagging({"dev": sentences}, vocabulary, plain, {}).evaluate("dev")[:2]
    assert model.dropout.training  # evaluation turned dropout back on for training
    with pytest.raises(KeyError):
        task.evaluate("test")  # a split it does not have: fails inside the evaluation
    assert model.dropout.training


def train_pos(tmp_path, data_dir, *options):
    out = tmp_path / "run"
    # without dropout, the setting the accuracy floors below were measured in
    result = CliRunner().invoke(main, ["train", "pos", *options, "--max-examples", "500", "--hidden", "32",
                                       "--epochs", "3", "--iter-per-epoch", "1", "--seed", "1", "--dropout", "0",
                                       "--data-dir", data_dir, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, json.load(open(out / "summary.json")), result.output


@pytest.mark.data
@pytest.mark.parametrize("net", [["--net", "lstm"], ["--net", "lstmtop", "--k", "5"]])
def test_tagger_learns_from_a_slice_and_evaluate_reproduces_it(tmp_path, data_dir, net):
    out, summary, output = train_pos(tmp_path, data_dir, *net)
    config = json.load(open(out / "config.json"))["settings"]  # the settings the tagger used, not the MNIST ones
    assert config["hidden"] == 32 and not {"layers", "label_count", "unified", "k_out"} & set(config)
    assert output.splitlines()[-1].startswith(f"best dev acc {summary['best_dev_acc']:.2f} (epoch ")
    assert output.endswith(f", peak memory {summary['peak_memory_mb']:.0f} MB\n")
    # 500 sentences, hidden 32, 3 epochs, seed 1: 81.0 (lstmtop k=5) and 81.4 (lstm) here; with the
    # LSTM's backward returning zeros (only the output layer learns) 19.1
    assert summary["test_acc"] > 76.0 and summary["hidden_sizes"] == [32, 32]
    assert summary["linear_backward_time_s"] > 0
    meta, vocabulary, model = saved_tagger(str(out / "model.npz"))  # the saved model is the best dev's
    dev = read_conllu(locate_treebank(data_dir)["dev"])[:500]
    assert tagging({"dev": dev}, vocabulary, model, meta).evaluate("dev")[1] == summary["best_dev_acc"]
    evaluated = CliRunner().invoke(main, ["evaluate", "--model", str(out / "model.npz"), "--data-dir", data_dir])
    assert evaluated.exit_code == 0, evaluated.output
    # the first 500 sentences of each split, as in training: the run's scores again
    assert f"dev: accuracy {summary['best_dev_acc']:.2f}%" in evaluated.output and "(7621 words)" in evaluated.output
    assert f"test: accuracy {summary['test_acc']:.2f}%" in evaluated.output


@pytest.mark.data
def test_lstmvar_shrinks_each_direction_on_its_own(tmp_path, data_dir):
    out, summary, output = train_pos(tmp_path, data_dir, "--net", "lstmvar", "--k", "2", "--prune", "0.2")
    forward, backward = summary["hidden_sizes"]
    assert summary["original_hidden_sizes"] == [32, 32] and forward < 32 and backward < 32
    assert f"final sizes {forward}(32) {backward}(32)" in output
    assert summary["test_acc"] > 45.0
    evaluated = CliRunner().invoke(main, ["evaluate", "--model", str(out / "model.npz"), "--data-dir", data_dir])
    assert evaluated.exit_code == 0, evaluated.output
    assert "test: accuracy" in evaluated.output
    # the saved model is the one the summary scores, with its sizes (before later prunings)
    meta, vocabulary, model = saved_tagger(str(out / "model.npz"))
    assert model.hidden_sizes() == summary["saved_hidden_sizes"]
    dev = read_conllu(locate_treebank(data_dir)["dev"])[:500]
    assert tagging({"dev": dev}, vocabulary, model, meta).evaluate("dev")[1] == summary["best_dev_acc"]


@pytest.mark.parametrize("options, message", [
    (["--net", "lstmtop", "--k", "40"], "Error: --k: must be smaller than the hidden size 32, got 40"),
    (["--net", "lstm", "--batch", "0"], "Error: --batch: must be at least 1"),
])
def test_bad_settings_stop_before_training(tmp_path, options, message):
    result = CliRunner().invoke(main, ["train", "pos", *options, "--hidden", "32", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "x").exists()


def tagger_setup():
    vocabulary = TagVocabulary([Sentence(forms=["The", "cat", "sat"], xpos=["DT", "NN", "VBD"])] * 2)
    model = TaggerModel(vocabulary, hidden=(4, 3), rng=np.random.default_rng(0))
    return vocabulary, model


def test_a_tagger_step_sums_its_sentences_gradients_into_one_update():
    vocabulary, model = tagger_setup()
    sentences = [Sentence(forms=["The", "cat", "sat"], xpos=["DT", "NN", "VBD"]), Sentence(forms=["sat"], xpos=["VBD"])]
    optimizer = Adam(model.params(), lr=0.01)
    task = tagging({"train": sentences}, vocabulary, model)
    task.optimizer = optimizer
    expected_loss = expected_correct = 0
    for index in (0, 1):  # each sentence's loss and gradients alone, summed
        sentence_loss, sentence_correct = task.accumulate(*task.encoded["train"][index])
        expected_loss += sentence_loss
        expected_correct += sentence_correct
    summed = [param.grad.astype(np.float64) for param in model.params()]
    before = [param.value.astype(np.float64) for param in model.params()]
    model.zero_grad()
    loss, correct, count = task.train_step([0, 1])
    assert count == 4 and correct == expected_correct and loss == pytest.approx(expected_loss, rel=1e-6)
    assert optimizer.steps == 1
    for param, g, w in zip(model.params(), summed, before):  # Adam's first step: m = 0.1 g, v = 0.001 g^2
        step = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9) * 0.1 * g / (np.sqrt(0.001 * g * g) + 1e-8)
        np.testing.assert_allclose(param.value, w - step, rtol=1e-5, atol=1e-6, err_msg=param.name)
        assert not param.grad.any()  # cleared after the update


def test_tagger_accuracy_counts_an_unseen_tag_as_an_error():
    vocabulary, model = tagger_setup()
    model.output.bias.value[vocabulary.tags.index("DT")] = 100.0  # every word is tagged DT
    dev = Sentence(forms=["The", "cat", "sat"], xpos=["DT", "NN", "UH"])  # UH: unseen in training
    _, accuracy, _ = tagging({"dev": [dev]}, vocabulary, model, {}).evaluate("dev")
    assert accuracy == pytest.approx(100.0 / 3)  # 1 of 3 words, not 1 of the 2 whose tag is known
