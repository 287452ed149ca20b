"""Experiment files, sweeps (local processes and Ray) and the reports made from their runs."""
import csv
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types

import pytest
from click.testing import CliRunner

from tinyprop.cli import main
from tinyprop.tasks import report
from tinyprop.tasks import experiments
from tinyprop.tasks.experiments import Sweep, load, reproduce, run_key, run_specs, shipped, state
from tinyprop.tasks.mnist import MnistSettings
from tinyprop.tasks.run import run
from tinyprop.tasks.settings import ConfigError

TINY = """
paper = "a test"
table = "Table T"
caption = "two rows, two seeds"
seeds = 2

[[row]]
label = "dense"
task = "mnist"
settings = { net = "mlp", hidden = 64 }
paper = { test = 90.0 }

[[row]]
label = "top-{k}"
task = "mnist"
settings = { net = "mlptop", hidden = 64, k = [8, 16], update_sizes = true }
paper = { test = [nan, 91.5] }
baseline = "dense"
"""


def write(folder, text, name="tiny.toml"):
    path = os.path.join(folder, name)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def summaries(result_folder):
    found = {}
    for row in sorted(os.listdir(result_folder)):
        for seed in sorted(os.listdir(os.path.join(result_folder, row))):
            if seed.startswith("seed-"):
                with open(os.path.join(result_folder, row, seed, "summary.json")) as handle:
                    found[row, seed] = json.load(handle)
    return found


def test_expansion_labels_seeds_and_folders(tmp_path):
    experiment = load(write(tmp_path, TINY))
    assert [row.label for row in experiment.rows] == ["dense", "top-8", "top-16"]
    assert [row.baseline for row in experiment.rows] == [None, "dense", "dense"]
    assert experiment.rows[2].paper == {"test": 91.5} and experiment.rows[2].grid == ("k", 16)
    specs = run_specs(experiment, tmp_path / "results")
    # every row's first seed before any row's second, so that a sweep cut short pairs up
    assert [(spec.row.label, spec.seed) for spec in specs] == [
        ("dense", 1), ("top-8", 1), ("top-16", 1), ("dense", 2), ("top-8", 2), ("top-16", 2)]
    assert specs[1].settings.k == 8 and specs[1].settings.seed == 1
    assert specs[0].folder == str(tmp_path / "results" / "tiny" / "dense" / "seed-1")
    quick = run_specs(experiment, tmp_path / "results", seeds=1, max_examples=100, epochs=1)
    assert len(quick) == 3 and all("quick" in spec.folder and spec.settings.epochs == 1 for spec in quick)


@pytest.mark.parametrize("change, message, replacement", [
    ('caption = "two rows, two seeds"', "unknown key colour", 'colour = "red"\ncaption = "x"'),
    ('settings = { net = "mlp", hidden = 64 }', "row 1 (dense): settings: hidden_size is not a setting of the mnist "
     "task; did you mean hidden?", 'settings = { net = "mlp", hidden_size = 64 }'),
    ('settings = { net = "mlp", hidden = 64 }', "row 1 (dense): settings: colour is not a setting of the mnist task (", 'settings = { net = "mlp", colour = 64 }'),
    ("seeds = 2\n", "row 1 (dense): no seeds", "\n"),
    ("seeds = 2\n", "tiny.toml: seeds = 'three': give a count", "seeds = 'three'\n"),  # the file's, not a row's
    ("k = [8, 16]", "row 2 (top-{k}): settings hidden, k are lists", "k = [8, 16]"),
    ("k = [8, 16]", "row 2 (top-{k}): k = []: a grid needs one or more different values", "k = []"),
    ("paper = { test = [nan, 91.5] }", "row 2 (top-{k}): paper's test must be a list of 2 figures",
     "paper = { test = 91.5 }"),
    ('baseline = "dense"', "row 'top-8': baseline 'densest' is not the label of a row", 'baseline = "densest"'),
    ('settings = { net = "mlp", hidden = 64 }', "row 1 (dense): settings: k: --net mlp does not use it",
     'settings = { net = "mlp", k = 5 }'),
    ('settings = { net = "mlp", hidden = 64 }', "row 1 (dense): settings: hidden: must be at least 1, got 0",
     'settings = { net = "mlp", hidden = 0 }'),
    ('settings = { net = "mlp", hidden = 64 }', "row 1 (dense): settings: seed is the sweep's",
     'settings = { net = "mlp", seed = 3 }'),
    ('label = "dense"', "rows 'Top 8!' and 'top-8' would share the runs' folder 'top-8'", 'label = "Top 8!"'),
    ('label = "dense"', "row '(*)': the label needs a letter or digit", 'label = "(*)"'),
])
def test_bad_files_name_the_file_and_row_before_anything_runs(tmp_path, change, message, replacement):
    text = TINY.replace(change, replacement)
    if "lists" in message:
        text = text.replace('hidden = 64, k = [8, 16]', 'hidden = [64, 32], k = [8, 16]')
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        reproduce(path, tmp_path / "results", log=lambda line: None)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / "results")


