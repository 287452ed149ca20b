"""Part-of-speech tagging with a bidirectional LSTM and meProp on every gate: data, model, evaluation.

The papers' second task (TKDE 2018, Section 3 and Table 2: one-layer BiLSTM, 500 units per
direction, one sentence per mini-batch, Adam; meProp k=10; per-word accuracy). Data: UD
English EWT, whose XPOS column holds the Penn Treebank tags of the papers' WSJ task.

Each word is given to the LSTMs as three embeddings side by side (documented choices; the
papers do not say theirs):
- its lower-cased form (100 dimensions); forms seen fewer than twice in training share the
  UNKNOWN id, so that this id is trained, on rare words, for the unseen words of dev and test;
- its last three letters, lower-cased (30 dimensions; suffixes seen fewer than twice: UNKNOWN),
  which tell much of an unknown word's tag (-ing, -ed, -ly);
- its shape (10 dimensions): capitalisation (lower, Capitalised, UPPER, other) x has a
  digit x has a hyphen, 16 ids; with the first form of a sentence lower-cased like all others,
  this keeps what capitals say about proper nouns.
The output layer, 1000 -> tags, stays dense, as in the papers (it is small).
"""
import collections
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tinyprop.layers import BiLSTM, Dropout, Embedding, Embeddings, Layer, Linear
from tinyprop.mesimp import ColumnBlock
from tinyprop.tasks.conllu import (SKIPPED_ID, WORD_ID, Sentence, TreebankSettings, TreebankTask,
                                   check_saved_vocabulary, read_text)
from tinyprop.tasks.files import DataError, training_data
from tinyprop.tasks.settings import Settings, retold
from tinyprop.tasks.training import Task

UNKNOWN = 0
WORD_DIM, SUFFIX_DIM, SHAPE_DIM = 100, 30, 10
SUFFIX_LENGTH = 3
N_SHAPES = 16
EVALUATION_BATCH = 64  # sentences of one length tagged together (a batch of 32 halves a word's time)


def word_shape(form):
    """0..15: capitalisation class (0 lower, 1 Capitalised, 2 UPPER, 3 other) * 4 + 2 * digit + hyphen."""
    letters = [c for c in form if c.isalpha()]
    if letters and all(c.islower() for c in letters):
        case = 0
    elif letters and letters[0].isupper() and all(c.islower() for c in letters[1:]):
        case = 1
    elif letters and all(c.isupper() for c in letters):
        case = 2
    else:
        case = 3
    return case * 4 + 2 * any(c.isdigit() for c in form) + ("-" in form)


class TagVocabulary:
    """Ids of words and suffixes (seen at least twice in training; 0 is UNKNOWN) and of XPOS tags."""

    def __init__(self, sentences, min_count=2):
        words = collections.Counter(form.lower() for sentence in sentences for form in sentence.forms)
        suffixes = collections.Counter(form.lower()[-SUFFIX_LENGTH:] for sentence in sentences
                                       for form in sentence.forms)
        self.words = {word: i for i, word in enumerate(sorted(w for w, n in words.items() if n >= min_count), 1)}
        self.suffixes = {s: i for i, s in enumerate(sorted(s for s, n in suffixes.items() if n >= min_count), 1)}
        self.tags = sorted({tag for sentence in sentences for tag in sentence.xpos})

    def encode(self, sentence):
        """(ids (words, 3) int32: word, suffix, shape; tag ids (words,) intp, -1 for a tag unseen in training)."""
        ids = np.array([(self.words.get(form.lower(), UNKNOWN),
                         self.suffixes.get(form.lower()[-SUFFIX_LENGTH:], UNKNOWN),
                         word_shape(form)) for form in sentence.forms], dtype=np.int32)
        tag_ids = {tag: i for i, tag in enumerate(self.tags)}
        return ids.reshape(len(sentence), 3), np.array([tag_ids.get(tag, -1) for tag in sentence.xpos], dtype=np.intp)

    def to_json(self):
        return dict(words=self.words, suffixes=self.suffixes, tags=self.tags)

    @classmethod
    def from_json(cls, data):
        vocabulary = cls.__new__(cls)
        vocabulary.words, vocabulary.suffixes, vocabulary.tags = data["words"], data["suffixes"], data["tags"]
        return vocabulary


