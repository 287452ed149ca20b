"""What every task shares: the Task it declares, the training loop (as in nnmnist), and its checkpoints.

Each epoch the training set is shuffled and cut into IterPerEpoch parts. After each part the
dev set is evaluated; when dev improves, the test set is evaluated and the model saved. The
result reported is the test accuracy at the best dev. After each part's metrics line, the
loop writes a checkpoint of its whole state (`Checkpoint`), from which `--resume` goes on as
if the run had not stopped.

meSimp (a task whose `simplifier` is not None) trains in cycles of TrainCycle epochs
(TKDE 2018, Section 2.2, "Cycled Training"): the optimizer is re-initialised at the
start of each cycle; in even cycles (the first is cycle 0) the model is simplified
after every part, once it has been evaluated (and saved, if dev improved), as nnmnist
does; odd cycles train on (still with meProp) without simplifying; the record keeps
counting through them, as in nnmnist, so a cycle's first pruning judges by all the
examples since the last one (the threshold scales with their number). A TrainCycle >=
MaxEpoch simplifies throughout. Each metrics line of a meSimp run has `hidden_sizes`, those
of the model it scores, and after a pruning `pruned_sizes`; the summary has
`saved_hidden_sizes` and `saved_param_count`, those of the model in model.npz (whose test
score it reports), beside the task's final `hidden_sizes` and `param_count`.

meAct (a task whose `activator` is not None; TKDE 2018, Section 3.5) selects each example's active
units before epoch ActAfter + 1 (tinyprop.meact); each of its metrics lines says whether the part
trained on them (`meact`), and, with `update_sizes` (`UpdateSizes`), each line has the part's average
absolute parameter change per update (`update_size`).
"""
import json
import math
import os
import resource
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Optional

import click
import numpy as np

from tinyprop.layers import SoftmaxCrossEntropy
from tinyprop.optim import SGD, AdaGrad, Adam
from tinyprop.tasks.files import DataError, append_jsonl, write_json, write_npz


class TrainingDiverged(Exception):
    pass


# A part whose mean training loss per prediction exceeds this many times the untrained model's (ln of the
# number of classes, for uniform scores) has diverged: a model that bad assigns its targets e^-(that) or less.
DIVERGED_FACTOR = 100