def test_shipped_experiment_files_load():
    assert "table2" in shipped()
    for name in shipped():
        experiment = load(name)
        assert experiment.rows and all(row.seeds for row in experiment.rows)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, data_root):
    """TINY swept once on local processes (2 at a time): (its file, results folder, summaries, log lines)."""
    folder = tmp_path_factory.mktemp("swept")
    path = write(folder, TINY)
    lines = []
    sweep = reproduce(path, folder / "results", jobs=2, max_examples=300, epochs=1,
                      data_dir=os.path.join(data_root, "mnist"), log=lines.append)
    assert not sweep.failed and sweep.done == 6
    return path, folder / "results", summaries(folder / "results" / "quick" / "tiny-max300-epochs1"), lines


@pytest.mark.data
def test_local_sweep_reports_what_its_summaries_give(swept):
    path, results, found, lines = swept
    folder = results / "quick" / "tiny-max300-epochs1"
    assert len(found) == 6 and "6/6 done, 0 running, 0 failed, 0 left" in lines[-1]
    progress = [line for line in lines if line.startswith("[")]
    assert progress[0].startswith("[1/6 done, 2 running, 0 failed, 3 left")  # the next run started before the line
    assert progress[-2].startswith("[5/6 done, 1 running, 0 failed, 0 left")
    assert {summary["k"] for summary in found.values()} == {None, 8, 16}
    assert all(os.path.isfile(folder / row / seed / "log.txt") for row, seed in found)
    result = report.collect(path, results, max_examples=300, epochs=1)
    top16 = [found["top-16", f"seed-{seed}"]["test_acc"] for seed in (1, 2)]
    dense = [found["dense", f"seed-{seed}"]["test_acc"] for seed in (1, 2)]
    row = result.rows[2]
    assert row.test.n == 2 and row.test.mean == pytest.approx(statistics.mean(top16))
    assert row.test.sd == pytest.approx(statistics.stdev(top16))
    assert row.effect.mean == pytest.approx(statistics.mean([a - b for a, b in zip(top16, dense)]))
    text = report.markdown(result)
    assert f"Made by `tinyprop reproduce {path} --max-examples 300 --epochs 1 --results " \
           f"{os.path.relpath(results)}`" in " ".join(text.split())
    assert f"| top-16 | 2/2 | {statistics.mean(top16):.2f} ± {statistics.stdev(top16):.2f}" in text
    assert f"| 91.50 | {statistics.mean(top16) - 91.5:+.2f} |" in text
    assert "A quick look: these verdicts are of runs cut short and say nothing of the paper's. Does the paper's " \
           "direction" in " ".join(text.split())
    rows = list(csv.DictReader(io.StringIO(report.csv_text(result))))
    assert float(rows[0]["test_mean"]) == pytest.approx(statistics.mean(dense)) and rows[0]["seeds"] == "2"
    assert rows[0]["effect_mean"] == rows[0]["effect_pairs"] == "" and rows[1]["effect_pairs"] == "2"  # no baseline
    assert rows[0]["effect_pairs_in_two_environments"] == "" and rows[1]["effect_pairs_in_two_environments"] == "0"
    assert rows[1]["paper_test"] == "" and float(rows[2]["paper_test"]) == 91.5  # the file's nan: no figure


