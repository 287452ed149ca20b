"""Transition-based dependency parsing (Chen and Manning, 2014) with meProp: data, model, evaluation.

The papers' first task (TKDE 2018, Section 3, Table 2: MLP with hidden 500, mini-batches
of 10,000 transitions, Adam; meProp k=20). Data: UD English EWT (CoNLL-U), gold XPOS
tags as input. Training examples are the (configuration, oracle transition) pairs of
the projective training sentences; the others cannot be derived by arc-standard and are
skipped (and counted). Evaluation parses greedily, taking only legal transitions, and
scores UAS and LAS without punctuation (UPOS PUNCT).

Words are lower-cased; those seen fewer than twice in training share the UNKNOWN id.
"""
import collections
import dataclasses

import numpy as np

from tinyprop.tasks.arcstandard import (NULL, ROOT, SHIFT, UNKNOWN, Configuration, features, oracle_transitions,
                              transition_count)
from tinyprop.tasks.config import MNIST_ONLY, ConfigError, resolve_seed
from tinyprop.tasks.conllu import locate_treebank, read_splits, write_conllu
from tinyprop.tasks.files import (DataError, evaluation_data, load_parameters, model_file_arrays, read_model_file,
                         training_data)
from tinyprop.tasks.training import ClassifierTask, make_optimizer, param_count, start_run, train, write_summary
from tinyprop.layers import Cube, Dropout, Embedding, Embeddings, Linear, Sequential
from tinyprop.mesimp import Simplifier

N_WORDS, N_TAGS, N_LABELS = 18, 18, 12  # Chen and Manning's 48 features
EMBEDDING_DIM = 50


class Vocabulary:
    """Ids of words (lower-cased, seen at least twice), XPOS tags and relations, from the training set."""

    def __init__(self, sentences, min_count=2):
        counts = collections.Counter(form.lower() for sentence in sentences for form in sentence.forms)
        words = sorted(word for word, count in counts.items() if count >= min_count)
        tags = sorted({tag for sentence in sentences for tag in sentence.xpos})
        self.words = {word: i for i, word in enumerate(words, ROOT + 1)}
        self.tags = {tag: i for i, tag in enumerate(tags, ROOT + 1)}
        self.labels = sorted({label for sentence in sentences for label in sentence.deprels})

    def encode(self, sentence):
        """Word and tag ids per node 0..n (node 0, the root, gets NULL: features use ROOT for it)."""
        words = [NULL] + [self.words.get(form.lower(), UNKNOWN) for form in sentence.forms]
        tags = [NULL] + [self.tags.get(tag, UNKNOWN) for tag in sentence.xpos]
        return words, tags

    def to_json(self):
        return dict(words=self.words, tags=self.tags, labels=self.labels)

    @classmethod
    def from_json(cls, data):
        vocabulary = cls.__new__(cls)
        vocabulary.words, vocabulary.tags, vocabulary.labels = data["words"], data["tags"], data["labels"]
        return vocabulary


def oracle_examples(sentences, vocabulary):
    """(features (N, 48) int32, transitions (N,) int64, sentences skipped as non-projective).

    The oracle's transitions come first, so that the feature array is allocated once at its
    final size rather than collected as Python lists (on EWT, 170 MB less at this point).
    """
    label_ids = {label: i for i, label in enumerate(vocabulary.labels)}
    n_labels = len(vocabulary.labels)
    derivable, skipped = [], 0
    for sentence in sentences:
        labels = [label_ids.get(label) for label in sentence.deprels]
        transitions = None if None in labels else oracle_transitions(sentence.heads, labels, n_labels)
        if transitions is None:
            skipped += 1
        else:
            derivable.append((sentence, transitions))
    total = sum(len(transitions) for _, transitions in derivable)
    feats = np.empty((total, N_WORDS + N_TAGS + N_LABELS), dtype=np.int32)
    targets = np.empty(total, dtype=np.int64)
    row = 0
    for sentence, transitions in derivable:
        words, tags = vocabulary.encode(sentence)
        config = Configuration(len(sentence))
        for transition in transitions:
            feats[row] = features(config, words, tags)
            targets[row] = transition
            config.apply(transition, n_labels)
            row += 1
    return feats, targets, skipped


