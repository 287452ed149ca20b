"""Run settings that describe themselves, and the JSON config files of the authors' C# nnmnist.

Each task has a typed settings class (a dataclass) built on `Settings`. Every field carries,
in its metadata, its help text, its nnmnist key where it has one, the nets and optimizers that
use it, and its valid range. From that one description come the command-line options and the
defaults their help shows (tinyprop.cli), the checks (`Settings.checked`), the refusal of an
option the chosen net would ignore, config.json, and nnmnist's JSON keys (`read_nnmnist_config`).

A setting that the chosen net or optimizer does not use is None in the checked settings, and
so in config.json. `tinyprop train --config FILE.json` reads nnmnist's keys with nnmnist's
meaning; keys the file leaves out take nnmnist's defaults (its Config constructor), with two
differences: LearningRate also applies to Adam (nnmnist's Adam ignores it; its default, 0.001,
is Adam's usual rate), and L2RegFactor also to SGD. Without a file, a task starts from the
papers' setting (TKDE 2018, Section 3.1 and Table 2). Command-line options override both.
"""
import dataclasses
import json
import math
import numbers
import os
import time
import typing
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Optional

import numpy as np

OPTIMIZERS = ("sgd", "adagrad", "adam")
# the cores this process may use (its CPU affinity), where the system tells
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# Numba refuses more threads than NUMBA_NUM_THREADS, and ignores a value that is not a number
KERNEL_THREADS = min(CORES, int(os.environ["NUMBA_NUM_THREADS"])) \
    if os.environ.get("NUMBA_NUM_THREADS", "").strip().isdigit() else CORES


class ConfigError(Exception):
    """A setting that cannot be used; the message names the key or option (and the file it came from)."""


@dataclass(frozen=True)
class About:
    """What a settings field is: its help, nnmnist key, who uses it and its valid range.

    nets / optims: the nets and optimizers that use the field (None: all); nets may name a tuple of the
    settings class instead ("meprop_nets", "simplified_nets"), which each task sets. at_least, above, below,
    at_most: bounds (inclusive, exclusive, exclusive, inclusive). choices: the values allowed.
    option: whether the command line has it (nnmnist's file names are config-only). path: a file or
    folder name (in a config file, relative to the file's folder).
    default_text: what help says of the default when it is not a plain value.
    """
    help: str
    key: Optional[str] = None
    nets: Optional[tuple] = None
    optims: Optional[tuple] = None
    at_least: Optional[float] = None
    above: Optional[float] = None
    below: Optional[float] = None
    at_most: Optional[float] = None
    choices: Optional[tuple] = None
    option: bool = True
    path: bool = False
    default_text: Optional[str] = None


def setting(default, help, **about):
    """A settings field with its description."""
    return field(default=default, metadata={"about": About(help, **about)})


def retold(cls, name, default=dataclasses.MISSING, **changes):
    """A subclass's version of `cls`'s field `name`: another default, or other parts of its description."""
    base = cls.__dataclass_fields__[name]
    about = dataclasses.replace(base.metadata["about"], **changes)
    return field(default=base.default if default is dataclasses.MISSING else default, metadata={"about": about})


def about(cls, name):
    return cls.__dataclass_fields__[name].metadata["about"]