def verdicts(rows, baseline_paper=98.0):
    """report.directions of rows given as (label, paper's test or None, per-seed differences), each against a
    baseline row whose paper's test is `baseline_paper`."""
    made = [types.SimpleNamespace(row=types.SimpleNamespace(label="dense", baseline=None,
                                                            paper={"test": baseline_paper}), effect=None)]
    for label, paper, differences in rows:
        made.append(types.SimpleNamespace(row=types.SimpleNamespace(label=label, baseline="dense",
                                                                    paper={} if paper is None else {"test": paper}),
                                          effect=report.Spread(differences), crossed=0))
    return report.directions(types.SimpleNamespace(rows=made))


def test_the_papers_direction_holds_where_the_95_percent_interval_lies_on_its_side():
    """Mean 0.3, sd 0.1 over 3 seeds: t(0.975, 2) = 4.303, so 0.3 ± 4.303 x 0.1 / sqrt(3) = 0.05 to 0.55."""
    texts = verdicts([("up", 98.3, [0.3, 0.2, 0.4]), ("paper below", 97.5, [-0.3, -0.2, -0.4]),
                      ("reversed", 98.3, [-0.3, -0.2, -0.4]), ("noisy", 98.3, [0.3, -0.2, 0.1]),
                      ("one seed", 98.3, [0.5]), ("not in the paper", None, [0.3, 0.2, 0.4])])
    assert texts[0] == ("up against dense: holds, +0.30 ± 0.10 points of test over 3 paired seeds, 95% interval "
                        "+0.05 to +0.55 (the paper: at least as accurate, 98.30 against 98.00)")
    assert texts[1].startswith("paper below against dense: holds, -0.30 ± 0.10") and texts[1].endswith(
        "(the paper: less accurate, 97.50 against 98.00)")
    assert texts[2].startswith("reversed against dense: does not hold, -0.30 ± 0.10")
    assert texts[3].startswith("noisy against dense: not settled by these seeds, +0.07 ± 0.25")
    assert texts[4].startswith("one seed against dense: not settled by these seeds, +0.50 points of test in one")
    assert texts[5].startswith("not in the paper against dense: +0.30 ± 0.10") and texts[5].endswith(
        "(the paper has no figure for this row)")
    assert verdicts([("top-k", 98.3, [0.3, 0.2, 0.4])], baseline_paper=None)[0].endswith(
        "(the paper has no figure for its baseline)")
    assert verdicts([("top-k", None, [0.3, 0.2, 0.4])], baseline_paper=None) == [
        "top-k against dense: holds, +0.30 ± 0.10 points of test over 3 paired seeds, 95% interval +0.05 to +0.55 "
        "(the papers: at least as accurate; they give no figures)"]


def test_speed_is_compared_where_the_paper_gives_both_backprop_times():
    def row(label, baseline, paper, times, effect=None):
        return types.SimpleNamespace(row=types.SimpleNamespace(label=label, baseline=baseline, paper=paper),
                                     backprop=report.Spread(times), effect=effect, crossed=0)
    dense = row("dense", None, {"test": 98.0, "backprop_s": 170.0}, [90.0, 94.0])
    top = row("top", "dense", {"test": 98.3, "backprop_s": 34.0}, [45.0, 47.0], report.Spread([0.1, 0.2]))
    assert report.directions(types.SimpleNamespace(rows=[dense, top]))[0].endswith(
        "; backprop time 2.0 times less than the baseline's, by the means over seeds (the paper: 5.0 times)")
    top.backprop = report.Spread([0.0, 0.0])  # no time to divide by
    assert report.directions(types.SimpleNamespace(rows=[dense, top]))[0].endswith("98.30 against 98.00)")
    del top.row.paper["backprop_s"]
    assert report.directions(types.SimpleNamespace(rows=[dense, top]))[0].endswith("98.30 against 98.00)")


def test_durations_read_in_seconds_minutes_or_hours():
    assert [experiments.format_duration(seconds) for seconds in (41, 89.4, 90, 5399, 5400)] == [
        "41 s", "89 s", "2 min", "90 min", "1.5 h"]


@pytest.mark.data
def test_a_full_report_without_runs_points_to_the_quick_looks(swept, tmp_path):
    path, results, found, lines = swept
    result = report.collect(path, results)
    assert report.plots(result, tmp_path / "plots") == [] and not os.path.exists(tmp_path / "plots")  # none empty
    text = report.markdown(result)
    assert f"No finished runs in `{results / 'tiny'}`; the quick looks at this experiment are in " \
           f"`{results / 'quick'}`: tiny-max300-epochs1." in " ".join(text.split())


