import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the command line runs (see cli.py)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST files: $TINYPROP_DATA/mnist, else ../shared/data/mnist beside the project."""
    base = os.environ.get("TINYPROP_DATA") or os.path.join(ROOT, "..", "shared", "data")
    folder = os.path.join(base, "mnist")
    if not os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte.gz")):
        pytest.fail(f"the MNIST files are not in {folder}; set TINYPROP_DATA to the shared data folder")
    return folder


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
