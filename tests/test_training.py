"""The training loop shared by the tasks: best-dev bookkeeping, meSimp's cycles, the split check."""
import io
import json
import re
import time

import numpy as np
import pytest

from tinyprop.tasks.mnist import MnistSettings
from tinyprop.tasks.run import check_data
from tinyprop.tasks.settings import ConfigError
from tinyprop.tasks.training import (ERASE_LAST_LINE, Task, Timers, TrainingDiverged, format_record, make_optimizer,
                                     peak_memory_mb, train)
from tinyprop.optim import SGD, AdaGrad, Adam
from tinyprop.parameter import Parameter


class ScriptedTask:
    """Enough of a task to watch the training loop: dev scores follow a script, the n-th test evaluation
    scores 10 n, each training step returns `loss` and `correct`, each evaluation takes `eval_seconds`,
    and the task is its own optimizer and simplifier (it records when they are called)."""

    train_size = 4
    n_classes = 10
    score_name = "acc"
    meta = {"data_files": {}}
    records = []
    original_sizes = [1]
    activator = update_sizes = None  # no meAct, no update sizes

    def __init__(self, dev_scores=None, simplified=True, loss=0.0, correct=0, eval_seconds=0.0):
        self.simplifier = self if simplified else None
        self.optimizer = self.model = self
        self.rng = np.random.default_rng(0)
        self.dev_scores = list(dev_scores or [])
        self.loss, self.correct, self.eval_seconds = loss, correct, eval_seconds
        self.steps = self.prunings = self.test_evaluations = 0
        self.steps_at_reset = []
        self.timers = Timers()

    def reset(self):
        self.steps_at_reset.append(self.steps)

    def params(self):
        return []

    def prune(self):
        self.prunings += 1

    def sizes(self):
        return [1]

    def describe(self):
        return "1(1)"

    def train_step(self, indices):
        self.steps += 1
        return self.loss, self.correct, len(indices)

    def evaluate(self, split):
        time.sleep(self.eval_seconds)
        if split == "dev":
            return 0.0, self.dev_scores.pop(0) if self.dev_scores else 50.0, {}
        self.test_evaluations += 1
        return 0.0, 10.0 * self.test_evaluations, {}

    def product_layers(self):
        return []

    def model_arrays(self):
        return {"w": np.zeros(1)}

    def current_meta(self):
        return self.meta


def make_settings(options):
    return MnistSettings(**options).checked()


def test_the_test_score_reported_is_the_one_at_the_first_best_dev(tmp_path):
    task = ScriptedTask([50.0, 70.0, 70.0, 60.0], simplified=False)
    settings = make_settings(dict(net="mlptop", epochs=2, iter_per_epoch=2, batch=2))
    summary = train(task, settings, seed=0, out_dir=str(tmp_path), log=lambda line: None)
    assert task.test_evaluations == 2  # after dev 50 (better than nothing) and 70; not after the tie or 60
    assert (summary["best_epoch"], summary["best_part"]) == (1, 2)
    assert summary["best_dev_acc"] == 70.0 and summary["test_acc"] == 20.0


def test_cycles_prune_in_even_cycles_and_reset_the_optimizer_at_each_cycle_start(tmp_path):
    task = ScriptedTask()
    settings = make_settings(dict(net="mlpvar", epochs=5, train_cycle=2, iter_per_epoch=2, batch=2))
    lines = []
    train(task, settings, seed=0, out_dir=str(tmp_path), log=lines.append)
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    pruned = [(r["epoch"], r["part"]) for r in records if "pruned_sizes" in r]
    assert pruned == [(1, 1), (1, 2), (2, 1), (2, 2), (5, 1), (5, 2)]  # cycles 0 and 2 prune; cycle 1 does not
    assert task.prunings == 6 and sum(line.startswith("  dims:") for line in lines) == 6
    assert task.steps_at_reset == [4, 8]  # before the first step of epochs 3 and 5 (2 steps an epoch)


def test_more_parts_than_examples_is_a_config_error(tmp_path):
    settings = make_settings(dict(net="mlpvar", epochs=1, iter_per_epoch=5))
    with pytest.raises(ConfigError, match=r"--iter-per-epoch \(IterPerEpoch\): 5 parts of an epoch, "
                                          r"but the training set has only 4 examples"):
        check_data(Task, settings, ScriptedTask())


def run_scripted(tmp_path, task, **options):
    settings = make_settings(dict(dict(net="mlp", epochs=1, iter_per_epoch=2, batch=2), **options))
    return train(task, settings, seed=0, out_dir=str(tmp_path), log=lambda line: None)