@pytest.mark.data
def test_progress_counts_finished_runs_and_names_the_rows_short_of_their_seeds(swept, tmp_path):
    path, results, found, lines = swept
    copied = tmp_path / "results"
    shutil.copytree(results, copied)
    top8 = copied / "quick" / "tiny-max300-epochs1" / "top-8"
    os.rename(top8 / "seed-2", top8 / "seed-7")  # a seed the file does not ask for counts for nothing here
    config = json.loads((top8 / "seed-7" / "config.json").read_text())
    config["settings"]["seed"] = 7
    (top8 / "seed-7" / "config.json").write_text(json.dumps(config))
    without_dense = tmp_path / "without-dense"
    shutil.copytree(copied, without_dense)
    shutil.rmtree(without_dense / "quick" / "tiny-max300-epochs1" / "dense")
    made = [report.collect(path, folder, max_examples=300, epochs=1)
            for folder in (results, copied, without_dense, tmp_path / "nothing")]
    sweep = f"{path} --max-examples 300 --epochs 1"
    assert report.progress(made)[-5:-1] == [f"| `{sweep}` | Table T | 6 of 6 | none: complete |",
                                           f"| `{sweep}` | Table T | 5 of 6 | top-8 (1/2) |",
                                           f"| `{sweep}` | Table T | 3 of 6 | top-8 (1/2); 1 row with none finished |",
                                           f"| `{sweep}` | Table T | 0 of 6 | all: no run finished yet |"]
    assert (f"Short of their seeds: dense (0 of 2), top-8 (1 of 2); `tinyprop reproduce {sweep} --results "
            f"{os.path.relpath(without_dense)}` goes on.") in " ".join(report.markdown(made[2]).split())


@pytest.mark.data
def test_processors_are_told_apart_by_llvm_target_and_blas_kernels_where_the_name_is_the_same(swept, tmp_path):
    path, results, found, lines = swept
    copied = tmp_path / "results"
    shutil.copytree(results, copied)
    run = copied / "quick" / "tiny-max300-epochs1" / "dense" / "seed-1" / "config.json"
    config = json.loads(run.read_text())
    here = report.machine(config)
    text = " ".join(report.markdown(report.collect(path, copied, max_examples=300, epochs=1)).split())
    assert f"processors: {here}; threads a run:" in text
    chosen = [library["architecture"] for library in config["provenance"]["blas"]]
    for library in config["provenance"]["blas"]:
        library["architecture"] = "Elsewhere"  # as if OpenBLAS had chosen other kernels for another processor
    run.write_text(json.dumps(config))
    text = " ".join(report.markdown(report.collect(path, copied, max_examples=300, epochs=1)).split())
    elsewhere = f"{config['provenance']['processor']}, LLVM target {config['provenance']['numba_cpu']}, BLAS kernels " \
                "Elsewhere"
    assert f"processors: {'; '.join(sorted([f'{here} (5 runs)', f'{elsewhere} (1 run)']))}; threads" in text
    for row in ("top-8", "top-16"):  # their seed 1 pairs with the dense seed 1 of the other processor
        assert re.search(rf"- {row} against dense: [^±]* ± [\d.]+ points of test over 2 paired seeds \(1 of 2 in two "
                         r"environments\)", text)
    for library, kernels in zip(config["provenance"]["blas"], chosen):
        library["architecture"] = kernels
    del config["provenance"]["numba_cpu"]  # as a run from before tinyprop recorded it: not told apart by that
    run.write_text(json.dumps(config))
    text = " ".join(report.markdown(report.collect(path, copied, max_examples=300, epochs=1)).split())
    assert "in two environments" not in text and "over 2 paired seeds, 95% interval" in text
    assert report.machine({"provenance": {"processor": "AMD EPYC", "blas": [{"architecture": "SkylakeX"},
                                                                             {"architecture": "Haswell"}]}}) \
        == "AMD EPYC, BLAS kernels Haswell/SkylakeX"  # a run from before tinyprop recorded numba_cpu
    assert report.machine({"provenance": {"processor": "AMD EPYC", "numba_cpu": "znver5",
                                          "blas": [{"architecture": "Haswell"}]}}) \
        == "AMD EPYC, LLVM target znver5, BLAS kernels Haswell"
    assert report.machine({}) == "unknown"