class Task:
    """A task as the shared run drives it: one subclass per task module, registered in tinyprop.tasks.

    Class-level steps, in the order the run takes them (settings -> data -> model -> task):
      `Settings`                                   its settings class (tinyprop.tasks.settings)
      `locate(settings)` -> {key: path}            its data files
      `load(paths, limit, splits, meta=None)`      the data (encoded with meta's vocabulary, if given)
      `check(settings, data)`                      what only the data can tell: ConfigError or DataError
      `describe(settings, data)` -> meta           the model description that model.npz keeps
      `build_model(meta, rng, dropout)` -> model   the model a description names
      `simplified_pairs(model)`                    meSimp's (layer, consumer) pairs
      `check_description(path, meta, arrays)`      a saved description's sizes against its arrays
      `check_saved(meta, data)`                    the data a saved model is scored on
      `predict(model, meta, stream, name, log)`    a saved model's output text on an input (tinyprop predict)
    An instance, made of (data, model, meta), gives what the loop drives: `train_size`,
    `train_step(indices)` -> (summed loss, correct, predictions), `evaluate(split)` -> (mean loss, score %,
    {other score: value}), `product_layers()` (the papers' "backprop time"; `product_layers_text()` names
    them), `hidden_sizes()`, `current_meta()`, `n_classes`, `score_name`; what it adds to the log
    (`describe_run`) and the summary (`summary_fields`, `simplified_fields`); and, if it has predictions to
    write, `write_output(path)`.
    """

    Settings = None
    name = None
    score_name = "acc"  # what the log calls evaluate's score

    def __init__(self, data, model, meta):
        self.data = data
        self.model = model
        self.meta = meta
        self.loss = SoftmaxCrossEntropy()
        self.loss.reuse_buffers()  # a step is done with dL/dz when the model's backward returns, as with the layers'
        self.timers = Timers()
        self.optimizer = None
        self.simplifier = None
        self.activator = None  # meAct's (tinyprop.meact.MinimalEffortActivation), set by the run
        self.update_sizes = None  # an UpdateSizes, when the run records them
        self.rng = None  # the model's random stream (dropout, random k), set by the run

    @property
    def train_size(self):
        return self.data.train_size

    @classmethod
    def check(cls, settings, data):
        """What only the data can tell; the base has nothing to check."""

    @classmethod
    def check_saved(cls, meta, data):
        """What only the data can tell about scoring a saved model on it; the base has nothing to check."""

    @classmethod
    def simplified_pairs(cls, model):
        raise NotImplementedError(f"{cls.name} has no meSimp net")

    def current_meta(self):
        """The model description with the current (meSimp-simplified) sizes."""
        return dict(self.meta, hidden=self.hidden_sizes())

    def model_arrays(self):
        """What model.npz holds: a copy of each parameter's value under its name (the checkpoint keeps it
        while training changes the parameters in place), and the description under "meta"."""
        arrays = {param.name: param.value.copy() for param in self.model.params()}
        arrays["meta"] = np.array(json.dumps(self.current_meta()))
        return arrays

    def summary_fields(self, settings):
        """What the task adds to summary.json."""
        return {}

    def simplified_fields(self, saved_model, log):
        """What a meSimp run adds to summary.json; saved_model() gives the model in model.npz."""
        return {}

    def step(self, x, targets):
        """One mini-batch: gradients, then the update. Returns (summed loss, correct, predictions)."""
        loss, correct = self.accumulate(x, targets)
        self.update()
        return loss, correct, targets.shape[0]

    def accumulate(self, x, targets):
        """Forward, loss and backward (which meSimp records), adding to the gradients; timed.

        The input needs no gradient. Returns (summed loss, correct predictions).
        """
        start = time.perf_counter()
        logits = self.model.forward(x)
        loss = self.loss.forward(logits, targets)
        after_forward = time.perf_counter()
        self.model.backward(self.loss.backward(), need_dx=False)
        if self.simplifier is not None:
            self.simplifier.observe()
        if self.activator is not None:
            self.activator.observe()
        self.timers.forward += after_forward - start
        self.timers.backward += time.perf_counter() - after_forward
        return loss, int((logits.argmax(axis=1) == targets).sum())

    def update(self):
        """The optimizer's step on the accumulated gradients, then clear them; timed (the update sizes' measure
        is not)."""
        if self.update_sizes is not None:
            self.update_sizes.before()
        start = time.perf_counter()
        self.optimizer.step(zero_grad=True)  # the optimizer holds every parameter of the model
        self.timers.update += time.perf_counter() - start
        if self.update_sizes is not None:
            self.update_sizes.after()

    @contextmanager
    def evaluating(self):
        """Dropout off inside the block and on again after it, also when the block raises."""
        self.model.train(False)
        try:
            yield
        finally:
            self.model.train(True)


@dataclass
class Timers:
    """Seconds summed over the run, as in the papers' tables."""
    forward: float = 0.0
    backward: float = 0.0
    update: float = 0.0


class UpdateSizes:
    """The average absolute parameter change per update (TKDE 2018, Figure 4, right, and its footnote 2: the
    change, not the gradient, which Adam rescales), since the last `take`: per parameter, the mean over its
    entries and the updates of |w_after - w_before|, and over all the parameters' entries ("all").

    Each update copies the parameters before it and compares after, so the measure costs about three passes
    over them a step, outside the update's timer.
    """

    def __init__(self, params):
        self.params = list(params)
        self.clear()

    def clear(self):
        self.sums = np.zeros(len(self.params))
        self.updates = 0
        self._before = [None] * len(self.params)

    def before(self):
        for i, param in enumerate(self.params):
            if self._before[i] is None or self._before[i].shape != param.shape:  # meSimp changes shapes
                self._before[i] = np.empty_like(param.value)
            np.copyto(self._before[i], param.value)

    def after(self):
        for i, param in enumerate(self.params):
            change = np.subtract(param.value, self._before[i], out=self._before[i])
            self.sums[i] += np.abs(change, out=change).sum(dtype=np.float64)
        self.updates += 1

    def take(self):
        """{"all": ..., parameter name: ...} since the last take (None if no update), then clear."""
        if not self.updates:
            return None
        sizes = np.array([param.value.size for param in self.params])
        taken = {"all": float(self.sums.sum() / sizes.sum() / self.updates)}
        taken.update({param.name: float(total / size / self.updates)
                      for param, total, size in zip(self.params, self.sums, sizes)})
        self.clear()
        return taken


