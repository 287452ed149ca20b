"""Checkpoints and exact resume: a run interrupted anywhere and resumed ends with the files of the run left alone."""
import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest

from tinyprop.tasks import task_class
from tinyprop.tasks.files import DataError
from tinyprop.tasks.run import RunInterrupted, resume, run
from tinyprop.tasks.settings import ConfigError
from tinyprop.tasks.training import Checkpoint

pytestmark = pytest.mark.data

MNIST = dict(max_examples=300, epochs=2, iter_per_epoch=2, seed=3)
POS = dict(max_examples=30, hidden=40, epochs=2, iter_per_epoch=2, seed=3)
PARSE = dict(max_examples=60, hidden=60, batch=500, epochs=2, iter_per_epoch=2, seed=3)
RUNS = {  # every net that trains differently, with dropout where it draws random numbers
    "mnist-mlp": ("mnist", dict(MNIST, net="mlp", dropout=0.2)),
    "mnist-mlptop": ("mnist", dict(MNIST, net="mlptop", k=40)),
    "mnist-unified": ("mnist", dict(MNIST, net="mlptop", k=40, unified=True, optim="sgd", lr=0.05)),
    "mnist-mlprand": ("mnist", dict(MNIST, net="mlprand", k=40, optim="adagrad", lr=0.01)),
    "mnist-mlpvar": ("mnist", dict(MNIST, net="mlpvar", k=160, train_cycle=1, epochs=3, dropout=0.2)),
    "mnist-mlpact": ("mnist", dict(MNIST, net="mlpact", act_after=1)),
    "mnist-mlpact-recorded": ("mnist", dict(MNIST, net="mlpact", act_after=1, act_mask="recorded")),
    "mnist-cnn": ("mnist", dict(MNIST, net="cnn", max_examples=40, epochs=1)),
    "mnist-cnntop": ("mnist", dict(MNIST, net="cnntop", k=40, max_examples=60, dropout=0.2)),
    "pos-lstm": ("pos", dict(POS, net="lstm", epochs=1)),
    "pos-lstmtop": ("pos", dict(POS, net="lstmtop", k=5)),
    "pos-lstmvar": ("pos", dict(POS, net="lstmvar", k=5, prune=0.3, train_cycle=1, epochs=3)),
    "parse-mlp": ("parse", dict(PARSE, net="mlp", epochs=1)),
    "parse-mlptop": ("parse", dict(PARSE, net="mlptop", k=10)),
    "parse-mlpvar": ("parse", dict(PARSE, net="mlpvar", k=20, train_cycle=1, epochs=3, prune=0.2)),
}


def settings_of(name, data_dir):
    task, options = RUNS[name]
    return task, task_class(task).Settings(data_dir=data_dir, **options)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_root):
    """Each run left alone, once: {name: its folder}."""
    folders = {}

    def get(name):
        if name not in folders:
            task, settings = settings_of(name, data_root)
            folders[name] = str(tmp_path_factory.mktemp(name) / "run")
            run(task, settings, folders[name], log=lambda line: None)
        return folders[name]
    return get


class Stop:
    """Raise KeyboardInterrupt at the n-th call of a function, before it or after it returns."""

    def __init__(self, monkeypatch, owner, name, n, after=False):
        self.calls, self.n, self.after = 0, n, after
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            self.calls += 1
            if self.calls == self.n and not self.after:
                raise KeyboardInterrupt
            result = original(*args, **kwargs)
            if self.calls == self.n:
                raise KeyboardInterrupt
            return result
        monkeypatch.setattr(owner, name, staticmethod(wrapped) if isinstance(owner.__dict__.get(name), staticmethod)
                            else wrapped)