@dataclass
class Settings:
    """What every task's training takes. Subclasses set `net`'s choices and their own defaults."""

    net: str = setting("mlp", "Network.", key="NetType")
    seed: int = setting(-1, "Random seed; negative: from the clock (the seed used is recorded).", key="RandomSeed")
    batch: int = setting(10, "Examples per mini-batch.", key="MinibatchSize", at_least=1)
    epochs: int = setting(20, "Epochs.", key="MaxEpoch", at_least=1)
    iter_per_epoch: int = setting(8, "Parts per epoch; dev is scored (and a checkpoint written) after each.",
                                  key="IterPerEpoch", at_least=1)
    optim: str = setting("adam", "Optimizer.", key="OptType", choices=OPTIMIZERS)
    lr: float = setting(0.001, "Learning rate.", key="LearningRate", above=0)
    clip_bound: float = setting(5.0, "Clip each gradient entry to [-c, c]; 0: off.", key="ClipBound", at_least=0)
    l2: float = setting(0.0, "L2 regularisation factor.", key="L2RegFactor", at_least=0)
    decay_rate: float = setting(0.09, "SGD learning-rate decay per training set's worth of updates.",
                                key="DecayRate", optims=("sgd",), above=0, at_most=1)
    eps: float = setting(1e-6, "AdaGrad epsilon.", key="Eps", optims=("adagrad",), above=0)
    dense_updates: bool = setting(False, "Update every row every step (as the authors' Adam does), not only rows "
                                         "that received gradient: meProp's unselected rows and unused embedding "
                                         "rows then move on their momentum.")
    hidden: int = setting(500, "Hidden layer size.", key="HiddenSize", at_least=1)
    k: Optional[int] = setting(80, "Rows kept per example in the hidden layers' backward (meProp's top-k).",
                               key="TrainTop", nets="meprop_nets", at_least=1)
    dropout: float = setting(0.0, "Dropout rate.", at_least=0, below=1)
    prune: float = setting(0.1, "meSimp's prune rate: a unit is removed when fewer than this share of the examples "
                                "since the last pruning had it in their top-k.", key="Prune", nets="simplified_nets",
                  at_least=0, at_most=1)
    train_cycle: int = setting(5, "meSimp: epochs per cycle; cycles 0, 2, ... prune, 1, 3, ... do not (with 5: "
                                  "epochs 1-5, 11-15 prune).", key="TrainCycle", nets="simplified_nets", at_least=1)
    max_examples: Optional[int] = setting(None, "Use at most N examples of each split (quick runs).", at_least=1)
    data_dir: Optional[str] = setting(None, "Folder with the task's data.", path=True)
    threads: int = setting(KERNEL_THREADS, "Threads of tinyprop's kernels, training and evaluating; BLAS runs on "
                                           "one, but for products large enough to share out (the parser's). The "
                                           "kernels give the same bits on any number; BLAS may not, so a run "
                                           "repeats bit for bit with the same count.", at_least=1,
                          default_text="the cores this process may use, at most NUMBA_NUM_THREADS")

    # the net names of the task that run meProp and meSimp (subclasses set them)
    meprop_nets = ()
    simplified_nets = ()
    activated_nets = ()  # meAct's
    # whether the task reads nnmnist config files (messages then name a setting by key and option)
    nnmnist = False

    @property
    def meprop(self):
        return self.net in self.meprop_nets

    @classmethod
    def fields(cls):
        return dataclasses.fields(cls)

    @classmethod
    def name_of(cls, name, from_file=False):
        """How messages name a field: as its user gave it first, `--k (TrainTop)` from the command line,
        `TrainTop (--k)` from a config file, in tasks whose config files have it; else `--k`."""
        option = "--" + name.replace("_", "-")
        key = about(cls, name).key
        if cls.nnmnist and key:
            if not about(cls, name).option:
                return key
            return f"{key} ({option})" if from_file else f"{option} ({key})"
        return option

    @classmethod
    def nets_of(cls, name):
        """The nets that use field `name` (None: all)."""
        nets = about(cls, name).nets
        return getattr(cls, nets) if isinstance(nets, str) else nets

    def unused_by(self, name):
        """Who would ignore field `name` ("--net mlp"), or None if the chosen net and optimizer use it."""
        description = about(type(self), name)
        nets = self.nets_of(name)
        if nets is not None and self.net not in nets:
            return f"--net {self.net}"
        if description.optims is not None and self.optim not in description.optims:
            return f"--optim {self.optim}"
        return None

    def checked(self, given=None, source=None, naming=None):
        """A copy with the fields the net or optimizer does not use set to None, after checking every value.

        given: the fields the user set (an option the net ignores is then an error; by default, those
        that are not None and differ from their default). source: {field: config file} for the fields
        a config file set: a message about one names the file, and one the net ignores is accepted
        (nnmnist's files carry every key whatever the NetType). naming: how messages name a field (default:
        name_of, its option and nnmnist key, the key first for a field a config file set)."""
        cls = type(self)
        source = source or {}
        if given is None:
            given = {f.name for f in cls.fields() if getattr(self, f.name) not in (None, f.default)}

        def fail(name, problem):
            where = f"{source[name]}: " if name in source else ""
            raise ConfigError(f"{where}{naming(name) if naming else cls.name_of(name, name in source)}: {problem}")

        check_value(cls.__dataclass_fields__["net"], self.net, fail)
        unused = {f.name: self.unused_by(f.name) for f in cls.fields()}
        values = {}
        for f in cls.fields():
            if unused[f.name] is None:
                values[f.name] = check_value(f, getattr(self, f.name), fail)
            elif f.name in given and f.name not in source:
                fail(f.name, f"{unused[f.name]} does not use it; leave it out")
            else:
                values[f.name] = None
        checked = dataclasses.replace(self, **values)
        checked.check(fail)
        return checked

    def check(self, fail):
        """Checks across fields; `fail(name, problem)` raises. meProp's k must leave some rows out."""
        if self.meprop and not self.k < self.hidden:
            fail("k", f"must be smaller than the hidden size {self.hidden}, got {self.k}")

    @classmethod
    def defaults_for(cls, name):
        """What help says of a field's default: the value, and for which nets where not for all."""
        f = cls.__dataclass_fields__[name]
        description = f.metadata["about"]
        if description.default_text:
            return description.default_text
        if f.default is None or f.default is False:
            return None
        choices, nets = about(cls, "net").choices, cls.nets_of(name)
        if nets is not None and set(nets) != set(choices):
            return f"{f.default} with --net {', '.join(net for net in choices if net in nets)}"
        if description.optims is not None:
            return f"{f.default} with --optim {', '.join(description.optims)}"
        return str(f.default)


