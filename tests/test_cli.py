"""End to end through the command line, on slices of the real MNIST data."""
import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner

from tinyprop.cli import main
from tinyprop.tasks.files import write_npz
from tinyprop.tasks.parse import ParserModel, Vocabulary
from tinyprop.tasks.run import claim_folder, evaluation_data


def model_file_arrays(params, meta):
    arrays = {param.name: param.value for param in params}
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays

SLICE = ["--max-examples", "10000", "--epochs", "3", "--iter-per-epoch", "3", "--seed", "3"]


def run(*args):
    result = CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("mlptop") / "run"
    result = run("train", "mnist", "--net", "mlptop", "--k", "80", *SLICE,
                 "--data-dir", os.path.dirname(mnist_dir), "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.data
def test_mlptop_learns_mnist_from_a_slice(trained, mnist_dir):
    out, output = trained
    summary = json.load(open(out / "summary.json"))
    # 10,000 training images, 3 epochs: meProp k=80 reached 93.1-94.6% over seeds 3-5; with the
    # top-k replaced by a bottom-k it reached 88.4%, and chance is 10%
    assert summary["test_acc"] > 92.0 and summary["best_dev_acc"] > 92.0
    assert "best dev" in output and "seed 3" in output
    for key in ("task", "net", "k", "unified", "epochs", "best_epoch", "best_dev_acc", "test_acc", "train_time_s",
                "forward_time_s", "backward_time_s", "linear_backward_time_s", "update_time_s", "param_count",
                "hidden_sizes", "seed"):
        assert key in summary
    assert summary["hidden_sizes"] == [500, 500] and summary["k"] == 80
    assert 0 < summary["linear_backward_time_s"] <= summary["backward_time_s"]
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [(r["epoch"], r["part"]) for r in records] == [(e, p) for e in (1, 2, 3) for p in (1, 2, 3)]
    config = json.load(open(out / "config.json"))
    assert config["seed_used"] == 3 and config["task"] == "mnist" and config["settings"]["net"] == "mlptop"
    assert config["settings"]["prune"] is None  # what mlptop does not use
    provenance = config["provenance"]
    assert provenance["tinyprop_version"] and provenance["numpy"] == np.__version__ and provenance["processor"]
    assert provenance["command_line"] and provenance["blas"]
    files = provenance["data_files"]
    assert sorted(files) == ["test_images", "test_labels", "train_images", "train_labels"]
    assert files["train_labels"]["size"] == os.path.getsize(os.path.join(mnist_dir, "train-labels-idx1-ubyte.gz"))
    assert files["train_labels"]["sha256"] == "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"


@pytest.mark.data
def test_output_files_get_the_usual_permissions(trained):
    out, _ = trained
    modes = {name: os.stat(out / name).st_mode & 0o777 for name in os.listdir(out)}
    assert set(modes) == {"config.json", "metrics.jsonl", "model.npz", "summary.json"}
    assert len(set(modes.values())) == 1, modes  # the atomic writes as the plain append of metrics.jsonl


@pytest.mark.data
@pytest.mark.parametrize("model", ["model.npz", ""], ids=["model file", "run folder"])
def test_evaluate_reproduces_the_saved_best_dev(trained, mnist_dir, model):
    out, _ = trained
    summary = json.load(open(out / "summary.json"))
    result = run("evaluate", "--model", out / model, "--data-dir", os.path.dirname(mnist_dir))
    assert result.exit_code == 0, result.output
    assert f"dev: accuracy {summary['best_dev_acc']:.2f}%" in result.output
    assert "test: accuracy" in result.output and "(10000 examples)" in result.output


def test_evaluate_names_a_missing_model_file(tmp_path):
    result = run("evaluate", "--model", tmp_path / "missing.npz")
    assert result.exit_code == 2
    assert "missing.npz' does not exist" in result.output
    result = run("evaluate", "--model", tmp_path)
    assert result.exit_code == 1
    assert f"--model {tmp_path}: the folder holds no model.npz" in result.output


def write_broken_model_files(folder, trained_model):
    """Each kind of file `evaluate` must refuse with a message, and the message it must give."""
    np.save(folder / "array.npy", np.zeros(3))
    np.savez(folder / "list.npz", meta=np.array(json.dumps([1, 2])))
    np.savez(folder / "lacking.npz", meta=np.array(json.dumps({"task": "mnist"})))
    np.savez(folder / "no-meta.npz", w=np.zeros(3))
    with np.load(trained_model) as saved:
        arrays = dict(saved)
    meta = json.loads(str(arrays["meta"]))
    np.savez(folder / "other-net.npz", **dict(arrays, meta=np.array(json.dumps(dict(meta, net="mlpx")))))
    np.savez(folder / "other-task.npz", **dict(arrays, meta=np.array(json.dumps(dict(meta, task="speech")))))
    np.savez(folder / "bad-sizes.npz", **dict(arrays, meta=np.array(json.dumps(dict(meta, sizes=[784, -5, 10])))))
    np.savez(folder / "huge.npz", **dict(arrays, meta=np.array(json.dumps(dict(meta, sizes=[784, 10 ** 12, 500, 10])))))
    np.savez(folder / "shape.npz", **dict(arrays, **{"layer2.bias": np.zeros(1, np.float32)}))  # would broadcast
    np.savez(folder / "nan.npz", **dict(arrays, **{"layer1.weight": arrays["layer1.weight"] * np.nan}))
    np.savez(folder / "text.npz", **dict(arrays, **{"layer1.bias": np.array(["a"] * 500)}))
    np.savez(folder / "task-list.npz", **dict(arrays, meta=np.array(json.dumps(dict(meta, task=["mnist"])))))
    np.savez(folder / "limit.npz", **dict(arrays, meta=np.array(json.dumps(dict(meta, max_examples="x")))))
    (folder / "config.json").write_text('{"NetType": "mlp"}')
    (folder / "truncated.npz").write_bytes(trained_model.read_bytes()[:100000])
    (folder / "empty.npz").write_bytes(b"")
    not_a_model = "not a tinyprop model file"
    return [("array.npy", not_a_model), ("list.npz", "description is a JSON list, not an object"),
            ("lacking.npz", "net None is not a mnist net"),
            ("no-meta.npz", not_a_model), ("config.json", not_a_model), ("truncated.npz", "File is not a zip file"),
            ("empty.npz", not_a_model), ("other-net.npz", "net 'mlpx' is not a mnist net"),
            ("other-task.npz", "task 'speech' is not one of tinyprop's tasks"),
            ("bad-sizes.npz", "sizes [784, -5, 10] are not a list of positive whole numbers"),
            ("huge.npz", "layer1.weight has shape (500, 784), the model description says 1000000000000 rows"),
            ("shape.npz", "layer2.bias has shape (1,), the model description says (500,)"),
            ("nan.npz", "layer1.weight holds values that are not finite"),
            ("text.npz", "layer1.bias holds <U1 values, not floats"),
            ("task-list.npz", "task ['mnist'] is not one of tinyprop's tasks"),
            ("limit.npz", "max_examples 'x' is neither null nor a positive whole number")]


@pytest.mark.data
def test_evaluate_refuses_broken_model_files_with_a_message(tmp_path, trained):
    out, _ = trained
    for name, message in write_broken_model_files(tmp_path, out / "model.npz"):
        result = run("evaluate", "--model", tmp_path / name)
        assert result.exit_code == 1 and f"Error: {tmp_path / name}: " in result.output, (name, result.output)
        assert message in result.output and "pickle" not in result.output, (name, result.output)


@pytest.mark.data
def test_train_from_an_nnmnist_config_with_overrides(tmp_path, mnist_dir, monkeypatch):
    config = dict(NetType="mlprand", TrainTop=30, HiddenSize=100, MinibatchSize=10, MaxEpoch=1, IterPerEpoch=1,
                  RandomSeed=5, TrainFile="train-images-idx3-ubyte.gz", TrainLabelFile="train-labels-idx1-ubyte.gz")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("TINYPROP_DATA", os.path.dirname(mnist_dir))
    result = run("train", "--config", path, "--out", tmp_path / "out", "mnist", "--max-examples", "3000")
    assert result.exit_code == 0, result.output
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert (summary["net"], summary["k"], summary["seed"], summary["epochs"]) == ("mlprand", 30, 5, 1)
    assert summary["test_acc"] > 70.0  # random-k k=30 of 100 reached 79.6% (3,000 images, one epoch)
    # evaluate finds the files the model was trained on, not $TINYPROP_DATA's, and its slice of them
    monkeypatch.setenv("TINYPROP_DATA", str(tmp_path / "elsewhere"))
    result = run("evaluate", "--model", tmp_path / "out" / "model.npz")
    assert result.exit_code == 0, result.output
    assert f"data: {os.path.abspath(mnist_dir)}; only the first 3000 of each split" in result.output
    assert f"dev: accuracy {summary['best_dev_acc']:.2f}%" in result.output
    assert f"test: accuracy {summary['test_acc']:.2f}%" in result.output and "(3000 examples)" in result.output


def test_config_errors_stop_before_training(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(dict(NetType="mlptop", TrainTop=500)))
    result = CliRunner().invoke(main, ["train", "--config", str(path), "mnist", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "TrainTop (--k): must be smaller than the hidden size 500, got 500" in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(main, ["train"])
    assert result.exit_code == 2 and "name a task" in result.output


def test_bench_reports_every_variant_and_both_references():
    result = run("bench", "--in", 64, "--out", 40, "--batch", 4, "--k", 8, "--rounds", 2, "--calls", 2, "--no-parser",
                 "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.output)
    linear = [r for r in reports if r["shape"]["kind"] == "linear"]
    assert [(r["shape"]["n_in"], r["shape"]["n_out"]) for r in linear] == [(784, 500), (500, 500), (64, 40)]
    for report in linear:
        assert set(report["variants"]) == {"dense-blas", "dense-loop", "top", "unified", "rand"}
        assert report["variants"]["dense-blas"]["vs_dense-blas"] == 1.0
        assert report["limit"] == report["shape"]["n_out"] / 8
    conv = [r for r in reports if r["shape"]["kind"] == "conv"]
    assert [(r["shape"]["in_channels"], r["shape"]["out_channels"]) for r in conv] == [(1, 16), (16, 32)]
    for report in conv:
        assert set(report["variants"]) == {"dense", "top 0.01", "top 0.02", "top 0.05", "top 0.10"}
    (lstm,) = [r for r in reports if r["shape"]["kind"] == "lstm"]
    assert (lstm["shape"]["hidden"], lstm["shape"]["k"], lstm["limit"]) == (500, 10, 50.0)
    assert set(lstm["variants"]) == {"dense-blas", "dense-loop", "top"}
    top = lstm["variants"]["top"]
    assert top["vs_dense-loop"] == pytest.approx(lstm["variants"]["dense-loop"]["median_us"] / top["median_us"])
    result = run("bench", "--in", 64)
    assert result.exit_code == 2 and "give both --in and --out" in result.output
    result = run("bench", "--in", 0, "--out", 100)
    assert result.exit_code == 2 and "got in 0, out 100" in result.output


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = os.path.join("runs", "mnist-mlp-20261125-120000")
    first, second = claim_folder(name, default=True), claim_folder(name, default=True)
    assert (first, second) == ([os.path.abspath("runs"), name], [name + "-2"])
    assert os.path.isdir(name) and os.path.isdir(name + "-2")


def test_of_two_runs_on_one_out_folder_the_second_is_refused_at_once(tmp_path):
    claim_folder(str(tmp_path / "run"))
    with pytest.raises(Exception, match=f"--out {tmp_path / 'run'}: exists; give a new folder"):
        claim_folder(str(tmp_path / "run"))


def test_a_run_stopped_before_it_wrote_anything_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "runs").mkdir()
    result = run("train", "mnist", "--data-dir", tmp_path / "empty")
    assert result.exit_code == 1 and "MNIST files not found" in result.output
    assert os.listdir(tmp_path / "runs") == []
    for out in (tmp_path / "empty" / "a" / "b", tmp_path / "empty" / "c" / ".." / "d"):
        result = run("train", "mnist", "--data-dir", tmp_path / "empty", "--out", out)
        assert result.exit_code == 1 and "MNIST files not found" in result.output
        assert os.listdir(tmp_path / "empty") == []  # all the folders that --out made go

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr("tinyprop.tasks.run.write_json", interrupted)  # Ctrl-C before the run's first file
        result = run("train", "mnist", "--data-dir", tmp_path / "empty")
        assert result.exit_code == 130 and result.output.endswith("\nstopped\n")
        assert os.listdir(tmp_path / "runs") == []
        os.rmdir(tmp_path / "runs")  # a runs/ that the stopped run made goes too
        result = run("train", "mnist", "--data-dir", tmp_path / "empty")
        assert result.exit_code == 130 and not (tmp_path / "runs").exists()
    with monkeypatch.context() as patch:
        patch.setattr("tinyprop.tasks.mnist.locate_files", interrupted)  # Ctrl-C while the data loads
        result = run("train", "mnist", "--data-dir", tmp_path / "empty", "--out", tmp_path / "run")
    assert result.exit_code == 130 and result.output.endswith(f"continue it with: tinyprop train --resume "
                                                              f"{tmp_path / 'run'}\n")
    assert os.listdir(tmp_path / "run") == ["config.json"]  # settings and seed: enough to start it again
    (tmp_path / "config.json").write_text("{}")  # a user's file, in the folder the command runs in
    monkeypatch.setattr("tinyprop.tasks.settings.make_settings", interrupted)  # Ctrl-C before the run has its folder
    result = run("train", "mnist", "--data-dir", tmp_path / "empty")
    assert result.exit_code == 130 and result.output == "\nstopped\n"


def test_common_options_go_before_or_after_the_task_name_and_a_tasks_own_after_it(tmp_path):
    path = bad_config(tmp_path)
    for args in (["--config", path, "mnist"], ["mnist", "--config", path]):
        result = run("train", *args)
        assert result.exit_code == 1 and f"{path}: TrainTop (--k)" in result.output
    result = run("train", "--out", tmp_path / "a", "mnist", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "--out given twice, before and after the task's name; give it once" \
        in result.output
    result = run("train", "--k", "80", "mnist")
    assert result.exit_code == 2 and "No such option '--k' (a task's options go after its name: tinyprop train " \
        "mnist --k ...)" in result.output
    result = run("train", "--confg", "run.json")  # no task has it: click's own suggestion alone
    assert result.exit_code == 2 and "(a task's options" not in result.output and "--config" in result.output
    result = run("train", "--resume", tmp_path, "--seed", "3")
    assert result.exit_code == 2 and "--resume takes no other options" in result.output


@pytest.mark.data
def test_an_out_folder_that_holds_a_run_is_refused_and_left_as_it_was(tmp_path, trained, mnist_dir):
    out, _ = trained
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    result = run("train", "mnist", "--net", "mlp", "--max-examples", "100", "--data-dir", os.path.dirname(mnist_dir),
                 "--out", out)
    assert result.exit_code == 1
    assert f"Error: --out {out}: holds a run (config.json, metrics.jsonl, model.npz, summary.json); give a new " \
        "folder" in result.output
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    for option in ("--out", "--data-dir"):
        result = run("train", "mnist", option, "")
        assert result.exit_code == 2 and f"Invalid value for '{option}': an empty path" in result.output


@pytest.mark.data
def test_an_out_folder_that_cannot_be_made_is_a_one_line_error(tmp_path, mnist_dir):
    (tmp_path / "file").write_text("")
    result = run("train", "mnist", "--max-examples", "100", "--data-dir", os.path.dirname(mnist_dir),
                 "--out", tmp_path / "file" / "run")
    assert result.output == f"Error: {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file, not a folder\n"
    assert "Traceback" not in result.output


@pytest.mark.data
def test_ctrl_c_during_training_says_how_to_resume(tmp_path, mnist_dir, monkeypatch):
    from tinyprop.tasks.training import train_part

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr("tinyprop.tasks.training.train_part", interrupted)
    result = run("train", "mnist", "--max-examples", "100", "--data-dir", os.path.dirname(mnist_dir),
                 "--out", tmp_path / "run")
    assert result.exit_code == 130
    assert result.output.endswith(f"stopped: {tmp_path / 'run'} holds the run so far; continue it with: tinyprop "
                                  f"train --resume {tmp_path / 'run'}\n")
    assert sorted(os.listdir(tmp_path / "run")) == ["config.json", "metrics.jsonl"]
    monkeypatch.setattr("tinyprop.tasks.training.train_part", train_part)
    result = run("train", "--resume", tmp_path / "run")
    assert result.exit_code == 0 and "from the start: it stopped before its first evaluation" in result.output
    assert json.load(open(tmp_path / "run" / "summary.json"))["test_acc"] > 20


def test_a_model_too_large_for_the_memory_is_a_one_line_error(tmp_path, monkeypatch):
    def too_large(*args):
        raise MemoryError("Unable to allocate 5.70 TiB for an array with shape (1000000000, 784)")
    monkeypatch.setattr("tinyprop.tasks.mnist.locate_files", too_large)  # where a large model's arrays are made
    result = run("train", "mnist", "--data-dir", tmp_path, "--out", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output == "Error: out of memory: Unable to allocate 5.70 TiB for an array with shape (1000000000, " \
        "784); the sizes asked for (--hidden, --batch, ...) are too large for this machine\n"


@pytest.mark.data
@pytest.mark.parametrize("sizes, message", [
    (["--layers", "100000000"], "the MLP 784-500x99999999-10 (--layers 100000000, --hidden 500) has "
                                "25,049,999,896,510 parameters: 373,274.1 GiB with their gradients and adam's state"),
    (["--hidden", "3000000", "--optim", "sgd"], "the MLP 784-3000000x2-10 (--layers 3, --hidden 3000000) has "
                                                "9,002,388,000,010 parameters: 67,073.0 GiB with their gradients and "
                                                "sgd's state")])
def test_an_mlp_larger_than_the_memory_is_refused_before_it_is_built(tmp_path, mnist_dir, sizes, message):
    result = run("train", "mnist", *sizes, "--max-examples", "100", "--data-dir", os.path.dirname(mnist_dir),
                 "--out", tmp_path / "run")
    assert result.exit_code == 1 and f"Error: {message}, and this machine has" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_dense_updates_with_a_dense_mnist_net_is_refused(tmp_path, net):
    result = run("train", "mnist", "--net", net, "--dense-updates", "--out", tmp_path / "run")
    assert result.exit_code == 1 and not (tmp_path / "run").exists()
    assert result.output == f"Error: --dense-updates: --net {net} does not use it; leave it out\n"


def test_evaluate_says_when_the_training_data_has_moved(tmp_path):
    present = tmp_path / "dev.conllu"
    present.write_text("")
    meta = dict(data_files=dict(dev=str(present), test=str(tmp_path / "gone.conllu")), max_examples=None)
    lines, asked = [], []
    found = dict(dev="/data/dev.conllu", test="/data/test.conllu")

    class Located:
        from tinyprop.tasks.pos import PosSettings as Settings

        @staticmethod
        def locate(settings):
            asked.append(settings.data_dir)
            return found
    assert evaluation_data(Located, meta, None, lines.append) == (found, None)
    assert asked == [None] and f"({tmp_path / 'gone.conllu'} missing)" in lines[0] and lines[1] == "data: /data"
    present.with_name("gone.conllu").write_text("")  # all in place: the recorded files, unless --data-dir
    assert evaluation_data(Located, meta, None, lines.append) == (meta["data_files"], None)
    assert evaluation_data(Located, meta, "/other", lines.append) == (found, None) and asked[-1] == "/other"
    lines.clear()
    present.with_name("gone.conllu").unlink()  # a given --data-dir is used without a word of the missing files
    assert evaluation_data(Located, meta, "/data", lines.append) == (found, None) and lines == ["data: /data"]


def bad_config(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(dict(NetType="mlptop", TrainTop=500)))
    return path


def test_a_config_files_bad_value_is_blamed_on_the_file_through_the_command_line(tmp_path):
    path = bad_config(tmp_path)
    result = run("train", "--config", path, "mnist", "--data-dir", tmp_path, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert f"Error: {path}: TrainTop (--k): must be smaller than the hidden size 500, got 500" in result.output


def test_train_with_only_a_config_trains_what_it_says(tmp_path):
    path = bad_config(tmp_path)
    result = run("train", "--config", path)  # no task name: the config's MNIST net, checked first
    assert result.exit_code == 1 and "TrainTop (--k): must be smaller than the hidden size" in result.output


def test_config_with_the_parser_is_refused(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("{}")
    result = run("train", "--config", path, "parse", "--data-dir", tmp_path, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "nnmnist configs are MNIST's; the parse task takes its settings as options" \
        in result.output


def test_output_is_refused_for_an_mnist_model(tmp_path):
    path = tmp_path / "model.npz"
    write_npz(str(path), model_file_arrays([], dict(task="mnist", net="mlp", sizes=[784, 10], k=None, unified=False)))
    result = run("evaluate", "--model", path, "--output", tmp_path / "x.conllu")
    assert result.exit_code == 1 and "--output writes the parser's parsed test set (CoNLL-U); mnist models have no " \
        "such output" in result.output


def test_an_output_file_that_cannot_be_written_is_a_one_line_error(tmp_path, tiny_treebank):
    vocabulary = Vocabulary(tiny_treebank)
    model = ParserModel(vocabulary, hidden=4, rng=np.random.default_rng(0))
    meta = dict(task="parse", net="mlp", k=None, k_out=None, hidden=4, vocabulary=vocabulary.to_json(),
                data_files={}, max_examples=None)
    write_npz(str(tmp_path / "model.npz"), model_file_arrays(model.params(), meta))
    (tmp_path / "file").write_text("")
    result = run("evaluate", "--model", tmp_path / "model.npz", "--data-dir", tmp_path,
                    "--output", tmp_path / "file" / "parsed.conllu")
    # refused before the evaluation, not after it
    assert result.exit_code == 1 and result.output == f"Error: {tmp_path / 'file' / 'parsed.conllu'}: Not a directory\n"


@pytest.fixture
def stub_bench(monkeypatch):
    calls = []

    def fake_layer(n_in, n_out, batch, k, **kwargs):
        calls.append((n_in, n_out, batch, k))
        return dict(shape=dict(kind="linear"))
    monkeypatch.setattr("tinyprop.bench.bench_layer", fake_layer)
    return calls


def test_bench_accepts_k_equal_to_out(stub_bench):
    result = run("bench", "--in", 64, "--out", 8, "--k", 8, "--no-conv", "--no-parser", "--no-lstm", "--json")
    assert result.exit_code == 0, result.output
    assert stub_bench[-1] == (64, 8, 10, 8)


def test_bench_refuses_a_batch_of_zero(stub_bench):
    result = run("bench", "--batch", 0, "--no-conv", "--no-parser", "--no-lstm", "--json")
    assert result.exit_code == 2 and "batch 0" in result.output and stub_bench == []


@pytest.mark.data
def test_sgd_diverging_under_the_default_clipping_stops_with_advice(tmp_path, mnist_dir):
    """SGD at learning rate 1 (gradients clipped at 5) reaches a finite mean loss of about 2e5 in the first part:
    not NaN, but 100 times an untrained model's ln(10) many times over."""
    result = run("train", "mnist", "--optim", "sgd", "--lr", 1, "--max-examples", 1000, "--epochs", 1, "--seed", 1,
                 "--data-dir", os.path.dirname(mnist_dir), "--out", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.search(r"Error: epoch 1 part 1: the mean training loss is [0-9.e+]+ per prediction, above 100 x ln\(10\) "
                     r"= 230 \(100 times an untrained model's\): training has diverged; lower the learning rate",
                     result.output), result.output
    result = run("train", "mnist", "--optim", "sgd", "--lr", 0.05, "--max-examples", 1000, "--epochs", 1, "--seed", 1,
                 "--data-dir", os.path.dirname(mnist_dir), "--out", tmp_path / "fine")
    assert result.exit_code == 0, result.output


@pytest.mark.data
def test_a_runs_config_json_is_a_config_file_too(tmp_path, trained):
    out, _ = trained
    result = run("train", "--config", out / "config.json", "--out", tmp_path / "again", "mnist", "--epochs", 1,
                 "--max-examples", 500)
    assert result.exit_code == 0, result.output
    before, after = (json.load(open(folder / "config.json"))["settings"] for folder in (out, tmp_path / "again"))
    assert after == dict(before, epochs=1, max_examples=500)
    result = run("train", "--config", out / "config.json", "pos")
    assert result.exit_code == 1 and f"{out / 'config.json'}: the config of a mnist run, not of a pos run" \
        in result.output


def test_a_runs_config_json_serves_every_task_with_its_own_defaults_and_seed(tmp_path):
    from dataclasses import asdict

    from tinyprop.cli import read_config
    from tinyprop.tasks.mnist import MnistSettings, MnistTask
    from tinyprop.tasks.parse import ParseSettings, ParseTask
    from tinyprop.tasks.pos import PosSettings, TaggerTask
    from tinyprop.tasks.settings import make_settings
    for task, settings in ((TaggerTask, PosSettings(net="lstmtop", hidden=40)), (ParseTask, ParseSettings(net="mlp")),
                           (MnistTask, MnistSettings(net="mlp", seed=-1))):
        path = tmp_path / f"{task.name}.json"
        path.write_text(json.dumps(dict(task=task.name, settings=asdict(settings.checked()), seed_used=7)))
        again = make_settings(task.Settings, read_config(task, str(path)), {})
        assert again == settings.checked().__class__(**dict(asdict(settings.checked()), seed=7))  # the seed used
    # a dense run's config.json with --net mlptop: the papers' k (80), not nnmnist's default (160)
    assert make_settings(MnistSettings, read_config(MnistTask, str(tmp_path / "mnist.json")), dict(net="mlptop")).k == 80
    parse = make_settings(ParseSettings, read_config(ParseTask, str(tmp_path / "parse.json")), dict(net="mlptop", k=5))
    assert (parse.k, parse.k_out) == (5, None)  # k_out follows k


def test_an_unknown_task_is_named_with_the_tasks_and_the_nearest():
    result = run("train", "minst")
    assert result.exit_code == 2 and "no task 'minst'; the tasks are mnist, parse, pos (did you mean mnist?)" \
        in result.output
