"""Dependency parsing: the CoNLL-U reader, the arc-standard oracle, the features, Cube and Embedding."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tinyprop.cli import main
from tinyprop.tasks.arcstandard import NONE, NULL, ROOT, SHIFT, Configuration, feature_tokens, features, oracle_transitions
from tinyprop.tasks.conllu import Sentence, locate_treebank, read_conllu, read_splits, write_conllu
from tinyprop.tasks.files import DataError
from tinyprop.tasks.parse import ParserModel, Vocabulary, legal_mask, oracle_examples, parse
from tinyprop.gradcheck import grad_check, numerical_gradient
from tinyprop.layers import Cube, Embedding, Embeddings

WORD = "{id}\t{form}\t_\t{upos}\tX\t_\t{head}\t{rel}\t_\t_"


def test_reader_skips_multiword_tokens_and_empty_nodes(tmp_path):
    path = tmp_path / "a.conllu"
    path.write_text("# text = don't go\n"
                    "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
                    + WORD.format(id=1, form="do", upos="AUX", head=3, rel="aux") + "\n"
                    + WORD.format(id=2, form="n't", upos="PART", head=3, rel="advmod") + "\n"
                    + WORD.format(id=3, form="go", upos="VERB", head=0, rel="root") + "\n"
                    "3.1\tgone\t_\t_\t_\t_\t_\t_\t_\t_\n\n"
                    "0.1\tsaid\t_\t_\t_\t_\t_\t_\t_\t_\n"  # an empty node before the first word
                    + WORD.format(id=1, form="Hi", upos="INTJ", head=0, rel="root") + "\n")
    first, second = read_conllu(str(path))
    assert first.forms == ["do", "n't", "go"] and first.heads == [3, 3, 0] and first.deprels[2] == "root"
    assert second.forms == ["Hi"]
    path.write_bytes("\ufeff".encode() + path.read_bytes()[path.read_bytes().index(b"1\tdo"):])  # a byte order mark
    assert [sentence.forms for sentence in read_conllu(str(path))] == [["do", "n't", "go"], ["Hi"]]


@pytest.mark.parametrize("line,message", [
    ("1\tword\t_\tX\tX\t_\t0\troot\t_", r"line 2: 9 tab-separated fields, CoNLL-U has 10"),
    (WORD.format(id=3, form="w", upos="X", head=0, rel="root"), r"line 2: word ID '3', expected 1"),
    (WORD.format(id=1, form="w", upos="X", head="x", rel="root"), r"line 2: HEAD 'x' is not a word number"),
    (WORD.format(id=1, form="w", upos="X", head=4, rel="root"), r"word 1 has head 4, but the sentence has 1 words"),
    (WORD.format(id=1, form="w", upos="X", head=1, rel="root"), r"line 2: word 1 is its own HEAD"),
])
def test_reader_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.conllu"
    path.write_text("# a comment\n" + line + "\n\n")
    with pytest.raises(DataError, match=message) as error:
        read_conllu(str(path))
    assert "bad.conllu" in str(error.value)


def test_heads_that_do_not_form_a_tree_are_refused(tmp_path):
    path = tmp_path / "cycle.conllu"
    heads = [0, 4, 2, 3]  # words 2 -> 4 -> 3 -> 2 never reach the root
    path.write_text("\n".join(WORD.format(id=word, form="w", upos="X", head=head, rel="dep")
                              for word, head in enumerate(heads, 1)) + "\n\n")
    with pytest.raises(DataError, match=r"cycle.conllu, sentence ending before line 5: the heads of words 2, 3, 4 "
                                        r"form a cycle"):
        read_conllu(str(path))


@pytest.mark.data
def test_oracle_reproduces_every_projective_training_tree(ewt_dir):
    sentences = read_conllu(os.path.join(ewt_dir, "en_ewt-ud-train.conllu"))
    labels = sorted({label for sentence in sentences for label in sentence.deprels})
    label_ids = {label: i for i, label in enumerate(labels)}
    reproduced = skipped = 0
    for sentence in sentences:
        transitions = oracle_transitions(sentence.heads, [label_ids[r] for r in sentence.deprels], len(labels))
        if transitions is None:
            skipped += 1
            continue
        config = Configuration(len(sentence))
        for transition in transitions:
            config.apply(transition, len(labels))
        assert config.terminal()
        assert config.heads[1:] == sentence.heads
        assert [labels[label] for label in config.labels[1:]] == sentence.deprels
        reproduced += 1
    # 280 sentences are non-projective (data README); 8 more cross only the arc from the root,
    # which arc-standard with the root at the bottom of the stack cannot build either
    assert (reproduced, skipped) == (12544 - 288, 288)


def test_features_of_a_hand_built_configuration():
    # sentence: 1 The 2 cat 3 sat 4 on 5 mats; after SHIFT SHIFT LEFT(det) SHIFT LEFT(nsubj) SHIFT SHIFT
    config = Configuration(5)
    for transition in (SHIFT, SHIFT, 1 + 0, SHIFT, 1 + 1, SHIFT, SHIFT):
        config.apply(transition, n_labels=3)
    assert config.stack == [0, 3, 4, 5] and config.heads[1:3] == [2, 3] and config.left[3] == [2]
    tokens = feature_tokens(config)
    assert tokens[:6] == [5, 4, 3, NONE, NONE, NONE]
    assert tokens[6:14] == [NONE] * 8  # s0 = 5 and s1 = 4 have no dependents yet
    config.apply(1 + 3 + 2, n_labels=3)  # RIGHT-ARC(label 2): 4 -> 5
    config.apply(1 + 2, n_labels=3)  # LEFT-ARC(label 2): s1 = 3 becomes a dependent of s0 = 4
    # stack [0, 4]; 4 has left dependent 3 (which has left dependent 2, which has 1) and right dependent 5
    tokens = feature_tokens(config)
    assert tokens[:6] == [4, 0, NONE, NONE, NONE, NONE]
    assert tokens[6:10] == [3, 5, NONE, NONE]  # lc1, rc1, lc2, rc2 of s0 = 4
    assert tokens[10:14] == [NONE, NONE, NONE, NONE]  # the root has no dependents yet
    assert tokens[14:18] == [2, NONE, NONE, NONE]  # lc1(lc1(s0)) = 2; rc1(rc1(s0)) none
    words = [NULL, 10, 11, 12, 13, 14]
    tags = [NULL, 20, 21, 22, 23, 24]
    ids = features(config, words, tags)
    assert len(ids) == 48
    assert ids[:6] == [13, ROOT, NULL, NULL, NULL, NULL]
    assert ids[18:24] == [23, ROOT, NULL, NULL, NULL, NULL]
    assert ids[36:38] == [config.labels[3] + 1, config.labels[5] + 1] and ids[44] == config.labels[2] + 1


def test_features_with_words_left_in_the_buffer_and_two_right_dependents():
    config = Configuration(5)
    for transition in (SHIFT, SHIFT):
        config.apply(transition, n_labels=1)
    assert feature_tokens(config)[:6] == [2, 1, 0, 3, 4, 5]  # s0 s1 s2, then b0 b1 b2
    config = Configuration(3)
    for transition in (SHIFT, SHIFT, 2, SHIFT, 2):  # 2: RIGHT-ARC with the one label
        config.apply(transition, n_labels=1)
    assert config.stack == [0, 1] and config.right[1] == [2, 3]
    assert feature_tokens(config)[6:10] == [NONE, 3, NONE, 2]  # lc1, rc1, lc2, rc2 of s0 = 1


def test_oracle_examples_are_the_oracle_replayed_and_skip_the_non_projective(tmp_path):
    path = tmp_path / "two.conllu"
    projective = [("The", "DET", 2, "det"), ("cat", "NOUN", 3, "nsubj"), ("sat", "VERB", 0, "root")]
    crossing = [("a", "X", 3, "dep"), ("b", "X", 4, "dep"), ("c", "X", 0, "root"), ("d", "X", 3, "dep")]
    path.write_text("\n\n".join("\n".join(WORD.format(id=i, form=form, upos=upos, head=head, rel=rel)
                                            for i, (form, upos, head, rel) in enumerate(words, 1))
                                  for words in (projective, crossing)) + "\n\n")
    sentences = read_conllu(str(path))
    vocabulary = Vocabulary(sentences, min_count=1)
    feats, targets, skipped = oracle_examples(sentences, vocabulary)
    assert skipped == 1  # 1 -> 3 crosses 4 -> 2
    labels = [vocabulary.labels.index(rel) for rel in sentences[0].deprels]
    expected = oracle_transitions(sentences[0].heads, labels, len(vocabulary.labels))
    assert targets.tolist() == expected and len(expected) == 6  # 2n transitions
    config, (words, tags) = Configuration(3), vocabulary.encode(sentences[0])
    for row, transition in zip(feats, expected):
        assert row.tolist() == features(config, words, tags)
        config.apply(transition, len(vocabulary.labels))
    assert feats.dtype == np.int32 and feats.shape == (6, 48)


def test_cube_gradient(rng):
    assert grad_check(Cube(), rng.standard_normal((3, 4)))["x"] < 1e-7


def test_embedding_gradient_touches_only_the_rows_used(rng):
    layer = Embedding(7, 3, scale=1.0, rng=rng, dtype=np.float64)
    ids = np.array([[1, 4, 1], [6, 1, 0]])
    weights = rng.standard_normal((2, 9))
    layer.forward(ids)
    layer.backward(weights)
    numeric = numerical_gradient(lambda: float((layer.forward(ids) * weights).sum()), layer.weight.value)
    np.testing.assert_allclose(layer.weight.grad, numeric, atol=1e-7)
    assert np.flatnonzero(layer.weight.rows_with_grad).tolist() == [0, 1, 4, 6]
    for ids in ([[7]], [[1, -1]]):
        with pytest.raises(ValueError, match=r"integer ids \(batch, n\) in \[0, 7\)"):
            layer.forward(np.array(ids))


def test_embeddings_side_by_side_give_each_table_its_columns_and_gradient(rng):
    words, tags = Embedding(7, 3, rng=rng, dtype=np.float64), Embedding(4, 2, rng=rng, dtype=np.float64)
    layer = Embeddings([words, tags], [2, 1])
    ids = np.array([[1, 6, 3], [0, 1, 2]])
    out = layer.forward(ids)
    np.testing.assert_array_equal(out, np.concatenate([words.weight.value[ids[:, :2]].reshape(2, 6),
                                                       tags.weight.value[ids[:, 2:]].reshape(2, 2)], axis=1))
    weights = rng.standard_normal((2, 8))
    layer.backward(weights)
    for table in (words, tags):
        numeric = numerical_gradient(lambda: float((layer.forward(ids) * weights).sum()), table.weight.value)
        np.testing.assert_allclose(table.weight.grad, numeric, atol=1e-7)
    with pytest.raises(ValueError, match=r"expected ids of shape \(batch, 3\), got shape \(2, 2\)"):
        layer.forward(ids[:, :2])
    with pytest.raises(ValueError, match=r"Embeddings: gradient of shape \(2, 9\) does not match the output's "
                                         r"\(2, 8\)"):
        layer.backward(np.zeros((2, 9)))
    with pytest.raises(ValueError, match="one width for each of one or more tables"):
        Embeddings([], [])
    with pytest.raises(ValueError, match="Embeddings: the tables must have one dtype, got float32, float64"):
        Embeddings([words, Embedding(4, 2)], [2, 1])
    with pytest.raises(ValueError, match=r"integer ids \(batch, n\) in \[0, 4\)"):
        layer.forward(np.array([[1, 6, 4]]))
    tags.weight.value = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"Embeddings: the tables' widths changed from \[3, 2\] since"):
        layer.forward(ids)


def test_parser_dropout_acts_in_training_only(rng):
    vocabulary = Vocabulary.from_json(dict(words={"a": ROOT + 1, "b": ROOT + 2}, tags={"X": ROOT + 1},
                                           labels=["nsubj", "root"]))
    model = ParserModel(vocabulary, hidden=40, dropout=0.5, rng=np.random.default_rng(3))
    plain = ParserModel(vocabulary, hidden=40, rng=np.random.default_rng(3))
    feats = rng.integers(0, 3, (6, 48)).astype(np.int32)  # ids every vocabulary has
    model.train(False)
    np.testing.assert_array_equal(model.forward(feats), plain.forward(feats))
    model.train(True)
    model.forward(feats)
    dropped = model.dropout.scale == 0
    assert 0.3 < dropped.mean() < 0.7 and np.all(model.dropout.scale[~dropped] == 2.0)
    dlogits = rng.standard_normal((6, 5)).astype(np.float32)
    model.backward(dlogits)  # the output layer's gradient sees the hidden layer as dropout left it
    kept_hidden = model.cube.forward(model.hidden_layer.forward(model.hidden_layer.x)) * model.dropout.scale
    np.testing.assert_allclose(model.output.weight.grad, dlogits.T @ kept_hidden, rtol=1e-5, atol=1e-6)


def test_parser_vocabulary_ids_follow_the_reserved_ones_and_keep_words_seen_twice():
    vocabulary = Vocabulary([Sentence(forms=["The", "cat"], xpos=["DT", "NN"], deprels=["det", "root"]),
                             Sentence(forms=["the", "dog"], xpos=["DT", "NN"], deprels=["det", "root"])])
    assert vocabulary.words == {"the": ROOT + 1} and vocabulary.tags == {"DT": ROOT + 1, "NN": ROOT + 2}
    assert vocabulary.labels == ["det", "root"]


def test_legal_transitions():
    config = Configuration(2)
    assert legal_mask(config, 3).tolist() == [True] + [False] * 6  # only the root on the stack: SHIFT
    for transition in (SHIFT, SHIFT):
        config.apply(transition, n_labels=3)
    assert legal_mask(config, 3).tolist() == [False] + [True] * 6  # buffer empty: every arc, any label


def test_written_trees_replace_heads_relations_and_clear_enhanced_dependencies(tmp_path):
    source = tmp_path / "in.conllu"
    source.write_text("# text = Go now\n1\tGo\t_\tVERB\tVB\t_\t0\troot\t0:root\t_\n"
                      "2\tnow\t_\tADV\tRB\t_\t1\tadvmod\t1:advmod\t_\n\n")
    out = tmp_path / "out.conllu"
    write_conllu(str(out), read_conllu(str(source)), [[2, 0]], [["dep", "root"]])
    lines = out.read_text().splitlines()
    assert lines[0] == "# text = Go now"
    assert [tuple(line.split("\t")[6:9]) for line in lines[1:3]] == [("2", "dep", "_"), ("0", "root", "_")]


@pytest.mark.data
def test_parse_end_to_end_through_the_command_line(tmp_path, ewt_dir):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "parse", "--net", "mlptop", "--k", "20", "--max-examples", "400", "--batch", "500", "--epochs", "3",
        "--iter-per-epoch", "1", "--seed", "1", "--data-dir", os.path.dirname(ewt_dir), "--out", str(out)],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.load(open(out / "summary.json"))
    assert summary["k"] == 20 and summary["k_out"] == 20 and summary["skipped_non_projective"] > 0
    config = json.load(open(out / "config.json"))["settings"]  # as given: k_out follows k (the summary says 20)
    assert config["k_out"] is None and not {"layers", "label_count", "unified"} & set(config)
    assert result.output.endswith(f", peak memory {summary['peak_memory_mb']:.0f} MB\n")
    # 400 sentences, 3 epochs, seed 1, dropout 0.5: 70.5 UAS here; attaching every word to the next one scores 31.8
    assert summary["test_acc"] > 62.0 and summary["test_las"] > 55.0
    assert f"test uas {summary['test_acc']:.2f} las {summary['test_las']:.2f} *" in result.output
    parsed = tmp_path / "parsed.conllu"
    evaluated = CliRunner().invoke(main, ["evaluate", "--model", str(out / "model.npz"), "--data-dir",
                                          os.path.dirname(ewt_dir), "--output", str(parsed)])
    assert evaluated.exit_code == 0, evaluated.output
    sentences = read_conllu(str(parsed))
    assert len(sentences) == 400  # the first 400 of the test set, as in training: the run's scores again
    assert f"test: UAS {summary['test_acc']:.2f}%  LAS {summary['test_las']:.2f}%" in evaluated.output
    for sentence in sentences:  # one head per word, in range, exactly one word on the root
        assert all(0 <= head <= len(sentence) for head in sentence.heads) and sentence.heads.count(0) == 1
    # the file written is what was scored: its heads and labels against the gold test set give the UAS and
    # LAS printed (punctuation excluded)
    gold = read_conllu(locate_treebank(os.path.dirname(ewt_dir))["test"])
    scored = [(p_head == g_head, p_head == g_head and p_label == g_label)
              for p, g in zip(sentences, gold) for p_head, g_head, p_label, g_label, upos
              in zip(p.heads, g.heads, p.deprels, g.deprels, g.upos) if upos != "PUNCT"]
    uas, las = (100.0 * sum(column) / len(scored) for column in zip(*scored))
    assert f"test: UAS {uas:.2f}%  LAS {las:.2f}%" in evaluated.output
    whole = CliRunner().invoke(main, ["evaluate", "--model", str(out / "model.npz"), "--all-examples"])
    assert whole.exit_code == 0, whole.output
    assert "test: UAS " in whole.output and f"({len(gold)} sentences, punctuation excluded)" in whole.output
    assert "as in training" not in whole.output


def test_reader_ends_a_sentence_at_a_whitespace_line_and_refuses_extra_fields(tmp_path):
    path = tmp_path / "a.conllu"
    path.write_text(WORD.format(id=1, form="Hi", upos="INTJ", xpos="UH", head=0, rel="root") + "\n \n"
                    + WORD.format(id=1, form="Yo", upos="INTJ", xpos="UH", head=0, rel="root") + "\n")
    assert [s.forms for s in read_conllu(str(path))] == [["Hi"], ["Yo"]]
    path.write_text(WORD.format(id=1, form="Hi", upos="INTJ", xpos="UH", head=0, rel="root") + "\textra\n")
    with pytest.raises(DataError, match="line 1: 11 tab-separated fields, CoNLL-U has 10"):
        read_conllu(str(path))


def test_read_splits_reads_the_splits_asked_for_and_slices_each(tmp_path, tiny_treebank):
    paths = {split: str(tmp_path / f"en_ewt-ud-{split}.conllu") for split in ("train", "dev", "test")}
    (tmp_path / "en_ewt-ud-train.conllu").write_text("not conll-u")  # not read when not asked for
    splits = read_splits(paths, 1, ("dev", "test"))
    assert list(splits) == ["dev", "test"] and [len(s) for s in splits.values()] == [1, 1]


def test_greedy_parsing_takes_only_legal_transitions(tiny_treebank):
    sentences = tiny_treebank
    vocabulary = Vocabulary(sentences)
    n_labels = len(vocabulary.labels)

    class PrefersLeftArcs:  # LEFT-ARC(label 0) scores highest, then RIGHT-ARCs, SHIFT lowest
        def forward(self, feats):
            scores = np.zeros((len(feats), 1 + 2 * n_labels))
            scores[:, 1] = 2.0
            scores[:, 1 + n_labels:] = 1.0
            return scores
    heads, labels = parse(PrefersLeftArcs(), sentences, vocabulary)
    assert heads == [[2, 3, 0], [2, 3, 0]] and labels[0] == [0, 0, 0]


@pytest.mark.parametrize("word_id,head,message", [
    ("1", "\u0661", r"line 2: HEAD '\u0661' is not a word number \(ASCII digits"),  # Arabic-Indic one: int() reads 1
    ("1", "\u00b2", r"line 2: HEAD '\u00b2' is not a word number"),  # superscript two: isdigit(), but int() fails
    ("1", "+2", r"line 2: HEAD '\+2' is not a word number"),
    ("1", " 2", r"line 2: HEAD ' 2' is not a word number"),
    ("1", "0_0", r"line 2: HEAD '0_0' is not a word number"),
    ("\u0663", "0", r"line 2: word ID '\u0663', expected 1"),
    ("1-\u0662", "_", r"line 2: word ID '1-\u0662', expected 1"),  # a range or an empty node is ASCII digits too
    ("\u0661.1", "_", r"line 2: word ID '\u0661.1', expected 1"),
])
def test_numeric_fields_are_ascii_digits(tmp_path, word_id, head, message):
    path = tmp_path / "bad.conllu"
    path.write_text("# a comment\n" + WORD.format(id=word_id, form="w", upos="X", head=head, rel="root") + "\n\n",
                    encoding="utf-8")
    with pytest.raises(DataError, match=message) as error:
        read_conllu(str(path))
    assert "bad.conllu" in str(error.value)
