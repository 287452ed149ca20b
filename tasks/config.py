"""Run settings, and the JSON config files of the authors' C# nnmnist.

`tinyprop train --config FILE.json` reads nnmnist's keys with nnmnist's meaning; keys the
file leaves out take nnmnist's defaults (its Config constructor), so a config file runs
as it would there, with two differences: LearningRate also applies to Adam (nnmnist's Adam
ignores it; its default, 0.001, is Adam's usual rate), and L2RegFactor also to SGD.
`tinyprop train mnist` without a file starts from the papers' MNIST setting instead (TKDE
2018, Section 3.1 and Table 2: mini-batch 10, k 80). Command-line options override both.
Every value is checked before anything is loaded, except those that need the data
(LabelCount, IterPerEpoch against the training set's size, and the parser's --k-out against
its number of transitions), checked before training.
"""
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Optional

MLP_NETS = ("mlp", "mlptop", "mlprand", "mlpvar")
CNN_NETS = ("cnn", "cnntop")
MNIST_NETS = MLP_NETS + CNN_NETS
LSTM_NETS = ("lstm", "lstmtop", "lstmvar")
DENSE_NETS = ("mlp", "cnn", "lstm")
CNN_HIDDEN = 512  # the papers' CNN: fully connected 512 after the convolutions
OPTIMIZERS = ("sgd", "adagrad", "adam")


