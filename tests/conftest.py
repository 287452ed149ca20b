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
