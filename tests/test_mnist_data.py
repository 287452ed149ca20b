"""MNIST files: the IDX reader's checks, finding files, and verified downloads."""
import gzip
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tinyprop.cli import main
from tinyprop.tasks import mnist
from tinyprop.tasks.files import DataError


def idx_bytes(array, magic=None):
    ndim = array.ndim
    header = (magic if magic is not None else 0x800 + ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path, data, compress=False):
    with open(path, "wb") as stream:
        stream.write(gzip.compress(data) if compress else data)
    return str(path)


def fake_mnist(folder, n_train=5010, n_test=20, dotted=False, compress=True, rng=None):
    """Four small IDX files in `folder`, named in either style."""
    rng = rng or np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)), "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)), "test_labels": rng.integers(0, 10, n_test),
    }
    for key, array in arrays.items():
        name = mnist.FILES[key].replace("-idx", ".idx") if dotted else mnist.FILES[key]
        write(os.path.join(folder, name + (".gz" if compress else "")), idx_bytes(array), compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, compress):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    path = write(tmp_path / "a", idx_bytes(array), compress)
    assert np.array_equal(mnist.read_idx(path, 3), array)


@pytest.mark.parametrize("data,message", [
    (idx_bytes(np.zeros((2, 3, 4)), magic=0x0801), "magic number 0x00000801, expected 0x00000803"),
    (idx_bytes(np.zeros((2, 3, 4)))[:-5], "it is truncated"),
    (idx_bytes(np.zeros((2, 3, 4))) + b"xx", "longer than its header says"),
    (b"\x00\x00\x08", "too short for an IDX header"),
    (b"\x1f\x8b" + b"not really gzip", "cannot read it as an IDX file"),
])
def test_read_idx_names_the_file_and_the_problem(tmp_path, data, message):
    path = write(tmp_path / "bad-file", data)
    with pytest.raises(DataError, match=message) as error:
        mnist.read_idx(path, 3)
    assert str(path) in str(error.value)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((20, 28, 28))))
    path = write(tmp_path / "cut.gz", data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read it as an IDX file"):
        mnist.read_idx(path, 3)


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 4, (20, 28, 28)))))
    data[40:50] = bytes(byte ^ 0xFF for byte in data[40:50])  # inside the deflate stream: zlib.error
    path = write(tmp_path / "corrupt.gz", bytes(data))
    with pytest.raises(DataError, match="corrupt.gz: cannot read it as an IDX file"):
        mnist.read_idx(path, 3)


@pytest.mark.parametrize("dotted,compress,subfolder", [(False, True, False), (True, False, True)])
def test_both_naming_styles_and_the_split(tmp_path, dotted, compress, subfolder):
    folder = tmp_path / "mnist" if subfolder else tmp_path
    folder.mkdir(exist_ok=True)
    arrays = fake_mnist(folder, dotted=dotted, compress=compress)
    data = mnist.Mnist(mnist.locate_files(str(tmp_path)))
    train_x, train_y = data.splits["train"]
    dev_x, dev_y = data.splits["dev"]
    assert dev_x.shape == (5000, 784) and train_x.shape == (10, 784) and data.splits["test"][0].shape == (20, 784)
    assert train_x.dtype == np.uint8
    assert np.array_equal(dev_x, arrays["train_images"][:5000].reshape(5000, 784))
    assert np.array_equal(dev_y, arrays["train_labels"][:5000])
    assert np.array_equal(train_x, arrays["train_images"][5000:].reshape(10, 784))
    assert np.array_equal(train_y, arrays["train_labels"][5000:])
    test_x, test_y = data.splits["test"]
    assert np.array_equal(test_x, arrays["test_images"].reshape(20, 784))
    assert np.array_equal(test_y, arrays["test_labels"])


