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
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tinyprop.tasks.arcstandard import (NULL, ROOT, SHIFT, UNKNOWN, Configuration, features, oracle_transitions,
                              transition_count)
from tinyprop.layers import Cube, Dropout, Embedding, Embeddings, Linear, Sequential
from tinyprop.tasks.conllu import (TreebankSettings, TreebankTask, check_saved_vocabulary, conllu_text, read_conllu,
                                   write_conllu)
from tinyprop.tasks.files import DataError, training_data
from tinyprop.tasks.settings import ConfigError, Settings, retold, setting
from tinyprop.tasks.training import Task

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
    final size rather than collected as Python lists (less memory on EWT; docs/performance.md).
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


PARSE_NETS = ("mlp", "mlptop", "mlpvar")


@dataclass
class ParseSettings(TreebankSettings):
    """The papers' parsing setting (TKDE 2018, Section 3.1 and Table 2): mini-batches of 10,000 transitions,
    k 20. EWT gives 392k training transitions (WSJ: 1.9M), so 40 updates an epoch; at Adam's usual 0.001
    the parser reached 52 UAS on dev after 3 epochs, at 0.01 (Chen and Manning's rate, with AdaGrad) 84.
    Dropout 0.5 on the hidden layer is Chen and Manning's (the papers' Table 4; their Table 2 has none): on
    EWT, 5 times smaller than WSJ, both parsers overfit without it, and meProp the more (docs/parse.md)."""

    net: str = retold(Settings, "net", "mlp", choices=PARSE_NETS,
                      help="mlp: dense; mlptop: meProp on the hidden and output layers; mlpvar: meSimp.")
    batch: int = retold(Settings, "batch", 10000, help="Transitions per mini-batch.")
    epochs: int = retold(Settings, "epochs", 10)
    iter_per_epoch: int = retold(Settings, "iter_per_epoch", 2)
    lr: float = retold(Settings, "lr", 0.01)
    k: Optional[int] = retold(Settings, "k", 20, help="Top-k of the hidden layer (and of the output layer, unless --k-out).")
    dropout: float = retold(Settings, "dropout", 0.5, help="Dropout rate on the hidden layer, as Chen and Manning; "
                                                          "0: none, the papers' Table 2.")
    prune: float = retold(Settings, "prune", help="mlpvar: prune rate; a unit is removed when fewer than this share of the transitions "
                               "since the last pruning had it in their top-k.")
    k_out: Optional[int] = setting(None, "Top-k of the output layer.", nets="meprop_nets", at_least=1,
                                   default_text="--k")

    meprop_nets = ("mlptop", "mlpvar")
    simplified_nets = ("mlpvar",)



class ParseData:
    """The treebank's sentences, the vocabulary (from the training sentences, or a saved model's) and, with
    the training split, its oracle's examples (`oracle_examples`)."""

    def __init__(self, paths, sentences, vocabulary):
        self.paths, self.sentences, self.vocabulary = paths, sentences, vocabulary
        if "train" in sentences:
            self.feats, self.targets, self.skipped = oracle_examples(sentences["train"], vocabulary)

    @property
    def train_size(self):
        return self.targets.shape[0]

    @property
    def n_transitions(self):
        return transition_count(len(self.vocabulary.labels))

    def count_text(self, split):
        return f"{len(self.sentences[split])} sentences, punctuation excluded"