def peak_memory_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def param_count(params):
    """How many numbers the parameters hold."""
    return int(sum(param.value.size for param in params))


@dataclass
class Progress:
    """Where a run is, besides its arrays: what a checkpoint's "progress" holds.

    epoch, parts_done: the last part trained; shuffle_state: the shuffling generator's state at that
    epoch's start (its permutation is drawn again on resume); metrics_lines: how many lines of
    metrics.jsonl the checkpoint covers; best: the best dev's scores and place; the seconds so far.
    """
    epoch: int = 1
    parts_done: int = 0
    shuffle_state: Optional[dict] = None
    metrics_lines: int = 0
    best: Optional[dict] = None
    train_seconds: float = 0.0
    elapsed_seconds: float = 0.0


CHECKPOINT = "checkpoint.npz"


class Checkpoint:
    """A run's whole state, written atomically to OUT/checkpoint.npz after each evaluation.

    Arrays: every parameter ("param/NAME") and its optimizer state ("state/NAME/MOMENT"), the best
    dev's model.npz arrays ("best/NAME"; resume writes model.npz from them, so that the two never
    disagree), meSimp's record ("record/I/FIELD"), meAct's accumulators or active sets ("meact/NAME/I").
    JSON ("progress"): `Progress`, the settings, the optimizer's step count, the model's random state, the
    timers (each product layer's backward too), the current model description (meSimp's sizes), meSimp's
    other record fields and original sizes, meAct's other fields ("meact").
    """

    @staticmethod
    def write(out_dir, task, settings, progress, best_arrays):
        arrays = {}
        for param in task.model.params():
            arrays[f"param/{param.name}"] = param.value
            arrays.update({f"state/{param.name}/{name}": value for name, value in param.state.items()})
        arrays.update({f"best/{name}": value for name, value in (best_arrays or {}).items()})
        records = []
        if task.simplifier is not None:
            for i, record in enumerate(task.simplifier.records):
                kept = {}
                for name, value in vars(record).items():
                    if isinstance(value, np.ndarray):
                        arrays[f"record/{i}/{name}"] = value
                    else:
                        kept[name] = value
                records.append(kept)
        if task.activator is not None:
            arrays.update({f"meact/{name}": value for name, value in task.activator.arrays().items()})
        state = dict(
            progress=asdict(progress), settings=asdict(settings), optimizer_steps=task.optimizer.steps,
            model_rng=task.rng.bit_generator.state, timers=asdict(task.timers),
            layer_backward_seconds=[layer.backward_seconds for layer in task.product_layers()],
            meta=task.current_meta(), records=records,
            original_sizes=task.simplifier.original_sizes if task.simplifier is not None else None,
            meact=task.activator.fields() if task.activator is not None else None)
        arrays["progress"] = np.array(json.dumps(state))
        write_npz(os.path.join(out_dir, CHECKPOINT), arrays)

    @staticmethod
    def read(out_dir):
        """(state, arrays) of OUT/checkpoint.npz, or None if the run stopped before its first evaluation."""
        path = os.path.join(out_dir, CHECKPOINT)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
            return json.loads(str(arrays.pop("progress"))), arrays
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(f"{path}: cannot read it as a tinyprop checkpoint ({error})") from error

    @staticmethod
    def restore(path, task, state, arrays):
        """Put a checkpoint's state into a task built from its model description; returns
        (Progress, the best dev's model.npz arrays). `path`: the checkpoint, for messages."""
        try:
            for param in task.model.params():
                targets = [(f"param/{param.name}", param.value)]
                targets += [(f"state/{param.name}/{name}", value) for name, value in param.state.items()]
                for name, target in targets:
                    if arrays[name].shape != target.shape:
                        raise ValueError(f"{name} has shape {arrays[name].shape}, the model {target.shape}")
                    target[...] = arrays[name]
            task.optimizer.steps = int(state["optimizer_steps"])
            task.rng.bit_generator.state = state["model_rng"]
            task.timers = Timers(**state["timers"])
            layers = task.product_layers()
            if len(layers) != len(state["layer_backward_seconds"]):
                raise ValueError("its timers are of another model")
            for layer, seconds in zip(layers, state["layer_backward_seconds"]):
                layer.backward_seconds = float(seconds)
            if task.simplifier is not None:
                task.simplifier.original_sizes = list(state["original_sizes"])
                for i, (record, kept) in enumerate(zip(task.simplifier.records, state["records"], strict=True)):
                    vars(record).update(kept)
                    vars(record).update({name[len(f"record/{i}/"):]: value for name, value in arrays.items()
                                         if name.startswith(f"record/{i}/")})
            if task.activator is not None:
                task.activator.restore(state["meact"], {name[len("meact/"):]: value for name, value in arrays.items()
                                                        if name.startswith("meact/")})
            progress = Progress(**state["progress"])
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{path}: does not fit the run's model and settings ({error}); it is damaged or from "
                            "another run") from error
        best = {name[len("best/"):]: value for name, value in arrays.items() if name.startswith("best/")}
        return progress, best