def interrupt_and_resume(tmp_path, monkeypatch, data_root, name, where, n):
    """Run `name`, interrupted as `where` says at its n-th occasion, then resume it; returns the folder."""
    task, settings = settings_of(name, data_root)
    cls = task_class(task)
    with monkeypatch.context() as patch:
        if where == "in a part":  # the n-th training step
            Stop(patch, cls, "train_step", n)
        elif where == "after a save":  # right after the n-th checkpoint
            Stop(patch, Checkpoint, "write", n, after=True)
        elif where == "before a save":  # after the n-th metrics line and model.npz, before its checkpoint
            Stop(patch, Checkpoint, "write", n)
        with pytest.raises(RunInterrupted) as stopped:
            run(task, settings, str(tmp_path / "run"), log=lambda line: None)
    assert stopped.value.out_dir == str(tmp_path / "run") and stopped.value.resumable
    saved = Checkpoint.read(str(tmp_path / "run"))
    if saved and where != "before a save":  # the checkpoint's copy of the best model is model.npz
        with np.load(tmp_path / "run" / "model.npz") as model:
            assert sorted(f"best/{name}" for name in model.files) == sorted(n for n in saved[1] if n.startswith("best/"))
            for name in model.files:
                assert np.array_equal(model[name], saved[1][f"best/{name}"]), name
    open(tmp_path / "run" / ".tmp-abc123model.npz", "wb").close()  # what a kill during a write leaves
    summary = resume(str(tmp_path / "run"), log=lambda line: None)
    assert not (tmp_path / "run" / ".tmp-abc123model.npz").exists()
    assert summary["test_acc"] == json.load(open(tmp_path / "run" / "summary.json"))["test_acc"]
    return tmp_path / "run"


def assert_same_run(resumed, alone):
    """The same model.npz bit for bit, the same metrics lines and summary values, times aside."""
    with np.load(os.path.join(resumed, "model.npz")) as a, np.load(os.path.join(alone, "model.npz")) as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            assert np.array_equal(a[name], b[name]), name

    def untimed(record):
        return {key: value for key, value in record.items()
                if not key.endswith(("_s", "_mb")) and key != "decode_speedup"}
    lines = [[untimed(json.loads(line)) for line in open(os.path.join(folder, "metrics.jsonl"))]
             for folder in (resumed, alone)]
    assert lines[0] == lines[1]
    summaries = [untimed(json.load(open(os.path.join(folder, "summary.json")))) for folder in (resumed, alone)]
    assert summaries[0] == summaries[1]
    assert not os.path.exists(os.path.join(resumed, "checkpoint.npz"))


CASES = [  # (run, where, n): a part's step, right after or before a checkpoint, and the first part
    ("mnist-mlp", "in a part", 40), ("mnist-mlp", "in a part", 3),
    ("mnist-mlptop", "after a save", 1), ("mnist-mlptop", "before a save", 2), ("mnist-mlptop", "in a part", 50),
    ("mnist-unified", "in a part", 20),
    ("mnist-mlprand", "after a save", 2),
    ("mnist-mlpvar", "in a part", 40), ("mnist-mlpvar", "before a save", 3), ("mnist-mlpvar", "after a save", 4),
    # meAct: its accumulators in the checkpoint (dense epoch 1), then its active sets (epoch 2)
    ("mnist-mlpact", "in a part", 20), ("mnist-mlpact", "after a save", 2), ("mnist-mlpact", "in a part", 50),
    # with the masked units held at their recorded means, which the checkpoint keeps too
    ("mnist-mlpact-recorded", "after a save", 2), ("mnist-mlpact-recorded", "in a part", 50),
    ("mnist-cnn", "in a part", 3), ("mnist-cnntop", "in a part", 5), ("pos-lstm", "after a save", 1),
    ("pos-lstmtop", "in a part", 25), ("pos-lstmtop", "before a save", 1),
    ("pos-lstmvar", "after a save", 2), ("pos-lstmvar", "in a part", 50),
    ("parse-mlp", "in a part", 2), ("parse-mlptop", "in a part", 3), ("parse-mlptop", "after a save", 2),
    ("parse-mlpvar", "before a save", 3), ("parse-mlpvar", "in a part", 8),
]