class ParseTask(TreebankTask, Task):
    """Train Chen and Manning's transition parser (48 features, hidden 500, cube) on UD English EWT.

    A classifier of oracle transitions: its training accuracy is the transitions', its dev and test
    scores are UAS (and LAS)."""

    Settings = ParseSettings
    Vocabulary = Vocabulary
    Data = ParseData
    name = "parse"
    score_name = "uas"

    def __init__(self, data, model, meta):
        super().__init__(data, model, meta)
        model.reuse_buffers()  # train_step is done with each gradient and output in time (tinyprop.layers.base.Layer)
        self.splits = data.sentences
        self.vocabulary = data.vocabulary
        self.n_classes = data.n_transitions
        self.parsed = {}  # split -> (heads, labels) of its last evaluation

    @classmethod
    def check(cls, settings, data):
        k_out = settings.k_out or settings.k
        if k_out is not None and not k_out < data.n_transitions:
            raise ConfigError(f"--k-out: must be smaller than the {data.n_transitions} transitions, got {k_out}")

    @classmethod
    def describe(cls, settings, data):
        return dict(task="parse", net=settings.net, k=settings.k, k_out=settings.k_out or settings.k,
                    hidden=settings.hidden, vocabulary=data.vocabulary.to_json(),
                    **training_data(data.paths, settings.max_examples))

    @classmethod
    def build_model(cls, meta, rng, dropout=0.0):
        return ParserModel(Vocabulary.from_json(meta["vocabulary"]), meta["hidden"], meta["k"], meta["k_out"],
                           dropout, rng)

    @classmethod
    def check_description(cls, path, meta, arrays):
        """The sizes of a saved description, against its arrays, before the model is built."""
        check_saved_vocabulary(path, meta, ("words", "tags", "labels"))
        hidden = meta.get("hidden")
        if not (type(hidden) is int and hidden > 0):
            raise DataError(f"{path}: hidden {hidden!r} is not a positive whole number")
        shape = arrays.get("hidden.weight", np.empty((0, 0))).shape
        if shape[:1] != (hidden,):
            raise DataError(f"{path}: hidden.weight has shape {shape}, the model description says {hidden} rows")

    @classmethod
    def simplified_pairs(cls, model):
        return [(model.hidden_layer, model.output)]

    def describe_run(self, settings):
        k = f" k={settings.k} k-out={self.meta['k_out']}" if settings.k else ""
        sentences = len(self.splits["train"]) - self.data.skipped
        return (f"{settings.net}{k}: hidden {settings.hidden}, {self.n_classes} transitions; {self.train_size} "
                f"training transitions from {sentences} sentences ({self.data.skipped} non-projective, which "
                "arc-standard cannot derive, skipped)")

    def summary_fields(self, settings):
        return dict(k=settings.k, k_out=self.meta["k_out"], skipped_non_projective=self.data.skipped,
                    train_transitions=self.train_size)

    def hidden_sizes(self):
        return [self.model.hidden_layer.n_out]

    def current_meta(self):
        return dict(self.meta, hidden=self.model.hidden_layer.n_out)

    def product_layers(self):
        return [self.model.hidden_layer, self.model.output]

    def product_layers_text(self):
        return "linear layers"

    def train_step(self, indices):
        return self.step(self.data.feats[indices], self.data.targets[indices])

    def evaluate(self, split):
        """(NaN loss: greedy parsing has none, UAS %, {"las": LAS %})."""
        with self.evaluating():
            self.parsed[split] = parse(self.model, self.splits[split], self.vocabulary)
        uas, las = attachment_scores(self.splits[split], *self.parsed[split], self.vocabulary)
        return float("nan"), uas, dict(las=las)

    @classmethod
    def predict(cls, model, meta, stream, name, log=print, tagger=None):
        """Parse CoNLL-U sentences (their HEAD and DEPREL are not read): the same CoNLL-U with HEAD and DEPREL
        filled and DEPS cleared. The parser reads their XPOS, or, with `tagger` (a tagger's (task class, meta,
        model), as tinyprop.tasks.run.load_model gives it), the tags it gives them, which the output's XPOS
        then holds. Words and tags not in the vocabulary are UNKNOWN, as in training and evaluation."""
        sentences = read_conllu(name, parsed=False, stream=stream)
        xpos = None
        if tagger is not None:
            tagger_cls, tagger_meta, tagger_model = tagger
            xpos = tagger_cls.tag(tagger_model, tagger_cls.Vocabulary.from_json(tagger_meta["vocabulary"]), sentences)
            sentences = [dataclasses.replace(sentence, xpos=tags) for sentence, tags in zip(sentences, xpos)]
        for number, sentence in enumerate(sentences, 1):
            if "_" in sentence.xpos:
                word = sentence.xpos.index("_")
                raise DataError(f"{name}: sentence {number}, word {word + 1} ({sentence.forms[word]!r}) has no XPOS "
                                "tag (_); the parser reads the tags it was trained on: give them, or tag the words "
                                "first with --tagger DIR (a model of tinyprop train pos)")
        vocabulary = Vocabulary.from_json(meta["vocabulary"])
        model.train(False)
        heads, labels = parse(model, sentences, vocabulary)
        forms = [form.lower() for sentence in sentences for form in sentence.forms]
        unknown_words = sum(form not in vocabulary.words for form in forms)
        unknown_tags = sum(tag not in vocabulary.tags for sentence in sentences for tag in sentence.xpos)
        log(f"parsed {len(sentences)} sentences, {len(forms)} words ({unknown_words} not in the parser's vocabulary, "
            f"{unknown_tags} tags unknown to it)")
        return conllu_text(sentences, heads, [[vocabulary.labels[label] for label in sentence_labels]
                                              for sentence_labels in labels], xpos)

    def write_output(self, path):
        """The test set as last evaluated, as CoNLL-U."""
        heads, labels = self.parsed["test"]
        write_conllu(path, self.splits["test"], heads, [[self.vocabulary.labels[label] for label in sentence_labels]
                                                         for sentence_labels in labels])
