import os

from tinyprop.environment import set_thread_defaults

set_thread_defaults()  # as the command line runs

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")
EWT_FILES = ("en_ewt-ud-train.conllu", "en_ewt-ud-dev.conllu", "en_ewt-ud-test.conllu")
DATA_HINT = "set TINYPROP_DATA to the folder holding mnist/ and ud-english-ewt/"


def data_folder(name):
    """$TINYPROP_DATA/name, else ../shared/data/name beside the project."""
    return os.path.join(os.environ.get("TINYPROP_DATA") or os.path.join(os.path.dirname(ROOT), "shared", "data"), name)


DATA_SETS = {  # fixture: (folder in the data folder, its files, what to call them)
    "mnist_dir": ("mnist", MNIST_FILES, "MNIST (train-images-idx3-ubyte.gz and the other three)"),
    "ewt_dir": ("ud-english-ewt", EWT_FILES, "UD English EWT (en_ewt-ud-{train,dev,test}.conllu)"),
}


def missing_data(fixture):
    """Why the real data of `fixture` cannot be used (the reason to skip), or None when all its files are there."""
    name, files, label = DATA_SETS[fixture]
    folder = data_folder(name)
    if all(os.path.isfile(os.path.join(folder, file)) for file in files):
        return None
    return f"{label} not found in {folder}; {DATA_HINT}"


def pytest_runtest_setup(item):
    """A test marked `data` (it reads the real MNIST or UD English EWT files) is skipped, with the reason,
    when they are absent: those of the fixture it uses (mnist_dir, ewt_dir), else both sets."""
    if item.get_closest_marker("data") is None:
        return
    uses = [fixture for fixture in DATA_SETS if fixture in item.fixturenames]
    for fixture in uses or DATA_SETS:
        reason = missing_data(fixture)
        if reason:
            pytest.skip(reason)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST files (the four .gz): $TINYPROP_DATA/mnist, else ../shared/data/mnist beside the project."""
    reason = missing_data("mnist_dir")
    if reason:
        pytest.skip(reason)
    return data_folder("mnist")


@pytest.fixture(scope="session")
def ewt_dir():
    """The folder of the three UD English EWT files: $TINYPROP_DATA/ud-english-ewt, else
    ../shared/data/ud-english-ewt beside the project."""
    reason = missing_data("ewt_dir")
    if reason:
        pytest.skip(reason)
    return data_folder("ud-english-ewt")


@pytest.fixture(scope="session")
def data_root(mnist_dir, ewt_dir):
    """The data folder holding both mnist/ and ud-english-ewt/, as --data-dir and TINYPROP_DATA take it."""
    return os.path.dirname(mnist_dir)


@pytest.fixture
def tiny_treebank(tmp_path):
    """The three EWT files in tmp_path, each the same two three-word sentences; returns them as read."""
    from tinyprop.tasks.conllu import read_conllu
    word = "{id}\t{form}\t_\t{upos}\t{xpos}\t_\t{head}\t{rel}\t_\t_"
    sentence = "\n".join([word.format(id=1, form="Dogs", upos="NOUN", xpos="NNS", head=2, rel="nsubj"),
                          word.format(id=2, form="bark", upos="VERB", xpos="VBP", head=0, rel="root"),
                          word.format(id=3, form=".", upos="PUNCT", xpos=".", head=2, rel="punct")]) + "\n\n"
    for split in ("train", "dev", "test"):
        (tmp_path / f"en_ewt-ud-{split}.conllu").write_text(sentence * 2)
    return read_conllu(str(tmp_path / "en_ewt-ud-train.conllu"))