def train(task, settings, seed, out_dir, log=print, resumed=None):
    """Run the epochs; write metrics.jsonl, model.npz (at best dev) and a checkpoint after each part.
    `resumed`: (Progress, best model arrays) from a checkpoint, to go on from. Returns the summary's
    training fields."""
    shuffle = np.random.default_rng(seed)
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    progress, best_arrays = resumed or (Progress(best={"dev_acc": -1.0}), None)
    if resumed is None:
        open(metrics_path, "w").close()
    start = time.perf_counter() - progress.elapsed_seconds
    bound = DIVERGED_FACTOR * math.log(task.n_classes)
    for epoch in range(progress.epoch, settings.epochs + 1):
        cycle = (epoch - 1) // settings.train_cycle if task.simplifier is not None else None
        if epoch == progress.epoch and progress.shuffle_state is not None:
            shuffle.bit_generator.state = progress.shuffle_state  # this epoch's permutation, drawn again
            first_part = progress.parts_done + 1
        else:
            first_part = 1
            if task.simplifier is not None and epoch > 1 and (epoch - 1) % settings.train_cycle == 0:
                task.optimizer.reset()
        if task.activator is not None and task.activator.start_epoch(epoch):
            log(f"meAct from epoch {epoch}: active units per example {task.activator.describe()}")
        shuffle_state = shuffle.bit_generator.state
        parts = np.array_split(shuffle.permutation(task.train_size), settings.iter_per_epoch)
        for part in range(first_part, settings.iter_per_epoch + 1):
            part_start = time.perf_counter()
            if task.update_sizes is not None:
                task.update_sizes.clear()
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run ends just below, with advice
                loss, correct, count = train_part(task, parts[part - 1], settings.batch, f"epoch {epoch} part {part}")
            progress.train_seconds += time.perf_counter() - part_start
            if not loss / count <= bound:  # NaN too
                raise TrainingDiverged(
                    f"epoch {epoch} part {part}: the mean training loss is {loss / count:.4g} per prediction, above "
                    f"{DIVERGED_FACTOR} x ln({task.n_classes}) = {bound:.0f} ({DIVERGED_FACTOR} times an untrained "
                    "model's): training has diverged; lower the learning rate (--lr), or clip the gradients (a "
                    "small --clip-bound)")
            record = dict(epoch=epoch, part=part, train_loss=loss / count, train_acc=100.0 * correct / count)
            if task.update_sizes is not None:
                record["update_size"] = task.update_sizes.take()
            if task.activator is not None:
                task.activator.count_part(record["update_size"])
                record.update(task.activator.record_fields())
            record.update(evaluation(task, "dev"))
            if task.simplifier is not None:
                record["hidden_sizes"] = task.simplifier.sizes()  # of the model just evaluated
            if record["dev_acc"] > progress.best["dev_acc"]:
                record.update(evaluation(task, "test"))
                progress.best = {key: value for key, value in record.items() if key.startswith(("dev_", "test_"))}
                progress.best.update(epoch=epoch, part=part)
                if task.simplifier is not None:
                    progress.best.update(saved_hidden_sizes=record["hidden_sizes"],
                                         saved_param_count=param_count(task.model.params()))
                best_arrays = task.model_arrays()
                write_npz(os.path.join(out_dir, "model.npz"), best_arrays)
            if task.simplifier is not None and cycle % 2 == 0:
                task.simplifier.prune()
                record["pruned_sizes"] = task.simplifier.sizes()
            record["elapsed_s"] = time.perf_counter() - start
            append_jsonl(metrics_path, record)
            progress.epoch, progress.parts_done, progress.shuffle_state = epoch, part, shuffle_state
            progress.metrics_lines += 1
            progress.elapsed_seconds = time.perf_counter() - start
            Checkpoint.write(out_dir, task, settings, progress, best_arrays)
            log(format_record(record, settings, task.score_name))
            if "pruned_sizes" in record:
                log(f"  dims: {task.simplifier.describe()}")
    best = progress.best
    summary = {f"best_{key}" if key.startswith("dev_") else key: value
               for key, value in best.items() if key not in ("epoch", "part", "dev_loss", "test_loss")}
    summary.update(
        best_epoch=best["epoch"], best_part=best["part"],
        train_time_s=progress.train_seconds, forward_time_s=task.timers.forward,
        backward_time_s=task.timers.backward,
        # the papers' "backprop time": every matrix-product layer (Linear, and Conv2d, LSTM where the task has them)
        linear_backward_time_s=sum(layer.backward_seconds for layer in task.product_layers()),
        update_time_s=task.timers.update, wall_time_s=time.perf_counter() - start,
        peak_memory_mb=peak_memory_mb(),
    )
    return summary