@pytest.mark.parametrize("name, where, n", CASES)
def test_a_resumed_run_ends_as_the_run_left_alone(tmp_path, monkeypatch, data_root, uninterrupted, name, where, n):
    resumed = interrupt_and_resume(tmp_path, monkeypatch, data_root, name, where, n)
    assert_same_run(resumed, uninterrupted(name))


def test_resume_refuses_a_finished_run_and_a_folder_without_one(tmp_path, uninterrupted):
    with pytest.raises(ConfigError, match="has finished"):
        resume(uninterrupted("mnist-mlptop"))
    with pytest.raises(ConfigError, match="holds no config.json"):
        resume(str(tmp_path))


def test_resume_refuses_data_that_changed_since_the_run_started(tmp_path, monkeypatch, data_root):
    treebank = tmp_path / "data"
    shutil.copytree(os.path.join(data_root, "ud-english-ewt"), treebank)
    _, settings = settings_of("pos-lstmtop", str(treebank))
    with monkeypatch.context() as patch:
        Stop(patch, Checkpoint, "write", 1, after=True)
        with pytest.raises(RunInterrupted):
            run("pos", settings, str(tmp_path / "run"), log=lambda line: None)
    with open(treebank / "en_ewt-ud-dev.conllu", "a") as stream:
        stream.write("# an added comment\n")
    with pytest.raises(DataError, match="en_ewt-ud-dev.conllu: changed since the run started"):
        resume(str(tmp_path / "run"))


def test_a_run_being_trained_cannot_be_resumed_by_a_second_process(tmp_path, monkeypatch, data_root):
    from tinyprop.tasks.run import locked
    _, settings = settings_of("mnist-mlp", data_root)
    with monkeypatch.context() as patch:
        Stop(patch, Checkpoint, "write", 1, after=True)
        with pytest.raises(RunInterrupted):
            run("mnist", settings, str(tmp_path / "run"), log=lambda line: None)
    with locked(str(tmp_path / "run")):  # as the training process holds it
        with pytest.raises(ConfigError, match=f"{tmp_path / 'run'}: another process is training into it"):
            resume(str(tmp_path / "run"))
    assert resume(str(tmp_path / "run"), log=lambda line: None)["test_acc"] > 0


def test_resume_names_what_is_wrong_with_a_config_json_edited_by_hand(tmp_path, uninterrupted):
    folder = tmp_path / "run"
    folder.mkdir()
    config = json.load(open(os.path.join(uninterrupted("mnist-mlptop"), "config.json")))
    for edited, error, message in [
            ({}, DataError, "not the config.json of a tinyprop run"),
            (dict(config, task="speech"), DataError, "task 'speech' is not one of tinyprop's tasks"),
            (dict(config, settings=dict(config["settings"], colour=1)), DataError, "settings colour are not the mnist"),
            (dict(config, settings=dict(config["settings"], k=-1)), ConfigError, r"TrainTop \(--k\): must be at least 1"),
            (dict(config, settings=dict(config["settings"], lr=float("nan"))), ConfigError, r"LearningRate \(--lr\): must be a finite number")]:
        (folder / "config.json").write_text(json.dumps(edited))
        with pytest.raises(error, match=re.escape(str(folder / "config.json")) + ": " + message):
            resume(str(folder))


def test_a_run_stopped_before_a_setting_existed_resumes_with_its_default(tmp_path, monkeypatch, data_root,
                                                                         uninterrupted):
    task, settings = settings_of("mnist-mlptop", data_root)
    with monkeypatch.context() as patch:
        Stop(patch, Checkpoint, "write", 1, after=True)
        with pytest.raises(RunInterrupted):
            run(task, settings, str(tmp_path / "run"), log=lambda line: None)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    del config["settings"]["update_sizes"]  # as an older tinyprop, which had no such setting, wrote them
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    state, arrays = Checkpoint.read(str(tmp_path / "run"))
    del state["settings"]["update_sizes"]
    np.savez(tmp_path / "run" / "checkpoint.npz", progress=np.array(json.dumps(state)), **arrays)
    resume(str(tmp_path / "run"), log=lambda line: None)
    assert_same_run(tmp_path / "run", uninterrupted("mnist-mlptop"))


