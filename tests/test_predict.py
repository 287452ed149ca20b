"""tinyprop predict: a saved model's predictions on new input agree with what evaluate scores, bad input ends in
one line naming the file, and `import tinyprop as tp` gives the data readers."""
import gzip
import io
import os

import numpy as np
import pytest
from click.testing import CliRunner

import tinyprop as tp
from tinyprop.cli import main
from tinyprop.tasks.conllu import conllu_text, locate_treebank, read_conllu
from tinyprop.tasks.mnist import MnistSettings, locate_files, read_idx, scale_pixels
from tinyprop.tasks.parse import ParseSettings
from tinyprop.tasks.pos import PosSettings
from tinyprop.tasks.run import evaluate, run

N = 200  # sentences of each split the tagger and the parser train and are scored on
N_IMAGES = 1000


def quiet(message):
    pass


def train(folder, task, settings):
    run(task, settings, str(folder), log=quiet)
    return str(folder)


@pytest.fixture(scope="module")
def data_root(ewt_dir):
    return os.path.dirname(ewt_dir)


@pytest.fixture(scope="module")
def dev(data_root):
    return read_conllu(locate_treebank(data_root)["dev"])[:N]


@pytest.fixture(scope="module")
def tagger(tmp_path_factory, data_root):
    return train(tmp_path_factory.mktemp("pos") / "run", "pos", PosSettings(
        net="lstmtop", k=5, hidden=32, epochs=1, iter_per_epoch=1, max_examples=N, seed=1, data_dir=data_root))


@pytest.fixture(scope="module")
def parser(tmp_path_factory, data_root):
    return train(tmp_path_factory.mktemp("parse") / "run", "parse", ParseSettings(
        net="mlptop", hidden=64, batch=500, epochs=1, iter_per_epoch=1, max_examples=N, seed=1, data_dir=data_root))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, mnist_dir):
    return train(tmp_path_factory.mktemp("mnist") / "run", "mnist", MnistSettings(
        net="mlp", hidden=64, epochs=1, iter_per_epoch=1, max_examples=N_IMAGES, seed=1, data_dir=mnist_dir))


def predict(*args, input=None):
    return CliRunner().invoke(main, ["predict", *args], input=input)


def dev_score(model):
    """evaluate's dev score (accuracy or UAS, %) of a saved model, on the run's first N sentences."""
    return evaluate(model, log=quiet)["dev"][1]


def unparsed(sentences, untagged=False):
    """CoNLL-U of `sentences` with HEAD and DEPREL _ (and XPOS, if `untagged`), as a parser's input."""
    blank = [["_"] * len(sentence) for sentence in sentences]
    return conllu_text(sentences, blank, blank, blank if untagged else None)


@pytest.mark.data
def test_tagged_text_scores_what_evaluate_scores_and_an_empty_line_stays_empty(tmp_path, tagger, dev):
    text = tmp_path / "dev.txt"
    text.write_text("\n" + "".join(" ".join(sentence.forms) + "\n" for sentence in dev))
    result = predict("--model", tagger, str(text))
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert lines[0] == "" and lines[-1] == "" and len(lines) == N + 2
    tagged = [[token.rsplit("/", 1) for token in line.split()] for line in lines[1:-1]]
    assert [[form for form, _ in words] for words in tagged] == [sentence.forms for sentence in dev]
    correct = sum(tag == gold for words, sentence in zip(tagged, dev) for (_, tag), gold in zip(words, sentence.xpos))
    assert 100.0 * correct / sum(map(len, dev)) == dev_score(tagger)
    assert f"tagged {N} sentences" in result.stderr
    piped = predict("--model", os.path.join(tagger, "model.npz"), input=text.read_bytes())  # stdin
    assert piped.exit_code == 0 and piped.stdout == result.stdout