def evaluation(task, split):
    """A split's scores as record fields: {split}_loss, {split}_acc and the task's others ({split}_las ...)."""
    loss, accuracy, others = task.evaluate(split)
    loss = None if np.isnan(loss) else loss  # parsing has no loss on dev/test; JSON has no NaN
    return {f"{split}_loss": loss, f"{split}_acc": accuracy, **{f"{split}_{key}": value for key, value in others.items()}}


ERASE_LAST_LINE = "\x1b[F\x1b[K"  # ANSI: to the start of the line above, and clear it


def train_part(task, indices, batch, label):
    """Train on one part in mini-batches; a progress bar shows on a terminal."""
    starts = range(0, len(indices), batch)
    total_loss, total_correct, total_count = 0.0, 0, 0
    show = sys.stderr.isatty()
    # width=0: the bar takes what the terminal's width leaves, so that the line wraps only on a terminal narrower than
    # the label and percentage (about 30 columns): the erase below clears one line
    with click.progressbar(starts, label=label, file=sys.stderr, update_min_steps=50, width=0,
                           hidden=not show) as bar:
        for first in bar:
            loss, correct, count = task.train_step(indices[first:first + batch])
            total_loss += loss
            total_correct += correct
            total_count += count
    if show:  # the part's log line (on stdout) takes the finished bar's place: erase it now, not at the next flush
        sys.stderr.write(ERASE_LAST_LINE)
        sys.stderr.flush()
    return total_loss, total_correct, total_count


def format_record(record, settings, score_name="acc"):
    """One log line; `score_name` is what the task's dev and test `acc` is (the parser's is UAS)."""
    line = (f"epoch {record['epoch']:2d} part {record['part']}/{settings.iter_per_epoch}  "
            f"train loss {record['train_loss']:.4f} acc {record['train_acc']:.2f}")
    for split in ("dev", "test"):
        if f"{split}_acc" in record:
            scores = []
            for key, value in record.items():
                if key.startswith(split + "_") and value is not None:
                    name = key[len(split) + 1:]
                    scores.append(f"{name} {value:.4f}" if name == "loss" else
                                  f"{score_name if name == 'acc' else name} {value:.2f}")
            line += f"  {split} " + " ".join(scores)
    if "test_acc" in record:
        line += " *"
    return line + f"  {record['elapsed_s']:.1f}s"


OPTIMIZER_CLASSES = {"adam": Adam, "adagrad": AdaGrad, "sgd": SGD}


def make_optimizer(settings, params, train_size):
    """The optimizer nnmnist's OptType names, with its ClipBound, L2RegFactor, DecayRate and Eps."""
    common = dict(clip_bound=settings.clip_bound, l2=settings.l2, dense_updates=bool(settings.dense_updates))
    own = {"adam": {}, "adagrad": dict(eps=settings.eps),
           "sgd": dict(decay_rate=settings.decay_rate, decay_steps=train_size or 1)}[settings.optim]
    return OPTIMIZER_CLASSES[settings.optim](params, lr=settings.lr, **own, **common)


def write_summary(out_dir, summary):
    write_json(os.path.join(out_dir, "summary.json"), summary)
