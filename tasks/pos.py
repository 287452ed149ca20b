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

import numpy as np

from tinyprop.tasks.config import MNIST_ONLY, resolve_seed
from tinyprop.tasks.conllu import locate_treebank, read_splits
from tinyprop.tasks.files import evaluation_data, load_parameters, model_file_arrays, read_model_file, training_data
from tinyprop.tasks.training import ClassifierTask, make_optimizer, param_count, start_run, train, write_summary
from tinyprop.layers import BiLSTM, Dropout, Embedding, Embeddings, Layer, Linear
from tinyprop.mesimp import ColumnBlock, Simplifier

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

    def params(self):
        return [param for layer in (self.embeddings, self.bilstm, self.output) for param in layer.params()]

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

    def train(self, mode=True):
        """Dropout on in training, off when tagging."""
        self.training = mode
        self.dropout.train(mode)


class TaggerTask(ClassifierTask):
    """The tagging task as tasks.training.train drives it: sentences are the training examples."""

    def __init__(self, splits, vocabulary, model, optimizer, meta, simplifier=None):
        super().__init__(model, optimizer, meta, simplifier)
        self.encoded = {split: [vocabulary.encode(sentence) for sentence in sentences]
                        for split, sentences in splits.items()}
        self.vocabulary = vocabulary
        self._evaluation_batches = {}

    @property
    def train_size(self):
        return len(self.encoded["train"])

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
            by_length = collections.defaultdict(list)
            for ids, tags in self.encoded[split]:
                by_length[tags.shape[0]].append((ids, tags))
            self._evaluation_batches[split] = [
                (np.stack([ids for ids, _ in group[first:first + EVALUATION_BATCH]]),
                 np.stack([tags for _, tags in group[first:first + EVALUATION_BATCH]]))
                for group in by_length.values() for first in range(0, len(group), EVALUATION_BATCH)]
        return self._evaluation_batches[split]

    def model_arrays(self):
        meta = dict(self.meta, hidden=self.model.hidden_sizes(), vocabulary=self.vocabulary.to_json())
        return model_file_arrays(self.model.params(), meta)


def load_model(path):
    """(meta, vocabulary, model) from a model.npz written by `tinyprop train pos`."""
    meta, arrays = read_model_file(path, "pos", ("vocabulary", "hidden", "k"))
    vocabulary = TagVocabulary.from_json(meta["vocabulary"])
    model = TaggerModel(vocabulary, meta["hidden"], meta["k"])
    load_parameters(path, model, arrays)
    return meta, vocabulary, model


def run(settings, out_dir, log=print):
    """Train the tagger `settings` describe; write config.json, metrics.jsonl, model.npz, summary.json."""
    seed = resolve_seed(settings.seed)
    paths = locate_treebank(settings.data_dir)
    splits = read_splits(paths, settings.max_examples)
    vocabulary = TagVocabulary(splits["train"])
    k = settings.k if settings.meprop else None
    rng = np.random.default_rng(seed)
    model = TaggerModel(vocabulary, (settings.hidden, settings.hidden), k, settings.dropout, rng)
    directions = model.bilstm.directions
    simplifier = None
    if settings.net == "lstmvar":
        simplifier = Simplifier([(lstm, ColumnBlock(model.output, directions, position))
                                 for position, lstm in enumerate(directions)], settings.prune)
    meta = dict(task="pos", net=settings.net, k=k, **training_data(paths, settings.max_examples))
    task = TaggerTask(splits, vocabulary, model, None, meta, simplifier)
    task.optimizer = make_optimizer(settings, model.params(), task.train_size)
    start_run(task, settings, seed, out_dir, ignored=MNIST_ONLY + ("k_out",))
    words = sum(len(sentence) for sentence in splits["train"])
    log(f"pos {settings.net}{f' k={k}' if k else ''}: BiLSTM {settings.hidden} per direction, "
        f"{len(vocabulary.tags)} tags, {len(vocabulary.words)} word types, seed {seed}; {task.train_size} training "
        f"sentences ({words} words); writing to {out_dir}")
    summary = dict(task="pos", net=settings.net, k=k, epochs=settings.epochs, seed=seed,
                   train_sentences=task.train_size, train_words=words)
    summary.update(train(task, settings, seed, out_dir, log))
    summary.update(param_count=param_count(model.params()),
                   hidden_sizes=model.hidden_sizes())
    if simplifier is not None:
        summary.update(original_hidden_sizes=[settings.hidden] * 2, prune=settings.prune,
                       train_cycle=settings.train_cycle)
        log(f"final hidden sizes (forward, backward) {simplifier.describe()}")
    write_summary(out_dir, summary)
    log(f"best dev {summary['best_dev_acc']:.2f} (epoch {summary['best_epoch']} part {summary['best_part']}), "
        f"test {summary['test_acc']:.2f}; train {summary['train_time_s']:.1f}s, backward of the LSTMs and the "
        f"output layer {summary['linear_backward_time_s']:.1f}s, peak memory {summary['peak_memory_mb']:.0f} MB")
    return summary


def evaluate_saved(model_path, data_dir=None, log=print, all_examples=False):
    """Re-score a saved tagger on dev and test (on all their sentences if `all_examples`)."""
    meta, vocabulary, model = load_model(model_path)
    paths, limit = evaluation_data(meta, data_dir, locate_treebank, log, all_examples)
    splits = read_splits(paths, limit, ("dev", "test"))
    task = TaggerTask(splits, vocabulary, model, None, meta)
    for split in ("dev", "test"):
        loss, accuracy, _ = task.evaluate(split)
        words = sum(len(sentence) for sentence in splits[split])
        log(f"{split}: accuracy {accuracy:.2f}%  loss {loss:.4f}  ({words} words)")