def value_type(f):
    """int for an `int` or `Optional[int]` field, and so on."""
    args = [arg for arg in typing.get_args(f.type) if arg is not type(None)]
    return args[0] if args else f.type


def check_value(f, value, fail):
    """One field's value, checked for type and range as its description says; returned as the field's
    plain Python type (numpy's scalars and paths are welcome from Python)."""
    description, kind = f.metadata["about"], value_type(f)
    if value is None:
        if f.default is not None:
            fail(f.name, "must be given a value")
        return None
    if kind is bool and not isinstance(value, (bool, np.bool_)):
        fail(f.name, f"must be true or false, got {value!r}")
    if kind is int and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)):
        fail(f.name, f"must be a whole number, got {value!r}")
    if kind is float and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)):
        fail(f.name, f"must be a number, got {value!r}")
    if kind is float and not math.isfinite(value):
        fail(f.name, f"must be a finite number, got {value!r}")
    if kind is str and description.path and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if kind is str and not isinstance(value, str):
        fail(f.name, f"must be a string, got {value!r}")
    value = kind(value)
    if description.choices and value not in description.choices:
        fail(f.name, f"{value!r} is not one of {', '.join(description.choices)}")
    bounds = [(description.at_least, "at least", lambda bound: value >= bound),
              (description.above, "above", lambda bound: value > bound),
              (description.below, "below", lambda bound: value < bound),
              (description.at_most, "at most", lambda bound: value <= bound)]
    for bound, words, holds in bounds:
        if bound is not None and not holds(bound):
            fail(f.name, f"must be {words} {bound:g}, got {value}")
    return value


def resolve_seed(seed):
    """nnmnist's rule: a negative seed means a seed from the clock. Returns the seed actually used."""
    return seed if seed >= 0 else time.time_ns() % (2 ** 31)


def make_settings(cls, config=None, options=None):
    """The class's defaults, then a config file's (`config`: (path, {field: value}, the defaults of the
    fields the file leaves out), as read_nnmnist_config gives it), then command-line options (None: not
    given); checked."""
    values = {}
    source = {}
    if config is not None:
        path, from_file, file_defaults = config
        unknown = sorted(set(from_file) - {f.name for f in cls.fields()})
        if unknown:
            raise ConfigError(f"{path}: {', '.join(unknown)}: not settings of {cls.__name__}")
        values.update(file_defaults)
        values.update(from_file)
        source = {name: path for name in from_file}
    given = {name: value for name, value in (options or {}).items() if value is not None}
    values.update(given)
    for name in given:
        source.pop(name, None)
    return cls(**values).checked(given=set(given) | set(source), source=source)


def nnmnist_keys(cls):
    """nnmnist key -> field name, for the task's settings class."""
    return {about(cls, f.name).key: f.name for f in cls.fields() if about(cls, f.name).key}


def read_nnmnist_config(cls, path):
    """(path, {field: value}, nnmnist's defaults) of an nnmnist JSON file: the settings it sets, and
    nnmnist's defaults for those it leaves out (make_settings takes both). Relative data paths resolve
    against the file's folder."""
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
    keys = nnmnist_keys(cls)
    values = {}
    folder = os.path.dirname(os.path.abspath(path))
    for key, value in raw.items():
        if key not in keys:
            close = get_close_matches(key, keys, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; the keys are {', '.join(sorted(keys))}"
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
        name = keys[key]
        kind = value_type(cls.__dataclass_fields__[name])
        if about(cls, name).path:
            value = _data_path(path, key, value, folder)
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif kind is int and isinstance(value, float) and value.is_integer():  # nnmnist writes 10.0 for 10
            value = int(value)
        values[name] = value
    return path, values, cls.nnmnist_defaults


def _refusing_repeated_keys(path):
    """json's object_pairs_hook: a key given twice is an error (json alone keeps the last silently)."""
    def to_dict(pairs):
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ConfigError(f"{path}: {', '.join(repeated)} given twice; keep one")
        return dict(pairs)
    return to_dict


def _data_path(path, key, value, folder):
    """A data file named in a config: against the config file's folder first (giving an absolute path);
    if no file is there, the relative name is left for the data dir (not the working folder)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {key} must be a file path (a string) or null, got {value!r}")
    if os.path.isabs(value):
        return value
    beside = os.path.join(folder, value)
    return os.path.abspath(beside) if os.path.isfile(beside) else value
