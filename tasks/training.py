"""The training loop shared by the tasks, as in nnmnist.

Each epoch the training set is shuffled and cut into IterPerEpoch parts. After each
part the dev set is evaluated; when dev improves, the test set is evaluated and the
model saved. The result reported is the test accuracy at the best dev.

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

A task gives: `train_size`, `train_step(indices)` -> (summed loss, correct count, predictions made),
`evaluate(split)` -> (mean loss, accuracy %, {other score: value}), `product_layers()`, `model_arrays()`,
`model` (its `params()`), `optimizer`, `simplifier` (or None), `timers` (a Timers it fills in during
train_step), `score_name` (what the log calls evaluate's accuracy) and `meta` (the model description
that model.npz keeps; start_run records its `data_files`).
"""
import dataclasses
import os
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import click
import numpy as np

from tinyprop.tasks.config import ConfigError
from tinyprop.tasks.files import append_jsonl, write_json, write_npz
from tinyprop.layers import SoftmaxCrossEntropy
from tinyprop.optim import SGD, AdaGrad, Adam


@dataclass
class Timers:
    """Seconds summed over the run, as in the papers' tables."""
    forward: float = 0.0
    backward: float = 0.0
    update: float = 0.0


class TrainingDiverged(Exception):
    pass


def peak_memory_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_parts(task, settings):
    if settings.iter_per_epoch > task.train_size:
        raise ConfigError(f"--iter-per-epoch (IterPerEpoch): {settings.iter_per_epoch} parts of an epoch, but the "
                          f"training set has only {task.train_size} examples to cut into them")


def start_run(task, settings, seed, out_dir, ignored=()):
    """Check what only the data can tell, then create out_dir with config.json: the settings but those
    the task ignores, the seed used and the data files (those the task's model description records,
    tasks.files.training_data)."""
    check_parts(task, settings)
    os.makedirs(out_dir, exist_ok=True)
    used = {name: value for name, value in dataclasses.asdict(settings).items() if name not in ignored}
    write_json(os.path.join(out_dir, "config.json"), dict(used, seed_used=seed, data_files=task.meta["data_files"]))


def train(task, settings, seed, out_dir, log=print):
    """Run the epochs; write metrics.jsonl, model.npz (at best dev) and summary.json to out_dir
    (which start_run has made, after its checks)."""
    rng = np.random.default_rng(seed)
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    open(metrics_path, "w").close()
    best = {"dev_acc": -1.0, "test_acc": None, "epoch": None, "part": None}
    start = time.perf_counter()
    train_seconds = 0.0
    for epoch in range(1, settings.epochs + 1):
        cycle = (epoch - 1) // settings.train_cycle
        if task.simplifier is not None and epoch > 1 and (epoch - 1) % settings.train_cycle == 0:
            task.optimizer.reset()
        parts = np.array_split(rng.permutation(task.train_size), settings.iter_per_epoch)
        for part, indices in enumerate(parts, 1):
            part_start = time.perf_counter()
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run ends just below, with advice
                loss, correct, count = train_part(task, indices, settings.batch, f"epoch {epoch} part {part}")
            train_seconds += time.perf_counter() - part_start
            if not np.isfinite(loss):
                raise TrainingDiverged(f"epoch {epoch} part {part}: the training loss is {loss}; lower the "
                                       "learning rate (--lr), or clip the gradients (a small --clip-bound)")
            record = dict(epoch=epoch, part=part, train_loss=loss / count, train_acc=100.0 * correct / count)
            record.update(evaluation(task, "dev"))
            if task.simplifier is not None:
                record["hidden_sizes"] = task.simplifier.sizes()  # of the model just evaluated
            if record["dev_acc"] > best["dev_acc"]:
                record.update(evaluation(task, "test"))
                best = {key: value for key, value in record.items() if key.startswith(("dev_", "test_"))}
                best.update(epoch=epoch, part=part)
                if task.simplifier is not None:
                    best.update(saved_hidden_sizes=record["hidden_sizes"],
                                saved_param_count=param_count(task.model.params()))
                write_npz(os.path.join(out_dir, "model.npz"), task.model_arrays())
            if task.simplifier is not None and cycle % 2 == 0:
                task.simplifier.prune()
                record["pruned_sizes"] = task.simplifier.sizes()
            record["elapsed_s"] = time.perf_counter() - start
            append_jsonl(metrics_path, record)
            log(format_record(record, settings, task.score_name))
            if "pruned_sizes" in record:
                log(f"  dims: {task.simplifier.describe()}")
    summary = {f"best_{key}" if key.startswith("dev_") else key: value
               for key, value in best.items() if key not in ("epoch", "part", "dev_loss", "test_loss")}
    summary.update(
        best_epoch=best["epoch"], best_part=best["part"],
        train_time_s=train_seconds, forward_time_s=task.timers.forward, backward_time_s=task.timers.backward,
        # the papers' "backprop time": every matrix-product layer (Linear, and Conv2d, LSTM where the task has them)
        linear_backward_time_s=sum(layer.backward_seconds for layer in task.product_layers()),
        update_time_s=task.timers.update, wall_time_s=time.perf_counter() - start,
        peak_memory_mb=peak_memory_mb(),
    )
    return summary


class ClassifierTask:
    """What the classifier tasks share: the model, its optimizer, meSimp (or None), the softmax
    loss, the timers, and the training step. `score_name`: what `evaluate`'s accuracy is, in the log."""

    score_name = "acc"

    def __init__(self, model, optimizer, meta, simplifier=None):
        self.model = model
        self.optimizer = optimizer
        self.meta = meta
        self.simplifier = simplifier
        self.loss = SoftmaxCrossEntropy()
        self.timers = Timers()

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
        self.timers.forward += after_forward - start
        self.timers.backward += time.perf_counter() - after_forward
        return loss, int((logits.argmax(axis=1) == targets).sum())

    def update(self):
        """The optimizer's step on the accumulated gradients, then clear them; timed."""
        start = time.perf_counter()
        self.optimizer.step()
        self.model.zero_grad()
        self.timers.update += time.perf_counter() - start

    @contextmanager
    def evaluating(self):
        """Dropout off inside the block and on again after it, also when the block raises."""
        self.model.train(False)
        try:
            yield
        finally:
            self.model.train(True)


def param_count(params):
    """How many numbers the parameters hold."""
    return int(sum(param.value.size for param in params))


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


def write_summary(out_dir, summary):
    write_json(os.path.join(out_dir, "summary.json"), summary)


OPTIMIZER_CLASSES = {"adam": Adam, "adagrad": AdaGrad, "sgd": SGD}


def make_optimizer(settings, params, train_size):
    """The optimizer nnmnist's OptType names, with its ClipBound, L2RegFactor, DecayRate and Eps."""
    common = dict(clip_bound=settings.clip_bound, l2=settings.l2, dense_updates=settings.dense_updates)
    own = {"adam": {}, "adagrad": dict(eps=settings.eps),
           "sgd": dict(decay_rate=settings.decay_rate, decay_steps=train_size or 1)}[settings.optim]
    return OPTIMIZER_CLASSES[settings.optim](params, lr=settings.lr, **own, **common)