class ConfigError(Exception):
    """A setting that cannot be used; the message names the key or option, `field` the Settings field."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


@dataclass
class Settings:
    net: str = "mlp"
    k: int = 80
    k_out: Optional[int] = None
    k_ratio: float = 0.05
    unified: bool = False
    hidden: int = 500
    layers: int = 3
    batch: int = 10
    epochs: int = 20
    iter_per_epoch: int = 8
    optim: str = "adam"
    lr: float = 0.001
    dropout: float = 0.0
    seed: int = -1
    dense_updates: bool = False
    clip_bound: float = 5.0
    l2: float = 0.0
    decay_rate: float = 0.09
    eps: float = 1e-6
    label_count: int = 10
    prune: float = 0.1
    train_cycle: int = 5
    train_file: Optional[str] = None
    train_label_file: Optional[str] = None
    test_file: Optional[str] = None
    test_label_file: Optional[str] = None
    data_dir: Optional[str] = None
    max_examples: Optional[int] = None

    @property
    def meprop(self):
        return self.net not in DENSE_NETS

    @property
    def cnn(self):
        return self.net in CNN_NETS


# The settings only the MNIST task has (its nets' shapes, unified top-k, the nnmnist file names): the
# tagger's and the parser's config.json leave them out.
MNIST_ONLY = ("layers", "label_count", "k_ratio", "unified", "train_file", "train_label_file", "test_file",
              "test_label_file")

# nnmnist key -> (Settings field, JSON type, command-line option)
NNMNIST_KEYS = {
    "ClipBound": ("clip_bound", float, "--clip-bound"),
    "DecayRate": ("decay_rate", float, "--decay-rate"),
    "Eps": ("eps", float, "--eps"),
    "HiddenSize": ("hidden", int, "--hidden"),
    "IterPerEpoch": ("iter_per_epoch", int, "--iter-per-epoch"),
    "L2RegFactor": ("l2", float, "--l2"),
    "LabelCount": ("label_count", int, None),
    "Layers": ("layers", int, "--layers"),
    "LearningRate": ("lr", float, "--lr"),
    "MaxEpoch": ("epochs", int, "--epochs"),
    "MinibatchSize": ("batch", int, "--batch"),
    "NetType": ("net", str, "--net"),
    "OptType": ("optim", str, "--optim"),
    "Prune": ("prune", float, "--prune"),
    "RandomSeed": ("seed", int, "--seed"),
    "TestFile": ("test_file", "path", None),
    "TestLabelFile": ("test_label_file", "path", None),
    "TrainCycle": ("train_cycle", int, "--train-cycle"),
    "TrainFile": ("train_file", "path", None),
    "TrainLabelFile": ("train_label_file", "path", None),
    "TrainTop": ("k", int, "--k"),
}
OPTION_ONLY = dict(unified="--unified", dropout="--dropout", max_examples="--max-examples", k_ratio="--k-ratio",
                   k_out="--k-out", dense_updates="--dense-updates")
# how messages name a setting: on MNIST by nnmnist key and option, on the tasks without config files by option
FIELD_NAMES = {field: f"{key} ({option})" if option else key for key, (field, _, option) in NNMNIST_KEYS.items()}
FIELD_NAMES.update(OPTION_ONLY)
OPTION_NAMES = {field: option or key for key, (field, _, option) in NNMNIST_KEYS.items()}
OPTION_NAMES.update(OPTION_ONLY)

NNMNIST_DEFAULTS = dict(batch=100, k=160)  # where nnmnist's Config() differs from the papers' MNIST setting
# the papers' parsing setting (TKDE 2018, Section 3.1 and Table 2): mini-batches of 10,000 transitions, k 20.
# EWT gives 392k training transitions (WSJ: 1.9M), so 40 updates an epoch; at Adam's usual 0.001 the
# parser reached 52 UAS on dev after 3 epochs, at 0.01 (Chen and Manning's rate, with AdaGrad) 84.
# Dropout 0.5 on the hidden layer is Chen and Manning's (the papers' Table 4; their Table 2 has none): on
# EWT, 5 times smaller than WSJ, both parsers overfit without it, and meProp the more (README).
PARSE_DEFAULTS = dict(batch=10000, k=20, epochs=10, iter_per_epoch=2, lr=0.01, dropout=0.5)
# the papers' tagging setting (Section 3.1, Table 2): one sentence per mini-batch, Adam, k 10; their best
# iterations were 3 (dense) and 4 (meProp). meSimp: prune 0.08 (Table 10) with meSimp in every epoch.
# Dropout 0.5 on the BiLSTM's output is the papers' Table 4 tagging setting (their Table 2 has none): on EWT,
# 4 times smaller than WSJ, meProp at k 10 ends 0.43 below dense without it, 0.07 with it (README).
POS_DEFAULTS = dict(net="lstm", batch=1, k=10, epochs=5, iter_per_epoch=4, lr=0.001, prune=0.08, train_cycle=5,
                    dropout=0.5)


def read_nnmnist_config(path):
    """The settings an nnmnist JSON file sets (make_settings adds nnmnist's defaults for the keys it
    leaves out). Relative data paths resolve against the file's folder."""
    try:
        with open(path, encoding="utf-8-sig") as stream:  # a byte order mark, as some Windows editors write, is fine
            raw = json.load(stream, object_pairs_hook=_refusing_repeated_keys(path))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror})") from error
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: line {error.lineno}, column {error.colno}: not valid JSON ({error.msg})") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); is it a JSON file?") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object of nnmnist keys, got {type(raw).__name__}")
    values = {}
    folder = os.path.dirname(os.path.abspath(path))
    for key, value in raw.items():
        if key not in NNMNIST_KEYS:
            close = get_close_matches(key, NNMNIST_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; the keys are {', '.join(NNMNIST_KEYS)}"
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
        field, kind, _ = NNMNIST_KEYS[key]
        values[field] = _typed(path, key, kind, value, folder)
    return values


def _refusing_repeated_keys(path):
    """json's object_pairs_hook: a key given twice is an error (json alone keeps the last silently)."""
    def to_dict(pairs):
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ConfigError(f"{path}: {', '.join(repeated)} given twice; keep one")
        return dict(pairs)
    return to_dict


def _typed(path, key, kind, value, folder):
    if kind == "path":
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: {key} must be a file path (a string) or null, got {value!r}")
        return value if os.path.isabs(value) else _resolve_data_path(value, folder)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: {key} must be a finite number, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value)):
        raise ConfigError(f"{path}: {key} must be a whole number, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{path}: {key} must be a number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{path}: {key} must be a string, got {value!r}")
    return kind(value)


def _resolve_data_path(relative, folder):
    """Against the config file's folder first (giving an absolute path); if no file is there, the relative
    name is left for the data dir (not the working folder)."""
    beside = os.path.join(folder, relative)
    return os.path.abspath(beside) if os.path.isfile(beside) else relative


def make_settings(config_values=None, options=None, defaults=None, nets=MNIST_NETS, config_path=None,
                  names=FIELD_NAMES):
    """Defaults (the task's `defaults` over Settings'), then a config file's values, then command-line
    options; checked. `nets`: the network types of the task. `config_path`: the nnmnist file that
    `config_values` come from; the keys it leaves out take nnmnist's defaults, and a bad value it
    set is reported with its name. Messages name a setting as `names` says (FIELD_NAMES: nnmnist
    key and option; OPTION_NAMES: option)."""
    values = dataclasses.asdict(Settings())
    values.update(defaults or {})
    if config_path:
        values.update(NNMNIST_DEFAULTS)
    values.update(config_values or {})
    given = {name: value for name, value in (options or {}).items() if value is not None}
    values.update(given)
    settings = Settings(**values)
    try:
        validate(settings, nets, names)
    except ConfigError as error:
        if config_path and error.field in (config_values or {}) and error.field not in given:
            raise ConfigError(f"{config_path}: {error}", error.field) from None
        raise
    check_options_apply(settings, given, names, nets)
    return settings