def batches_of_one_length(encoded):
    """(positions, ids (sentences, words, 3), tags (sentences, words)) of encoded sentences [(ids, tags)], grouped
    by length, up to EVALUATION_BATCH a batch; positions: the sentences' places in `encoded`."""
    by_length = collections.defaultdict(list)
    for position, (ids, _) in enumerate(encoded):
        by_length[ids.shape[0]].append(position)
    return [(chunk, np.stack([encoded[i][0] for i in chunk]), np.stack([encoded[i][1] for i in chunk]))
            for group in by_length.values()
            for chunk in (group[first:first + EVALUATION_BATCH] for first in range(0, len(group), EVALUATION_BATCH))]


class TaggerModel(Layer):
    """Embeddings (word, suffix, shape) -> BiLSTM (hidden per direction, meProp k) [-> Dropout] -> Linear
    -> tag scores.

    forward(ids (words, 3)) -> logits (words, tags), one sentence at a time in training; evaluation
    also passes sentences of one length together, ids (sentences, words, 3). Dropout on the BiLSTM's
    output is the papers' Table 4 setting for tagging (0.5); their Table 2 has none. The class
    defaults to none; `tinyprop train pos` to 0.5.
    """

    def __init__(self, vocabulary, hidden=(500, 500), k=None, dropout=0.0, rng=None):
        """hidden: units of both LSTMs, or of the forward and the backward one (they differ once meSimp
        has run)."""
        rng = rng if rng is not None else np.random.default_rng()
        self.embeddings = Embeddings(
            [Embedding(1 + len(vocabulary.words), WORD_DIM, scale=0.1, rng=rng, name="words"),
             Embedding(1 + len(vocabulary.suffixes), SUFFIX_DIM, scale=0.1, rng=rng, name="suffixes"),
             Embedding(N_SHAPES, SHAPE_DIM, scale=0.1, rng=rng, name="shapes")], [1, 1, 1])
        self.bilstm = BiLSTM(WORD_DIM + SUFFIX_DIM + SHAPE_DIM, hidden, k=k, rng=rng)
        self.dropout = Dropout(dropout, rng)
        self.output = Linear(sum(self.hidden_sizes()), len(vocabulary.tags), rng=rng, name="output")

    def children(self):
        return [self.embeddings, self.bilstm, self.dropout, self.output]

    def hidden_sizes(self):
        return [lstm.n_out for lstm in self.bilstm.directions]

    def forward(self, ids):
        """ids (words, 3) of one sentence -> logits (words, tags); or, to evaluate, ids (sentences, words, 3)
        of sentences of one length -> logits (sentences, words, tags), their LSTM steps run as one batch."""
        embedded = self.embeddings.forward(ids.reshape(-1, ids.shape[-1]))
        if ids.ndim == 2:
            hidden = self.bilstm.forward(embedded)
        else:  # the LSTMs take (steps, batch, in): here (words, sentences, 140) -> (words, sentences, 2H)
            sentences, words = ids.shape[:2]
            hidden = self.bilstm.forward(embedded.reshape(sentences, words, -1).transpose(1, 0, 2))
            hidden = hidden.transpose(1, 0, 2).reshape(sentences * words, self.output.n_in)
        logits = self.output.forward(self.dropout.forward(hidden))
        return logits.reshape(ids.shape[:-1] + (self.output.n_out,))

    def backward(self, dlogits, need_dx=False):
        """Gradients of every parameter; the input (ids) has none, so need_dx is ignored."""
        self.embeddings.backward(self.bilstm.backward(self.dropout.backward(self.output.backward(dlogits))))


LSTM_NETS = ("lstm", "lstmtop", "lstmvar")