@pytest.mark.data
def test_parsed_conllu_scores_what_evaluate_scores_and_keeps_the_other_columns(tmp_path, parser, dev):
    source, parsed = tmp_path / "dev.conllu", tmp_path / "parsed.conllu"
    source.write_text(unparsed(dev))
    result = predict("--model", parser, str(source), "--output", str(parsed))
    assert result.exit_code == 0 and result.stdout == "", result.output
    assert f"wrote {parsed}" in result.stderr
    out = read_conllu(str(parsed))
    scored = [head == gold for sentence, gold_sentence in zip(out, dev) for head, gold, upos
              in zip(sentence.heads, gold_sentence.heads, gold_sentence.upos) if upos != "PUNCT"]
    assert 100.0 * sum(scored) / len(scored) == dev_score(parser)
    for before, after in zip(source.read_text().splitlines(), parsed.read_text().splitlines()):
        assert before.split("\t")[:6] == after.split("\t")[:6] and before.split("\t")[9:] == after.split("\t")[9:]


@pytest.mark.data
def test_with_a_tagger_the_parser_reads_and_writes_the_taggers_tags(tmp_path, parser, tagger, dev):
    sentences = dev[:20]
    source = tmp_path / "in.conllu"
    source.write_text(unparsed(sentences, untagged=True))  # no XPOS: the tagger gives them
    result = predict("--model", parser, "--tagger", tagger, str(source))
    assert result.exit_code == 0, result.output
    tagged = predict("--model", tagger, input="".join(" ".join(s.forms) + "\n" for s in sentences))
    tags = [[token.rsplit("/", 1)[1] for token in line.split()] for line in tagged.stdout.splitlines()]
    assert [sentence.xpos for sentence in read_conllu("<stdout>", stream=io.BytesIO(result.stdout_bytes))] == tags


@pytest.mark.data
def test_mnist_predictions_on_the_test_images_score_evaluates_test_accuracy(tmp_path, classifier, mnist_dir):
    paths = locate_files(mnist_dir)
    images, labels = read_idx(paths["test_images"], 3)[:N_IMAGES], read_idx(paths["test_labels"], 1)[:N_IMAGES]
    np.save(tmp_path / "test.npy", images)
    result = predict("--model", classifier, str(tmp_path / "test.npy"))
    assert result.exit_code == 0, result.output
    predicted = np.array(result.stdout.split(), dtype=int)
    assert 100.0 * (predicted == labels).sum() / N_IMAGES == evaluate(classifier, log=quiet)["test"][1]
    # the same images flat and scaled to 0-1 as training scales them, and as a gzip IDX file through stdin
    np.save(tmp_path / "flat.npy", scale_pixels(images.reshape(N_IMAGES, 784)))
    header = (0x803).to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in images.shape)
    for args, input in [([str(tmp_path / "flat.npy")], None), (["-"], gzip.compress(header + images.tobytes()))]:
        again = predict("--model", classifier, *args, input=input)
        assert again.exit_code == 0 and again.stdout == result.stdout, again.output


@pytest.mark.data
def test_words_and_tags_a_model_never_saw_take_the_unknown_fallback(tagger, parser):
    tagged = predict("--model", tagger, input="The zorblax glimfed .\n")
    assert tagged.exit_code == 0, tagged.output
    assert [token.rsplit("/", 1)[0] for token in tagged.stdout.split()] == ["The", "zorblax", "glimfed", "."]
    assert "4 words (2 not in the tagger's vocabulary" in tagged.stderr
    word = "{}\t{}\t_\t_\t{}\t_\t_\t_\t_\t_\n"
    parsed = predict("--model", parser, input=word.format(1, "zorblax", "NN") + word.format(2, "glimfed", "FOO"))
    assert parsed.exit_code == 0, parsed.output
    assert "2 words (2 not in the parser's vocabulary, 1 tags unknown to it)" in parsed.stderr
    assert sorted(line.split("\t")[6] for line in parsed.stdout.splitlines() if line) == ["0", "1"]


WORD = "1\tDogs\tdog\tNOUN\tNNS\t_\t_\t_\t_\t_\n"