def test_a_run_goes_on_with_the_threads_a_smaller_machine_has(tmp_path, monkeypatch, data_root, uninterrupted):
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads to start the run on")
    task, settings = settings_of("mnist-mlptop", data_root)
    with monkeypatch.context() as patch:
        Stop(patch, Checkpoint, "write", 1, after=True)
        with pytest.raises(RunInterrupted):
            run(task, dataclasses.replace(settings, threads=2), str(tmp_path / "run"), log=lambda line: None)
    alone = uninterrupted("mnist-mlptop")
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 1)  # as NUMBA_NUM_THREADS=1 or one core would
    lines = []
    resume(str(tmp_path / "run"), log=lines.append)
    assert lines[0].startswith("note: the run was made on 2 threads and Numba runs at most 1 here; it goes on with 1")
    with np.load(tmp_path / "run" / "model.npz") as resumed, np.load(os.path.join(alone, "model.npz")) as model:
        for name in model.files:  # training's kernels give the same bits on any count (evaluation's BLAS may not)
            assert np.array_equal(resumed[name], model[name]), name


def test_resume_refuses_a_damaged_checkpoint_or_metrics_file_with_a_message(tmp_path, monkeypatch, data_root):
    task, settings = settings_of("mnist-mlptop", data_root)
    folders = {}
    for name, hidden in (("run", 500), ("other", 300)):
        with monkeypatch.context() as patch:
            Stop(patch, Checkpoint, "write", 2, after=True)
            with pytest.raises(RunInterrupted):
                run(task, dataclasses.replace(settings, hidden=hidden), str(tmp_path / name), log=lambda line: None)
        folders[name] = tmp_path / name
    checkpoint = folders["run"] / "checkpoint.npz"
    kept = checkpoint.read_bytes()
    shutil.copy(folders["other"] / "checkpoint.npz", checkpoint)  # another run's (hidden 300)
    with pytest.raises(DataError, match="settings differ from those of the run's checkpoint"):
        resume(str(folders["run"]))
    assert "resumes" not in json.loads((folders["run"] / "config.json").read_text())  # a refusal is no resume
    checkpoint.write_bytes(b"")
    with pytest.raises(DataError, match=f"{checkpoint}: cannot read it as a tinyprop checkpoint"):
        resume(str(folders["run"]))
    checkpoint.write_bytes(kept)
    (folders["run"] / "metrics.jsonl").write_text('{"epoch": 1}\n')  # cut: the checkpoint covers 2 lines
    with pytest.raises(DataError, match="metrics.jsonl: 1 whole lines, but the checkpoint covers 2"):
        resume(str(folders["run"]))


def test_a_run_whose_checkpoint_is_gone_starts_again_and_ends_as_the_run_left_alone(tmp_path, monkeypatch,
                                                                                     data_root, uninterrupted):
    task, settings = settings_of("mnist-mlptop", data_root)
    with monkeypatch.context() as patch:
        Stop(patch, Checkpoint, "write", 2, after=True)
        with pytest.raises(RunInterrupted):
            run(task, settings, str(tmp_path / "run"), log=lambda line: None)
    os.unlink(tmp_path / "run" / "checkpoint.npz")  # as in a copy of results/, which keeps no checkpoints
    lines = []
    resume(str(tmp_path / "run"), log=lines.append)
    assert any("from the start: it evaluated, but has no checkpoint.npz" in line for line in lines)
    assert_same_run(tmp_path / "run", uninterrupted("mnist-mlptop"))