def test_train_time_leaves_out_evaluation(tmp_path):
    summary = run_scripted(tmp_path, ScriptedTask(simplified=False, eval_seconds=0.1))
    # two parts, each with a dev and (first part) a test evaluation of 0.1 s: at least 0.3 s of wall time
    assert summary["wall_time_s"] >= 0.3 and summary["train_time_s"] < 0.1


def test_metrics_records_hold_mean_loss_and_accuracy_in_percent(tmp_path):
    run_scripted(tmp_path, ScriptedTask(simplified=False, loss=2.0, correct=1))
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [(r["train_loss"], r["train_acc"]) for r in records] == [(1.0, 50.0), (1.0, 50.0)]  # 2 of 2 per batch


class Terminal(io.StringIO):
    """stderr on a terminal: what is written shows once flushed (it is line-buffered, and the bar's
    writes end without a newline); `screen` is what shows."""

    def __init__(self):
        super().__init__()
        self.screen = ""

    def isatty(self):
        return True

    def flush(self):
        self.screen = self.getvalue()


@pytest.mark.parametrize("columns", [50, 120])
def test_on_a_terminal_each_finished_progress_bar_is_erased_for_the_log_line(tmp_path, monkeypatch, columns):
    terminal, lines = Terminal(), []
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setenv("COLUMNS", str(columns))
    settings = make_settings(dict(net="mlp", epochs=1, iter_per_epoch=2, batch=1))
    train(ScriptedTask(simplified=False), settings, seed=0, out_dir=str(tmp_path),
          log=lambda line: lines.append((line, terminal.screen)))
    for part, (line, bars) in enumerate(lines, 1):
        assert line.startswith(f"epoch  1 part {part}/2")
        assert bars.count("100%") == part and bars.count(ERASE_LAST_LINE) == part and bars.endswith(ERASE_LAST_LINE)
    drawn = re.split("[\r\n]", re.sub("\x1b\\[[0-9;?]*[A-Za-z]", "\n", terminal.screen))  # lines, without ANSI codes
    assert max(len(text.rstrip()) for text in drawn) in range(columns - 5, columns + 1)  # never wrapped, nor short


def test_without_a_terminal_no_bar_is_drawn(tmp_path, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    run_scripted(tmp_path, ScriptedTask(simplified=False))
    assert stream.getvalue() == ""


@pytest.mark.parametrize("loss, shown", [(float("inf"), "inf"), (float("nan"), "nan"), (2 * 231.0, "231")])
def test_a_training_loss_far_above_an_untrained_models_is_divergence(tmp_path, loss, shown):
    # two examples a part: a mean loss of 231 per example is above 100 x ln(10) = 230.3
    with pytest.raises(TrainingDiverged, match=f"epoch 1 part 1: the mean training loss is {shown} per prediction, "
                                               r"above 100 x ln\(10\) = 230 \(100 times an untrained model's\)"):
        run_scripted(tmp_path, ScriptedTask(simplified=False, loss=loss))
    run_scripted(tmp_path, ScriptedTask(simplified=False, loss=2 * 230.0))  # just below: trains on


def test_format_record_marks_only_lines_with_a_test_score():
    settings = make_settings({})
    record = dict(epoch=1, part=2, train_loss=0.5, train_acc=80.0, dev_loss=0.25, dev_acc=90.0, elapsed_s=1.25)
    assert format_record(record, settings) == \
        "epoch  1 part 2/8  train loss 0.5000 acc 80.00  dev loss 0.2500 acc 90.00  1.2s"
    record.update(test_loss=None, test_acc=88.0)
    assert format_record(record, settings, "uas").endswith("test uas 88.00 *  1.2s")


def test_peak_memory_is_in_megabytes():
    """The process's peak resident size, as Linux's /proc reports it in kB (VmHWM)."""
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    assert peak_memory_mb() == pytest.approx(peak_kb / 1024, rel=0.05)


def test_make_optimizer_passes_every_setting_on():
    def made(**options):
        param = Parameter(np.zeros((2, 2), np.float32), "w")
        return make_optimizer(make_settings(options), [param], 300)
    adagrad = made(net="mlptop", optim="adagrad", eps=1e-3, dense_updates=True, clip_bound=2.0, l2=0.01, lr=0.05)
    assert isinstance(adagrad, AdaGrad)
    assert (adagrad.eps, adagrad.dense_updates, adagrad.clip_bound, adagrad.l2, adagrad.lr) == (1e-3, True, 2.0, 0.01,
                                                                                                 0.05)
    sgd = made(optim="sgd", decay_rate=0.5)
    assert isinstance(sgd, SGD) and (sgd.decay_rate, sgd.decay_steps, sgd.dense_updates) == (0.5, 300, False)
    assert isinstance(made(), Adam)