@pytest.mark.data
def test_finished_runs_are_skipped_stopped_ones_resumed_changed_ones_refused(swept, tmp_path, mnist_dir):
    path, results, found, lines = swept
    copied = tmp_path / "results"
    shutil.copytree(results, copied)
    stopped = copied / "quick" / "tiny-max300-epochs1" / "top-8" / "seed-2"
    os.unlink(stopped / "summary.json")  # as if killed after its last evaluation
    lines = []
    sweep = reproduce(path, copied, jobs=2, max_examples=300, epochs=1, data_dir=mnist_dir, log=lines.append)
    assert "5 finished before, 1 to resume, 0 to start" in lines[0] and sweep.done == 6
    with open(stopped / "summary.json") as handle:
        assert json.load(handle)["test_acc"] == found["top-8", "seed-2"]["test_acc"]
    changed = write(tmp_path, TINY.replace("hidden = 64, k", "hidden = 48, k"))
    with pytest.raises(ConfigError, match=r"4 run folders \(the first: .*\) hold runs made with other settings"):
        reproduce(changed, copied, max_examples=300, epochs=1, data_dir=mnist_dir, log=lines.append)
    with pytest.raises(ConfigError, match=r"4 run folders \(the first: .*\) hold runs made"):  # nor reported
        report.collect(changed, copied, max_examples=300, epochs=1)
    rows = copied / "quick" / "tiny-max300-epochs1"
    os.rename(rows / "top-8" / "seed-1", tmp_path / "seed-1")
    changed = write(tmp_path, TINY.replace("k = [8, 16]", "k = [8, 16], dropout = 0.3").replace("seeds = 2",
                                                                                                 "seeds = 1"))
    with pytest.raises(ConfigError, match=r"3 run folders \(the first: .*top-8/seed-2\) hold runs made"):
        report.collect(changed, copied, max_examples=300, epochs=1)  # seed 2, beyond the file's seeds, too
    (rows / "top-8" / "seed-2" / "config.json").write_text('{"settings": {}}')
    with pytest.raises(ConfigError, match=r"top-8/seed-2/config.json: not a run's config.json \(no task of "):
        report.collect(changed, copied, max_examples=300, epochs=1)
    shutil.rmtree(rows / "top-8")
    shutil.rmtree(rows / "top-16" / "seed-2")
    with pytest.raises(ConfigError, match=r"^\S*top-16/seed-1 holds a run made with other settings than "
                                          r"\S*tiny.toml now gives; move it away, or put the file back$"):
        report.collect(changed, copied, max_examples=300, epochs=1)


def test_time_left_is_the_mean_of_each_tasks_runs_started_here_not_of_resumed_ones(tmp_path, monkeypatch):
    """A resumed run's time is only what was left of it: it would make the estimate short."""
    specs = []
    for name, task in [("parse-1", "parse"), ("parse-2", "parse"), ("mnist-1", "mnist"), ("mnist-2", "mnist"),
                       ("mnist-3", "mnist"), ("parse-3", "parse")]:
        os.makedirs(tmp_path / name)
        specs.append(types.SimpleNamespace(folder=str(tmp_path / name), name=name,
                                           row=types.SimpleNamespace(task=task)))
    (tmp_path / "mnist-1" / "config.json").write_text("{}")  # stopped: it resumes
    clock = iter([0, 0, 0, 10, 600, 600, 600, 640])  # the sweep's start, then each call below
    monkeypatch.setattr(experiments.time, "monotonic", lambda: next(clock))
    lines = []
    sweep = Sweep(total=7, done=1, todo=specs, jobs=2, log=lines.append)
    summary = {"test_acc": 97.0, "best_dev_acc": 98.0}
    sweep.started(specs[2])
    sweep.started(specs[0])
    sweep.ended(specs[2], summary, None, None)  # mnist-1, resumed: its 10 s are not counted
    assert lines[-1].startswith("[2/7 done, 1 running, 0 failed, 4 left]")
    sweep.ended(specs[0], summary, None, None)  # parse-1: 600 s; the four left, at 600 s each, on two jobs
    assert lines[-1].startswith("[3/7 done, 0 running, 0 failed, 4 left, about 20 min to go]")
    sweep.started(specs[3])
    sweep.started(specs[4])
    sweep.ended(specs[3], summary, None, None)  # mnist-2: 40 s; left: mnist 40 s, parse 600 s twice, on two jobs
    assert lines[-1].startswith("[4/7 done, 1 running, 0 failed, 2 left, about 10 min to go]")