class ParserModel(Sequential):
    """Embeddings of the 48 features (50 each) -> Linear 2400->hidden -> Cube [-> Dropout] -> Linear
    hidden->transitions.

    meProp applies to the hidden layer (k) and to the output layer (k_out), as in the papers'
    parsing setting, where the output layer (2L+1 transitions) is large enough to gain.
    Dropout on the hidden layer is Chen and Manning's (0.5) and the papers' Table 4. The class
    defaults to none; `tinyprop train parse` to 0.5.
    """

    def __init__(self, vocabulary, hidden=500, k=None, k_out=None, dropout=0.0, rng=None):
        rng = rng if rng is not None else np.random.default_rng()
        self.embeddings = Embeddings([Embedding(ROOT + 1 + len(vocabulary.words), EMBEDDING_DIM, rng=rng, name="words"),
                                      Embedding(ROOT + 1 + len(vocabulary.tags), EMBEDDING_DIM, rng=rng, name="tags"),
                                      Embedding(1 + len(vocabulary.labels), EMBEDDING_DIM, rng=rng, name="labels")],
                                     [N_WORDS, N_TAGS, N_LABELS])
        # k is capped by the layer's width: a model meSimp shrank below k is rebuilt with k = width
        self.hidden_layer = Linear((N_WORDS + N_TAGS + N_LABELS) * EMBEDDING_DIM, hidden, k=k and min(k, hidden),
                                   rng=rng, name="hidden")
        self.cube = Cube()
        self.dropout = Dropout(dropout, rng)  # on in training, off when parsing (`train`)
        self.output = Linear(hidden, transition_count(len(vocabulary.labels)), k=k_out, rng=rng, name="output")
        super().__init__([self.embeddings, self.hidden_layer, self.cube, self.dropout, self.output])


def legal_mask(config, n_labels):
    mask = np.zeros(transition_count(n_labels), dtype=bool)
    mask[SHIFT] = config.can_shift()
    mask[1:1 + n_labels] = config.can_left()
    mask[1 + n_labels:] = config.can_right()
    return mask


def parse(model, sentences, vocabulary, batch=2000):
    """Greedy parsing, all sentences at once: (heads, label ids) per sentence."""
    n_labels = len(vocabulary.labels)
    encoded = [vocabulary.encode(sentence) for sentence in sentences]
    configs = [Configuration(len(sentence)) for sentence in sentences]
    active = [i for i, config in enumerate(configs) if not config.terminal()]
    while active:
        for first in range(0, len(active), batch):
            chunk = active[first:first + batch]
            feats = np.array([features(configs[i], *encoded[i]) for i in chunk], dtype=np.int32)
            scores = model.forward(feats)
            for row, i in enumerate(chunk):
                legal = legal_mask(configs[i], n_labels)
                configs[i].apply(int(np.argmax(np.where(legal, scores[row], -np.inf))), n_labels)
        active = [i for i in active if not configs[i].terminal()]
    return [config.heads[1:] for config in configs], [config.labels[1:] for config in configs]


def attachment_scores(sentences, heads, labels, vocabulary):
    """(UAS %, LAS %) over the words whose UPOS is not PUNCT."""
    total = unlabeled = labeled = 0
    for sentence, sentence_heads, sentence_labels in zip(sentences, heads, labels):
        for word, upos in enumerate(sentence.upos):
            if upos == "PUNCT":
                continue
            total += 1
            if sentence_heads[word] == sentence.heads[word]:
                unlabeled += 1
                labeled += vocabulary.labels[sentence_labels[word]] == sentence.deprels[word]
    if total == 0:
        raise DataError("no non-punctuation words to score; use more sentences (--max-examples)")
    return 100.0 * unlabeled / total, 100.0 * labeled / total


class ParseTask(ClassifierTask):
    """The parsing task as tasks.training.train drives it: a classifier of oracle transitions; its
    training accuracy is the transitions', its dev and test scores are UAS (and LAS)."""

    score_name = "uas"

    def __init__(self, splits, vocabulary, model, optimizer, meta, simplifier=None):
        super().__init__(model, optimizer, meta, simplifier)
        self.splits = splits  # name -> sentences
        self.vocabulary = vocabulary
        self.feats, self.targets, self.skipped = oracle_examples(splits["train"], vocabulary)

    @property
    def train_size(self):
        return self.targets.shape[0]

    def product_layers(self):
        return [self.model.hidden_layer, self.model.output]

    def train_step(self, indices):
        return self.step(self.feats[indices], self.targets[indices])

    def evaluate(self, split):
        """(NaN loss: greedy parsing has none, UAS %, {"las": LAS %})."""
        with self.evaluating():
            heads, labels = parse(self.model, self.splits[split], self.vocabulary)
        uas, las = attachment_scores(self.splits[split], heads, labels, self.vocabulary)
        return float("nan"), uas, dict(las=las)

    def model_arrays(self):
        meta = dict(self.meta, hidden=self.model.hidden_layer.n_out, vocabulary=self.vocabulary.to_json())
        return model_file_arrays(self.model.params(), meta)