@dataclass
class PosSettings(TreebankSettings):
    """The papers' tagging setting (TKDE 2018, Section 3.1 and Table 2): one sentence per mini-batch, Adam,
    meProp k 10; their best iterations were 3 (dense) and 4 (meProp). meSimp: prune 0.08 (Table 10) with
    meSimp in every epoch. Dropout 0.5 on the BiLSTM's output is the papers' Table 4 tagging setting (their
    Table 2 has none): on EWT, 4 times smaller than WSJ, meProp at k 10 ends 0.43 below dense without it,
    0.07 with it (docs/pos.md)."""

    net: str = retold(Settings, "net", "lstm", choices=LSTM_NETS,
                      help="lstm: dense BiLSTM; lstmtop: meProp top-k on every gate; lstmvar: meSimp.")
    batch: int = retold(Settings, "batch", 1, help="Sentences per mini-batch.")
    epochs: int = retold(Settings, "epochs", 5)
    iter_per_epoch: int = retold(Settings, "iter_per_epoch", 4)
    hidden: int = retold(Settings, "hidden", help="LSTM units per direction.")
    k: Optional[int] = retold(Settings, "k", 10, help="Top-k of each gate's gradient, per time step.")
    dropout: float = retold(Settings, "dropout", 0.5, help="Dropout rate on the BiLSTM's output, as the papers' "
                                                          "Table 4; 0: none, their Table 2.")
    prune: float = retold(Settings, "prune", 0.08, help="lstmvar: prune rate; a unit is removed when fewer than this share of the time steps "
                               "since the last pruning had it in some gate's top-k.")

    meprop_nets = ("lstmtop", "lstmvar")
    simplified_nets = ("lstmvar",)



class TaggerData:
    """The treebank's sentences, its tag vocabulary (from the training sentences, or a saved model's), and
    each sentence encoded: (ids (words, 3), tag ids (words,))."""

    def __init__(self, paths, sentences, vocabulary):
        self.paths, self.sentences, self.vocabulary = paths, sentences, vocabulary
        self.encoded = {split: [vocabulary.encode(sentence) for sentence in split_sentences]
                        for split, split_sentences in sentences.items()}

    @property
    def train_size(self):
        return len(self.encoded["train"])

    def count_text(self, split):
        return f"{sum(len(sentence) for sentence in self.sentences[split])} words"


