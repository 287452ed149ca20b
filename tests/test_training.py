"""The training loop shared by the tasks: best-dev bookkeeping, meSimp's cycles, the split check."""
import json

import numpy as np
import pytest

from tasks.config import ConfigError, make_settings
from tasks.training import Timers, start_run, train


class ScriptedTask:
    """Enough of a task to watch the training loop: dev scores follow a script, the n-th test evaluation
    scores 10 n, and the task is its own optimizer and simplifier (it records when they are called)."""

    train_size = 4
    score_name = "acc"
    meta = {"data_files": {}}

    def __init__(self, dev_scores=None, simplified=True):
        self.simplifier = self if simplified else None
        self.optimizer = self.model = self
        self.dev_scores = list(dev_scores or [])
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
        return 0.0, 0, len(indices)

    def evaluate(self, split):
        if split == "dev":
            return 0.0, self.dev_scores.pop(0) if self.dev_scores else 50.0, {}
        self.test_evaluations += 1
        return 0.0, 10.0 * self.test_evaluations, {}

    def product_layers(self):
        return []

    def model_arrays(self):
        return {"w": np.zeros(1)}


def test_the_test_score_reported_is_the_one_at_the_first_best_dev(tmp_path):
    task = ScriptedTask([50.0, 70.0, 70.0, 60.0], simplified=False)
    settings = make_settings({}, dict(net="mlptop", epochs=2, iter_per_epoch=2, batch=2))
    summary = train(task, settings, seed=0, out_dir=str(tmp_path), log=lambda line: None)
    assert task.test_evaluations == 2  # after dev 50 (better than nothing) and 70; not after the tie or 60
    assert (summary["best_epoch"], summary["best_part"]) == (1, 2)
    assert summary["best_dev_acc"] == 70.0 and summary["test_acc"] == 20.0


def test_cycles_prune_in_even_cycles_and_reset_the_optimizer_at_each_cycle_start(tmp_path):
    task = ScriptedTask()
    settings = make_settings({}, dict(net="mlpvar", epochs=5, train_cycle=2, iter_per_epoch=2, batch=2))
    lines = []
    train(task, settings, seed=0, out_dir=str(tmp_path), log=lines.append)
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    pruned = [(r["epoch"], r["part"]) for r in records if "pruned_sizes" in r]
    assert pruned == [(1, 1), (1, 2), (2, 1), (2, 2), (5, 1), (5, 2)]  # cycles 0 and 2 prune; cycle 1 does not
    assert task.prunings == 6 and sum(line.startswith("  dims:") for line in lines) == 6
    assert task.steps_at_reset == [4, 8]  # before the first step of epochs 3 and 5 (2 steps an epoch)


def test_more_parts_than_examples_is_a_config_error(tmp_path):
    settings = make_settings({}, dict(net="mlpvar", epochs=1, iter_per_epoch=5))
    with pytest.raises(ConfigError, match=r"--iter-per-epoch \(IterPerEpoch\): 5 parts of an epoch, "
                                          r"but the training set has only 4 examples"):
        start_run(ScriptedTask(), settings, seed=0, out_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