def check_options_apply(s, given, names=FIELD_NAMES, nets=MNIST_NETS):
    """A command-line option the chosen net or optimizer would ignore is an error, not a silent no-op.
    (A config file's keys are not checked: nnmnist's files carry every key whatever the NetType.)
    MNIST's dense nets give every row gradient at every step, so --dense-updates changes nothing
    there; the tagger's and parser's dense nets have embeddings, whose unused rows it does move."""
    net, optimizer, var = f"--net {s.net}", f"--optim {s.optim}", s.net.endswith("var")
    checks = [("k", not s.meprop, net), ("k_out", not s.meprop, net), ("k_ratio", s.net != "cnntop", net),
              ("dense_updates", nets == MNIST_NETS and not s.meprop, net),
              ("hidden", s.cnn, net), ("hidden", s.layers == 1, "a single linear layer"),
              ("dropout", s.layers == 1 and not s.cnn, "a single linear layer"), ("layers", s.cnn, net),
              ("prune", not var, net), ("train_cycle", not var, net),
              ("eps", s.optim != "adagrad", optimizer), ("decay_rate", s.optim != "sgd", optimizer)]
    for field, ignored, ignorer in checks:
        if field in given and ignored:
            raise ConfigError(f"{names.get(field, field)}: {ignorer} does not use it; leave it out", field)


def validate(s, nets, names):
    def fail(field, problem):
        raise ConfigError(f"{names.get(field, field)}: {problem}", field)

    if s.net not in nets:
        fail("net", f"{s.net!r} is not a network type of this task; use one of {', '.join(nets)}")
    if s.optim not in OPTIMIZERS:
        fail("optim", f"{s.optim!r} is not an optimizer; use one of {', '.join(OPTIMIZERS)}")
    for field in ("hidden", "layers", "batch", "epochs", "iter_per_epoch", "train_cycle"):
        if getattr(s, field) < 1:
            fail(field, f"must be at least 1, got {getattr(s, field)}")
    if s.label_count < 2:
        fail("label_count", f"must be at least 2, got {s.label_count}")
    hidden = CNN_HIDDEN if s.cnn else s.hidden
    if s.meprop:
        if s.layers < 2 and not s.cnn:
            fail("layers", f"{s.net} applies meProp to hidden layers, so it needs Layers >= 2, got {s.layers}")
        if not 1 <= s.k < hidden:
            fail("k", f"k must be at least 1 and smaller than the hidden size {hidden}, got {s.k}")
    if s.k_out is not None and s.k_out < 1:
        fail("k_out", f"must be at least 1, got {s.k_out}")
    if s.net == "cnntop" and not 0 < s.k_ratio <= 1:
        fail("k_ratio", f"the spatial top-k ratio must be in (0, 1], got {s.k_ratio}")
    if s.unified and s.net != "mlptop":
        fail("unified", f"unified top-k is a variant of mlptop, not of {s.net}")
    if not s.lr > 0:
        fail("lr", f"must be positive, got {s.lr}")
    if not 0 <= s.dropout < 1:
        fail("dropout", f"must be in [0, 1), got {s.dropout}")
    if s.clip_bound < 0 or s.l2 < 0:
        fail("clip_bound" if s.clip_bound < 0 else "l2", "must be >= 0")
    if not 0 < s.decay_rate <= 1:
        fail("decay_rate", f"must be in (0, 1], got {s.decay_rate}")
    if s.eps <= 0:
        fail("eps", f"must be positive, got {s.eps}")
    if not 0 <= s.prune <= 1:
        fail("prune", f"must be in [0, 1], got {s.prune}")
    if s.max_examples is not None and s.max_examples < 1:
        fail("max_examples", f"must be at least 1, got {s.max_examples}")


def resolve_seed(seed):
    """nnmnist's rule: a negative seed means a seed from the clock. Returns the seed actually used."""
    return seed if seed >= 0 else time.time_ns() % (2 ** 31)