@pytest.mark.data
@pytest.mark.parametrize("model, name, content, message", [
    ("tagger", "in.conllu", WORD, "in.conllu, line 1: a CoNLL-U word line; the tagger reads plain text"),
    ("tagger", "in.gz", gzip.compress(b"Dogs bark"), "in.gz: not UTF-8 text (invalid start byte at byte 1); the "
                                                     "tagger reads plain text"),
    ("parser", "in.conllu", "# a comment\n" + WORD + "2\tbark\t_\n", "in.conllu, line 3: 3 tab-separated fields, "
                                                                      "CoNLL-U has 10"),
    ("parser", "in.conllu", WORD + WORD.replace("1\tDogs", "2\tbark").replace("NNS", "_"),
     "in.conllu: sentence 1, word 2 ('bark') has no XPOS tag (_); the parser reads the tags it was trained on: give "
     "them, or tag the words first with --tagger DIR"),
    ("parser", "in.conllu", "1 Dogs dog NOUN NNS _ 0 root _ _\n", "in.conllu, line 1: 1 tab-separated fields, "
                                                                    "CoNLL-U has 10; its 10 columns are separated "
                                                                    "by spaces: CoNLL-U separates them by tabs"),
    ("parser", "in.txt", "Dogs bark\n", "in.txt, line 1: 1 tab-separated fields, CoNLL-U has 10; this looks like "
                                        "plain text: the parser reads CoNLL-U, one word a line (its tags may come "
                                        "from a tagger: --tagger DIR)"),
    ("classifier", "in.npy", np.zeros((2, 20, 28), np.uint8), "in.npy: an array of shape (2, 20, 28); mnist models "
                                                              "classify an IDX image file"),
    ("classifier", "in.npy", np.full((2, 784), 255.0), "in.npy: float pixels from 255 to 255; training scales pixels "
                                                       "to 0-1 (uint8 / 255): divide by 255"),
    ("classifier", "in.npy", np.full((2, 28, 28), -1), "in.npy: whole-number pixels from -1 to -1; they must lie "
                                                       "in 0-255"),
    ("classifier", "in.txt", "Dogs bark at the moon\n",
     "in.txt: magic number 0x446f6773, expected 0x00000803 (unsigned bytes, 3 dimensions); is this the right MNIST "
     "file? (mnist models classify an IDX image file"),
])
def test_bad_input_ends_in_one_line_naming_the_file(request, tmp_path, monkeypatch, model, name, content, message):
    monkeypatch.chdir(tmp_path)
    if isinstance(content, np.ndarray):
        np.save(name, content)
    else:
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    result = predict("--model", request.getfixturevalue(model), name)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.data
def test_a_model_of_the_wrong_kind_or_a_missing_one_is_refused(tmp_path, tagger, parser, classifier):
    cases = [
        (["--model", parser, "--tagger", parser], f"--tagger {parser}: a parse model, not a tagger; give a model "
                                                  "of tinyprop train pos"),
        (["--model", parser, "--tagger", classifier], f"--tagger {classifier}: a mnist model, not a tagger"),
        (["--model", tagger, "--tagger", tagger], f"--tagger: only parser models take a tagger; --model {tagger} is "
                                                  "a pos model"),
        (["--model", str(tmp_path)], f"--model {tmp_path}: the folder holds no model.npz; give a run's folder"),
        (["--model", str(tmp_path / "none")], f"Path '{tmp_path / 'none'}' does not exist"),
        (["--model", os.path.join(tagger, "config.json")], "config.json: not a tinyprop model file"),
        ([tagger], f"'{tagger}' is a folder, not a file: a model or its run's folder goes to --model"),
    ]
    for args, message in cases:
        result = predict(*args, input="Dogs bark\n")
        assert result.exit_code != 0 and message in result.stderr, (args, result.output)


def test_import_tinyprop_as_tp_gives_the_data_readers():
    from tinyprop.tasks import conllu, mnist
    assert tp.read_idx is mnist.read_idx and tp.read_conllu is conllu.read_conllu
    assert tp.write_conllu is conllu.write_conllu and tp.Sentence is conllu.Sentence
    assert "uint8 array" in tp.read_idx.__doc__ and "a list of `Sentence`" in tp.read_conllu.__doc__
    assert {"read_idx", "read_conllu"} <= set(dir(tp))


@pytest.mark.data
def test_read_idx_takes_the_dimensions_from_the_header(mnist_dir):
    paths = locate_files(mnist_dir)
    assert read_idx(paths["test_images"]).shape == (10000, 28, 28)
    assert np.array_equal(read_idx(paths["test_labels"]), read_idx(paths["test_labels"], 1))