def test_file_names_from_a_config_are_looked_up_in_the_data_folder(tmp_path):
    fake_mnist(tmp_path)  # train-images-idx3-ubyte.gz ...
    nnmnist_default_json = dict(train_images="train-images.idx3-ubyte", train_labels="train-labels.idx1-ubyte",
                                test_images="t10k-images.idx3-ubyte", test_labels="t10k-labels.idx1-ubyte")
    paths = mnist.locate_files(str(tmp_path), nnmnist_default_json)  # MNIST's own names: either style will do
    assert paths == {key: str(tmp_path / (stem + ".gz")) for key, stem in mnist.FILES.items()}
    (tmp_path / "labels.idx1-ubyte").write_bytes((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    paths = mnist.locate_files(str(tmp_path), dict(test_labels="labels.idx1-ubyte"))
    assert paths["test_labels"] == str(tmp_path / "labels.idx1-ubyte")
    with pytest.raises(DataError, match="mine.idx1-ubyte: no such file, beside the config file or in "):
        mnist.locate_files(str(tmp_path), dict(test_labels="mine.idx1-ubyte"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'sub'}: a folder, not a file \\(given for the MNIST test labels"):
        mnist.locate_files(str(tmp_path), dict(test_labels="sub"))


def test_the_development_set_must_leave_images_to_train_on(tmp_path):
    fake_mnist(tmp_path, n_train=5000)
    with pytest.raises(DataError, match="5000 images; the first 5000 are the development set"):
        mnist.Mnist(mnist.locate_files(str(tmp_path)))


def test_pixels_scale_to_the_unit_interval():
    np.testing.assert_allclose(mnist.scale_pixels(np.array([[0, 51, 255]], np.uint8)), [[0.0, 0.2, 1.0]], rtol=1e-6)


def test_image_and_label_counts_must_agree(tmp_path):
    fake_mnist(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(19)), compress=True)
    with pytest.raises(DataError, match="has 20 images but .* has 19 labels"):
        mnist.Mnist(mnist.locate_files(str(tmp_path)))


def test_a_label_beyond_label_count_names_the_labels_file(tmp_path):
    fake_mnist(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.full(20, 200)), compress=True)
    result = CliRunner().invoke(main, ["train", "mnist", "--epochs", "1", "--iter-per-epoch", "1", "--data-dir",
                                       str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "t10k-labels-idx1-ubyte.gz: label 200 in the test set, but LabelCount is 10 (labels 0 to 9): if the " \
        "file should hold MNIST's 0-9, it is damaged" in result.output


def test_evaluate_checks_its_data_as_training_does(tmp_path):
    """A model trained on good files, scored on files with a label beyond its outputs or counts that differ."""
    (tmp_path / "good").mkdir()
    fake_mnist(tmp_path / "good")
    result = CliRunner().invoke(main, ["train", "mnist", "--epochs", "1", "--iter-per-epoch", "1", "--hidden", "8",
                                       "--data-dir", str(tmp_path / "good"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    (tmp_path / "bad").mkdir()
    fake_mnist(tmp_path / "bad")
    write(tmp_path / "bad" / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.full(20, 12)), compress=True)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(tmp_path / "run"), "--data-dir",
                                       str(tmp_path / "bad")])
    assert result.exit_code == 1 and "t10k-labels-idx1-ubyte.gz: label 12 in the test set, but the model has 10 " \
        "(labels 0 to 9)" in result.output
    write(tmp_path / "bad" / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(19)), compress=True)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(tmp_path / "run"), "--data-dir",
                                       str(tmp_path / "bad")])
    assert result.exit_code == 1 and "has 20 images but" in result.output and "has 19 labels" in result.output


def test_a_relative_config_path_is_looked_up_in_the_data_dir_not_the_working_folder(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    fake_mnist(data)
    work = tmp_path / "work"
    work.mkdir()
    (work / "train-labels-idx1-ubyte.gz").write_bytes(b"a decoy")
    monkeypatch.chdir(work)
    paths = mnist.locate_files(str(data), dict(train_labels="train-labels-idx1-ubyte.gz"))
    assert paths["train_labels"] == str(data / "train-labels-idx1-ubyte.gz")


def test_missing_files_in_a_given_folder(tmp_path):
    with pytest.raises(DataError, match="MNIST files not found in .*train-images-idx3-ubyte.*TINYPROP_DATA"):
        mnist.locate_files(str(tmp_path))


def test_data_dir_comes_from_the_option_then_the_environment(monkeypatch):
    monkeypatch.setenv("TINYPROP_DATA", "/from/env")
    assert mnist.resolve_data_dir("/from/option") == ("/from/option", "--data-dir")
    assert mnist.resolve_data_dir() == ("/from/env", "TINYPROP_DATA")
    monkeypatch.delenv("TINYPROP_DATA")
    assert mnist.resolve_data_dir()[1] == "cache"


@pytest.mark.data
def test_download_verifies_the_canonical_checksums(tmp_path, monkeypatch, mnist_dir):
    """Mirrors here are file:// folders. The shared train images are a rebuilt copy whose sha256
    is not the canonical one (see the data README), so their download must be refused."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in os.listdir(mnist_dir):
        shutil.copy(os.path.join(mnist_dir, name), mirror / name)
    cache = tmp_path / "cache"
    monkeypatch.delenv("TINYPROP_DATA", raising=False)
    monkeypatch.setattr(mnist, "default_cache_dir", lambda: str(cache))
    mirrors = [mirror.as_uri() + "/"]
    path = mnist.download("t10k-labels-idx1-ubyte", str(cache), mirrors)
    assert open(path, "rb").read() == open(mirror / "t10k-labels-idx1-ubyte.gz", "rb").read()
    with pytest.raises(DataError, match="(?s)could not download train-images-idx3-ubyte.gz.*is not the canonical.*by hand"):
        mnist.locate_files(mirrors=mirrors)
    # the three genuine files were fetched; nothing half-written was left behind
    assert sorted(os.listdir(cache)) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                                         "train-labels-idx1-ubyte.gz"]


@pytest.mark.data
def test_download_goes_on_to_the_next_mirror_after_a_bad_checksum(tmp_path, mnist_dir):
    folder = mnist_dir
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    good.mkdir()
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    shutil.copy(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), good)
    path = mnist.download("t10k-labels-idx1-ubyte", str(tmp_path / "cache"),
                          [bad.as_uri() + "/", good.as_uri() + "/"])
    assert open(path, "rb").read() == (good / "t10k-labels-idx1-ubyte.gz").read_bytes()


def test_decoding_seconds_puts_the_task_model_back():
    class Data:
        splits = {"test": (np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8))}
    model = mnist.build_mlp([784, 5, 10], rng=np.random.default_rng(0))
    task = mnist.MnistTask(Data(), model, dict(net="mlp", sizes=[784, 5, 10]))
    assert task.decoding_seconds(mnist.build_mlp([784, 7, 10], rng=np.random.default_rng(1)), repeats=1) > 0
    assert task.model is model