class TaggerTask(TreebankTask, Task):
    """Train the papers' BiLSTM tagger on the XPOS (Penn Treebank) tags of UD English EWT.

    Sentences are the training examples."""

    Settings = PosSettings
    Vocabulary = TagVocabulary
    Data = TaggerData
    name = "pos"

    def __init__(self, data, model, meta):
        super().__init__(data, model, meta)
        model.reuse_buffers()  # train_step is done with each gradient and output in time (tinyprop.layers.base.Layer)
        self.encoded = data.encoded
        self.vocabulary = data.vocabulary
        self.n_classes = len(self.vocabulary.tags)
        self._evaluation_batches = {}

    @classmethod
    def describe(cls, settings, data):
        return dict(task="pos", net=settings.net, k=settings.k, hidden=[settings.hidden] * 2,
                    vocabulary=data.vocabulary.to_json(), **training_data(data.paths, settings.max_examples))

    @classmethod
    def build_model(cls, meta, rng, dropout=0.0):
        return TaggerModel(TagVocabulary.from_json(meta["vocabulary"]), meta["hidden"], meta["k"], dropout, rng)

    @classmethod
    def check_description(cls, path, meta, arrays):
        """The sizes of a saved description, against its arrays, before the model is built."""
        check_saved_vocabulary(path, meta, ("words", "suffixes", "tags"))
        hidden = meta.get("hidden")
        if not (isinstance(hidden, list) and len(hidden) == 2 and all(type(h) is int and h > 0 for h in hidden)):
            raise DataError(f"{path}: hidden {hidden!r} is not two positive whole numbers")
        for direction, size in zip(("forward", "backward"), hidden):
            shape = arrays.get(f"bilstm.{direction}.recurrent_weight", np.empty((0, 0))).shape
            if shape != (4 * size, size):
                raise DataError(f"{path}: bilstm.{direction}.recurrent_weight has shape {shape}, the model "
                                f"description says {(4 * size, size)}")

    @classmethod
    def simplified_pairs(cls, model):
        directions = model.bilstm.directions
        return [(lstm, ColumnBlock(model.output, directions, position)) for position, lstm in enumerate(directions)]

    def describe_run(self, settings):
        words = sum(len(sentence) for sentence in self.data.sentences["train"])
        return (f"{settings.net}{f' k={settings.k}' if settings.k else ''}: BiLSTM {settings.hidden} per direction, "
                f"{len(self.vocabulary.tags)} tags, {len(self.vocabulary.words)} word types; {self.train_size} "
                f"training sentences ({words} words)")

    def summary_fields(self, settings):
        return dict(k=settings.k, train_sentences=self.train_size,
                    train_words=sum(len(sentence) for sentence in self.data.sentences["train"]))

    def hidden_sizes(self):
        return self.model.hidden_sizes()

    def product_layers_text(self):
        return "the LSTMs and the output layer"

    def product_layers(self):
        return self.model.bilstm.directions + [self.model.output]

    def train_step(self, indices):
        """A mini-batch of sentences: their gradients add up, then one update (the papers: one sentence)."""
        loss = correct = count = 0
        for index in indices:
            ids, tags = self.encoded["train"][index]
            sentence_loss, sentence_correct = self.accumulate(ids, tags)
            loss += sentence_loss
            correct += sentence_correct
            count += tags.shape[0]
        self.update()
        return loss, correct, count

    def evaluate(self, split):
        """(mean loss per word, per-word accuracy %, {}). A word whose tag was unseen in training counts
        as an error, and is left out of the loss (which it has none of).

        Sentences of one length are tagged together, up to EVALUATION_BATCH at a time (see
        tinyprop.lstm_kernels.lstm_forward_steps). The scores are those of one sentence at a time
        up to float32 rounding (the batch's matrix products sum in another order; a near-tie
        between two tags could go the other way).
        """
        total_loss, correct, count, scored = 0.0, 0, 0, 0
        with self.evaluating():
            for ids, tags in self._batches_of_one_length(split):
                logits = self.model.forward(ids).reshape(tags.size, -1)
                tags = tags.ravel()
                known = tags >= 0
                total_loss += self.loss.forward(logits[known], tags[known])
                correct += int((logits.argmax(axis=1) == tags).sum())
                count += tags.shape[0]
                scored += int(known.sum())
        return total_loss / max(scored, 1), 100.0 * correct / count, {}

    def _batches_of_one_length(self, split):
        """(ids (sentences, words, 3), tags (sentences, words)) of split's sentences, grouped by length."""
        if split not in self._evaluation_batches:
            batches = batches_of_one_length(self.encoded[split])
            self._evaluation_batches[split] = [(ids, tags) for _, ids, tags in batches]
        return self._evaluation_batches[split]

    @classmethod
    def tag(cls, model, vocabulary, sentences):
        """The XPOS tags (a list per sentence) the model gives the forms of `sentences` (none empty), tagged in
        the batches evaluation makes of them, so that their scores are evaluate's."""
        model.train(False)
        tags = [None] * len(sentences)
        for positions, ids, _ in batches_of_one_length([vocabulary.encode(sentence) for sentence in sentences]):
            for position, best in zip(positions, model.forward(ids).argmax(axis=-1)):
                tags[position] = [vocabulary.tags[tag] for tag in best]
        return tags

    @classmethod
    def predict(cls, model, meta, stream, name, log=print):
        """Tag plain text, one sentence a line, its words separated by whitespace: each sentence as
        `word/TAG word/TAG ...`; an empty line stays an empty line. A word not in the vocabulary is tagged as
        in training and evaluation: from the UNKNOWN word's embedding, its suffix's (or UNKNOWN's) and its shape."""
        try:
            lines = read_text(name, stream)
        except DataError as error:
            raise DataError(f"{error}; the tagger reads plain text, one sentence a line") from error
        sentences = []
        for number, line in enumerate(lines, 1):
            fields = line.rstrip("\n").split("\t")
            if "\0" in line:
                raise DataError(f"{name}, line {number}: a NUL byte, so not text; the tagger reads plain text, one "
                                "sentence a line")
            if len(fields) == 10 and (WORD_ID.match(fields[0]) or SKIPPED_ID.match(fields[0])):
                raise DataError(f"{name}, line {number}: a CoNLL-U word line; the tagger reads plain text, one "
                                "sentence a line, its words separated by spaces (the parser reads CoNLL-U)")
            sentences.append(Sentence(forms=line.split()))
        vocabulary = TagVocabulary.from_json(meta["vocabulary"])
        words = [sentence for sentence in sentences if len(sentence)]
        for sentence, tags in zip(words, cls.tag(model, vocabulary, words)):
            sentence.xpos = tags
        unknown = sum(form.lower() not in vocabulary.words for sentence in words for form in sentence.forms)
        log(f"tagged {len(words)} sentences, {sum(map(len, words))} words ({unknown} not in the tagger's vocabulary: "
            "tagged by their suffix and shape)")
        return "".join(" ".join(f"{form}/{tag}" for form, tag in zip(sentence.forms, sentence.xpos)) + "\n"
                       for sentence in sentences)