def load_model(path):
    """(meta, vocabulary, model) from a model.npz written by `tinyprop train parse`."""
    meta, arrays = read_model_file(path, "parse", ("vocabulary", "hidden", "k", "k_out"))
    vocabulary = Vocabulary.from_json(meta["vocabulary"])
    model = ParserModel(vocabulary, meta["hidden"], meta["k"], meta["k_out"])
    load_parameters(path, model, arrays)
    return meta, vocabulary, model


def run(settings, out_dir, log=print):
    """Train the parser `settings` describe; write config.json, metrics.jsonl, model.npz, summary.json."""
    seed = resolve_seed(settings.seed)
    paths = locate_treebank(settings.data_dir)
    splits = read_splits(paths, settings.max_examples)
    vocabulary = Vocabulary(splits["train"])
    n_transitions = transition_count(len(vocabulary.labels))
    k = settings.k if settings.meprop else None
    k_out = (settings.k_out or settings.k) if settings.meprop else None
    if k_out is not None and not 1 <= k_out < n_transitions:
        raise ConfigError(f"--k-out: must be at least 1 and smaller than the {n_transitions} transitions, got {k_out}")
    rng = np.random.default_rng(seed)
    model = ParserModel(vocabulary, settings.hidden, k, k_out, settings.dropout, rng)
    simplifier = Simplifier([(model.hidden_layer, model.output)], settings.prune) if settings.net == "mlpvar" else None
    meta = dict(task="parse", net=settings.net, k=k, k_out=k_out, **training_data(paths, settings.max_examples))
    task = ParseTask(splits, vocabulary, model, None, meta, simplifier)
    task.optimizer = make_optimizer(settings, model.params(), task.train_size)
    start_run(task, dataclasses.replace(settings, k_out=k_out), seed, out_dir, ignored=MNIST_ONLY)
    log(f"parse {settings.net}{f' k={k} k-out={k_out}' if k else ''}: hidden {settings.hidden}, "
        f"{n_transitions} transitions, seed {seed}; {task.train_size} training transitions from "
        f"{len(splits['train']) - task.skipped} sentences ({task.skipped} non-projective, which arc-standard "
        f"cannot derive, skipped); "
        f"writing to {out_dir}")
    summary = dict(task="parse", net=settings.net, k=k, k_out=k_out, epochs=settings.epochs, seed=seed,
                   skipped_non_projective=task.skipped, train_transitions=task.train_size)
    summary.update(train(task, settings, seed, out_dir, log))
    summary.update(param_count=param_count(model.params()),
                   hidden_sizes=[model.hidden_layer.n_out])
    if simplifier is not None:
        summary.update(original_hidden_sizes=[settings.hidden], prune=settings.prune, train_cycle=settings.train_cycle)
        log(f"final hidden size {simplifier.describe()}")
    write_summary(out_dir, summary)
    log(f"best dev UAS {summary['best_dev_acc']:.2f} LAS {summary['best_dev_las']:.2f} (epoch "
        f"{summary['best_epoch']} part {summary['best_part']}), test UAS {summary['test_acc']:.2f} LAS "
        f"{summary['test_las']:.2f}; train {summary['train_time_s']:.1f}s, backward of linear layers "
        f"{summary['linear_backward_time_s']:.1f}s, peak memory {summary['peak_memory_mb']:.0f} MB")
    return summary


def evaluate_saved(model_path, data_dir=None, output=None, log=print, all_examples=False):
    """Re-score a saved parser on dev and test (on all their sentences if `all_examples`); with `output`,
    write the parsed test set as CoNLL-U."""
    meta, vocabulary, model = load_model(model_path)
    paths, limit = evaluation_data(meta, data_dir, locate_treebank, log, all_examples)
    for split, sentences in read_splits(paths, limit, ("dev", "test")).items():
        heads, labels = parse(model, sentences, vocabulary)
        uas, las = attachment_scores(sentences, heads, labels, vocabulary)
        log(f"{split}: UAS {uas:.2f}%  LAS {las:.2f}%  ({len(sentences)} sentences, punctuation excluded)")
        if output and split == "test":
            write_conllu(output, sentences, heads, [[vocabulary.labels[label] for label in sentence_labels]
                                                    for sentence_labels in labels])
            log(f"wrote {output}")