@pytest.mark.data
def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path, mnist_dir):
    text = TINY.replace('settings = { net = "mlp", hidden = 64 }',
                        'settings = { net = "mlp", hidden = 64, label_count = 5 }')
    path = write(tmp_path, text)
    lines = []
    sweep = reproduce(path, tmp_path / "results", seeds=1, jobs=2, max_examples=300, epochs=1, data_dir=mnist_dir,
                      log=lines.append)
    assert sweep.done == 2 and [spec.row.label for spec, error in sweep.failed] == ["dense"]
    assert "label" in sweep.failed[0][1].lower()
    failed = next(line for line in lines if "dense/seed-1: FAILED" in line)
    with open(failed.rsplit("(its log: ", 1)[1].rstrip(")")) as handle:  # refused before training: beside its folder
        assert "Traceback" in handle.read()


@pytest.mark.data
def test_sweep_stopped_by_ctrl_c_goes_on_where_it_stopped(tmp_path, mnist_dir):
    path = write(tmp_path, TINY)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "tinyprop", "reproduce", path, "--results", str(results), "--seeds", "1",
               "--jobs", "2", "--max-examples", "3000", "--epochs", "2", "--data-dir", mnist_dir]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    folder = results / "quick" / "tiny-max3000-epochs2"
    deadline = time.monotonic() + 120
    while not list(folder.glob("*/seed-1/checkpoint.npz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # as the terminal's Ctrl-C: to the sweep and its runs
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "the same command goes on" in err
    assert any(state(folder / row / "seed-1") == "stopped" for row in ("dense", "top-8", "top-16"))
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "to resume" in finished.stdout and "3/3 done" in finished.stdout
    # each equals the run made in one go
    for row, settings in (("dense", dict(net="mlp")), ("top-8", dict(net="mlptop", k=8))):
        alone = run("mnist", MnistSettings(hidden=64, seed=1, max_examples=3000, epochs=2, data_dir=mnist_dir,
                                           **settings), tmp_path / f"alone-{row}", log=lambda line: None)
        with open(folder / row / "seed-1" / "summary.json") as handle:
            swept = json.load(handle)
        assert (swept["test_acc"], swept["best_dev_acc"]) == (alone["test_acc"], alone["best_dev_acc"])


@pytest.fixture
def ray_head():
    """A Ray head on 127.0.0.1 for this test alone; its processes (one process group) stopped after it."""
    pytest.importorskip("ray")
    port = 6400 + os.getpid() % 500
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must be short
    environment = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    head = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block",
                             "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for signum, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
            try:
                os.killpg(head.pid, signum)
                head.wait(timeout=wait)
                break
            except (subprocess.TimeoutExpired, ProcessLookupError):
                continue
        try:
            os.killpg(head.pid, signal.SIGKILL)  # what the head left of its group
        except ProcessLookupError:
            pass


@pytest.mark.data
def test_ray_sweep_gives_the_local_sweeps_runs(swept, tmp_path, mnist_dir, ray_head, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    path, results, by_pool, lines = swept
    lines = []
    sweep = reproduce(path, tmp_path / "ray", ray_address=ray_head, max_examples=300, epochs=1,
                      data_dir=mnist_dir, log=lines.append)
    assert not sweep.failed and sweep.done == 6, lines
    by_ray = summaries(tmp_path / "ray" / "quick" / "tiny-max300-epochs1")
    assert {key: summary["test_acc"] for key, summary in by_ray.items()} == \
        {key: summary["test_acc"] for key, summary in by_pool.items()}
    result = report.collect(path, tmp_path / "ray", max_examples=300, epochs=1)
    dense = [by_ray["dense", f"seed-{seed}"]["test_acc"] for seed in (1, 2)]
    assert result.rows[0].test.mean == pytest.approx(statistics.mean(dense))
    assert result.rows[0].test.sd == pytest.approx(statistics.stdev(dense))


def test_commands_refuse_conflicting_options(tmp_path):
    runner = CliRunner()
    outcome = runner.invoke(main, ["reproduce", "table2", "--jobs", "2", "--ray", "auto"])
    assert outcome.exit_code == 2 and "give one of them" in outcome.output
    outcome = runner.invoke(main, ["report"])
    assert outcome.exit_code == 2 and "--update-docs" in outcome.output
    outcome = runner.invoke(main, ["reproduce", "table99"])
    assert outcome.exit_code == 1 and "no experiment named 'table99'" in outcome.output
    outcome = runner.invoke(main, ["report", "--update-docs", "--output", str(tmp_path / "out.md"), "--format", "csv"])
    assert outcome.exit_code == 2 and "it takes no --format, --output" in outcome.output
    assert not os.path.exists(tmp_path / "out.md")


@pytest.mark.data
def test_plots_are_drawn(swept, tmp_path):
    pytest.importorskip("matplotlib")
    path, results, found, lines = swept
    made = report.plots(report.collect(path, results, max_examples=300, epochs=1), tmp_path / "plots")
    assert sorted(os.path.basename(name) for name in made) == ["tiny-backprop.png", "tiny-dev.png", "tiny-test.png",
                                                              "tiny-updates.png"]
    for name in made:
        with open(name, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        with open(name[:-len(".png")] + ".svg") as handle:
            assert "<svg" in handle.read(1000)


def test_committed_documents_are_what_report_makes_from_results():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path, text in report.documents(os.path.join(root, "results"), root).items():
        with open(path) as handle:
            assert handle.read() == text, f"{path} differs from what tinyprop report --update-docs makes of results/"


def test_a_run_made_before_a_setting_existed_is_the_same_as_one_with_its_default():
    settings = dataclasses.asdict(MnistSettings(net="mlptop", k=20, seed=3).checked())
    assert settings["act_after"] is None  # meAct's, which mlptop does not use
    older = {name: value for name, value in settings.items() if name not in ("update_sizes", "act_after")}
    assert run_key("mnist", older) == run_key("mnist", settings)  # made before the two existed
    assert run_key("mnist", older) != run_key("mnist", dict(settings, update_sizes=True))
    assert run_key("mnist", dict(settings, threads=2, data_dir="/elsewhere")) == run_key("mnist", settings)
    assert run_key("mnist", dict(settings, seed=4)) != run_key("mnist", settings)


@pytest.mark.data
def test_a_run_identical_to_another_experiments_is_copied_not_run(swept, tmp_path, mnist_dir):
    path, results, found, lines = swept
    copied = tmp_path / "results"
    shutil.copytree(results, copied)
    text = TINY.replace('table = "Table T"', 'table = "Table U"').replace("k = [8, 16]", "k = [16, 32]")
    other = write(tmp_path, text, "other.toml")
    lines = []
    sweep = reproduce(other, copied, seeds=1, jobs=2, max_examples=300, epochs=1, data_dir=mnist_dir,
                      log=lines.append)
    assert "2 runs copied from the identical finished runs" in lines[0] and sweep.done == 3
    folder = copied / "quick" / "other-max300-epochs1"
    for row in ("dense", "top-16"):
        with open(folder / row / "seed-1" / "summary.json") as handle:
            assert json.load(handle) == found[row, "seed-1"]
        with open(folder / row / "seed-1" / "log.txt") as handle:
            assert handle.read().startswith("copied from ")
    assert not list(folder.glob("*/.tmp-*"))


@pytest.mark.parametrize("family,setting,symbol,legend", [("MNIST top-k (k={k})", "k", "k", "MNIST top-k (k)"),
                                                          ("MNIST MLP (h={hidden})", "hidden", "h", "MNIST MLP (h)"),
                                                          ("top-{k}", "k", "k", "top-k"),
                                                          ("top", "k", "k", "top")])  # the value is not placed
def test_a_grid_label_names_its_varied_value_in_the_plots(family, setting, symbol, legend):
    assert report.symbol(family, setting) == symbol and report.varied_name(family) == legend
