"""The MNIST task: the IDX files, the papers' split, the MLP and CNN, training steps and evaluation.

Where the data comes from: the first of these that is set (a folder given but lacking the
files is an error, not a reason to look further):
  1. --data-dir DIR,
  2. the TINYPROP_DATA environment variable,
  3. the user cache ~/.cache/tinyprop, into which the four files are downloaded
     (from the usual public mirrors, checked against their canonical sha256) if absent.
In a data folder the files may sit at the top or in `mnist/`, gzip-compressed or not,
named in either style: `train-images-idx3-ubyte[.gz]` or `train-images.idx3-ubyte[.gz]`.

Split as in the papers and nnmnist: the first 5,000 training images are the
development set, the other 55,000 train, the 10,000 test images test.
Pixels stay uint8 in memory; `scale_pixels` turns a mini-batch into floats in [0, 1].
"""
import gzip
import hashlib
import io
import os
import sys
import time
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Optional

import click
import numpy as np

from tinyprop.tasks.files import DataError, training_data, write_bytes
from tinyprop.tasks.settings import ConfigError, Settings, about, retold, setting
from tinyprop.tasks.training import OPTIMIZER_CLASSES, Task
from tinyprop.layers import ActiveLinear, Conv2d, Dropout, Linear, MaxPool2d, ReLU, Reshape, Sequential
from tinyprop.meact import MASKS

MLP_NETS = ("mlp", "mlptop", "mlprand", "mlpvar", "mlpact")
CNN_NETS = ("cnn", "cnntop")
MNIST_NETS = MLP_NETS + CNN_NETS
MEPROP_NETS = ("mlptop", "mlprand", "mlpvar", "cnntop")
CNN_HIDDEN = 512  # the papers' CNN: fully connected 512 after the convolutions
DEV_SIZE = 5000
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CANONICAL_SHA256 = {  # of the .gz files the mirrors serve
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes, 3 or 1 dimensions
IMAGE_SHAPE = (28, 28)


def read_idx(path, ndim=None, data=None):
    """An IDX file of unsigned bytes (gzip or raw) with `ndim` dimensions (None: as its header says), its header
    and length checked: a uint8 array of the header's shape (MNIST's images (n, 28, 28), its labels (n,)).
    data: the file's bytes, already read (stdin, say), which `path` then names in messages."""
    try:
        if data is None:
            with open(path, "rb") as stream:
                data = stream.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path}: cannot read it as an IDX file ({error}); "
                        "replace it with a fresh copy of the MNIST file") from error
    if ndim is None:
        ndim = data[3] if len(data) >= 4 and data[3] in IDX_MAGIC else 3  # the magic's check below explains
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX header; the file is truncated")
    magic = int.from_bytes(data[:4], "big")
    if magic != IDX_MAGIC[ndim]:
        raise DataError(f"{path}: magic number 0x{magic:08x}, expected 0x{IDX_MAGIC[ndim]:08x} "
                        f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}); "
                        "is this the right MNIST file?")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path}: the header says {'x'.join(map(str, shape))} values, so {expected} bytes, "
                        f"but the file has {len(data)}: it is {what}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def candidate_names(stem):
    """Both naming styles, raw or gzip: train-images-idx3-ubyte[.gz], train-images.idx3-ubyte[.gz]."""
    dotted = stem.replace("-idx", ".idx")
    return [name for base in (stem, dotted) for name in (base, base + ".gz")]


def find_in_folder(folder, stem):
    for where in (folder, os.path.join(folder, "mnist")):
        for name in candidate_names(stem):
            path = os.path.join(where, name)
            if os.path.isfile(path):
                return path
    return None


def default_cache_dir():
    return os.path.join(os.path.expanduser("~"), ".cache", "tinyprop")


def resolve_data_dir(data_dir=None):
    """The data folder and where it came from: --data-dir, then TINYPROP_DATA, then the cache."""
    if data_dir:
        return data_dir, "--data-dir"
    if os.environ.get("TINYPROP_DATA"):
        return os.environ["TINYPROP_DATA"], "TINYPROP_DATA"
    return default_cache_dir(), "cache"


def locate_files(data_dir=None, explicit=None, mirrors=MIRRORS):
    """Paths of the four MNIST files.

    `explicit` maps keys of FILES to paths from a config file: absolute ones are used as they are,
    relative ones (not found beside the config file) are looked up in the data folder. A relative
    name that is MNIST's own (nnmnist's default.json gives train-images.idx3-ubyte) is found there
    in either naming style, raw or .gz, as the files are without a config.
    """
    explicit = explicit or {}
    folder, source = resolve_data_dir(data_dir)
    paths, missing = {}, []
    for key, stem in FILES.items():
        given = explicit.get(key)
        if given:
            places = [given] if os.path.isabs(given) else [os.path.join(where, given)
                                                           for where in (folder, os.path.join(folder, "mnist"))]
            found = [path for path in places if os.path.isfile(path)]
            if found:
                paths[key] = found[0]
                continue
            if given not in candidate_names(stem):
                folders = [path for path in places if os.path.isdir(path)]
                problem = f"{folders[0]}: a folder, not a file" if folders else \
                    f"{given}: no such file, beside the config file or in {folder}"
                raise DataError(f"{problem} (given for the MNIST {key.replace('_', ' ')})")
        paths[key] = find_in_folder(folder, stem)
        if paths[key] is None:
            missing.append(stem)
    if missing and source == "cache":
        failures = []
        for stem in missing:
            try:
                paths[_key_of(stem)] = download(stem, folder, mirrors)
            except DataError as error:
                failures.append(str(error))
        if failures:
            raise DataError("\n".join(failures) + "\nDownload the MNIST files by hand and point --data-dir or "
                            "TINYPROP_DATA at their folder")
    elif missing:
        raise DataError(f"MNIST files not found in {folder} (from {source}), nor in {os.path.join(folder, 'mnist')}: "
                        f"{', '.join(missing)} (raw or .gz, either naming style). Point --data-dir or "
                        "TINYPROP_DATA at a folder that has them, or set neither to download them into "
                        f"{default_cache_dir()}")
    return paths


def _key_of(stem):
    return next(key for key, value in FILES.items() if value == stem)


def download(stem, folder, mirrors=MIRRORS):
    """Fetch `stem`.gz from the first mirror that answers, verify its sha256, write it atomically."""
    name = stem + ".gz"
    target = os.path.join(folder, name)
    errors = []
    for mirror in mirrors:
        url = mirror + name
        try:
            data = _fetch(url)
        except OSError as error:
            errors.append(f"{url}: {error}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != CANONICAL_SHA256[name]:
            errors.append(f"{url}: sha256 {digest} is not the canonical {CANONICAL_SHA256[name]}")
            continue
        write_bytes(target, data)
        return target
    raise DataError(f"could not download {name}:\n  " + "\n  ".join(errors))


def _fetch(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        chunks = []
        with click.progressbar(length=total, label=f"downloading {url.rsplit('/', 1)[-1]}",
                               file=sys.stderr) as bar:
            while chunk := response.read(1 << 16):
                chunks.append(chunk)
                bar.update(len(chunk))
    return b"".join(chunks)


class Mnist:
    """The papers' MNIST split. images: (N, 784) uint8; labels: (N,) uint8."""

    def __init__(self, paths):
        train_images = read_idx(paths["train_images"], 3)
        train_labels = read_idx(paths["train_labels"], 1)
        test_images = read_idx(paths["test_images"], 3)
        test_labels = read_idx(paths["test_labels"], 1)
        for images, labels, image_key, label_key in ((train_images, train_labels, "train_images", "train_labels"),
                                                     (test_images, test_labels, "test_images", "test_labels")):
            if images.shape[0] != labels.shape[0]:
                raise DataError(f"{paths[image_key]} has {images.shape[0]} images but {paths[label_key]} "
                                f"has {labels.shape[0]} labels")
            if images.shape[1:] != IMAGE_SHAPE:
                raise DataError(f"{paths[image_key]}: images of {images.shape[1:]}, expected 28x28")
        if train_images.shape[0] <= DEV_SIZE:
            raise DataError(f"{paths['train_images']}: {train_images.shape[0]} images; the first {DEV_SIZE} "
                            "are the development set, so more are needed to train")
        flat_train = train_images.reshape(train_images.shape[0], -1)
        self.paths = paths
        self.splits = {
            "train": (flat_train[DEV_SIZE:], train_labels[DEV_SIZE:]),
            "dev": (flat_train[:DEV_SIZE], train_labels[:DEV_SIZE]),
            "test": (test_images.reshape(test_images.shape[0], -1), test_labels),
        }

    def keep_first(self, limit):
        """Keep the first `limit` examples of each split (for quick runs and tests; None: all)."""
        self.splits = {split: (images[:limit], labels[:limit]) for split, (images, labels) in self.splits.items()}

    def size(self, split):
        return self.splits[split][1].shape[0]

    @property
    def train_size(self):
        return self.size("train")

    @property
    def n_inputs(self):
        return self.splits["train"][0].shape[1]

    def count_text(self, split):
        return f"{self.size(split)} examples"

    def check_labels(self, count, what, advice):
        """Every label below `count` (`what` says where the count comes from), else a DataError naming the file."""
        for split, (_, labels) in self.splits.items():
            if labels.size and labels.max() >= count:
                path = self.paths["test_labels" if split == "test" else "train_labels"]
                raise DataError(f"{path}: label {labels.max()} in the {split} set, but {what} {count} (labels 0 to "
                                f"{count - 1}): if the file should hold MNIST's 0-9, it is damaged; for a data set of "
                                f"more classes, {advice}")


def scale_pixels(images):
    """uint8 pixels (batch, 784) -> float32 in [0, 1]."""
    return images.astype(np.float32) * np.float32(1 / 255)


def evaluation_batch(net):
    """Images scored at a time: it does not change the results; the CNN's patches are large."""
    return 50 if net in CNN_NETS else 1000


def logits_in_batches(model, images, batch):
    """(first, logits (batch, classes)) of images (n, 784), `batch` at a time: uint8 pixels scaled as in
    training, or float32 ones in [0, 1]."""
    for first in range(0, images.shape[0], batch):
        part = images[first:first + batch]
        yield first, model.forward(scale_pixels(part) if part.dtype == np.uint8 else part)


NPY_MAGIC = b"\x93NUMPY"


def read_images(path, data):
    """Images to classify, from the bytes of a .npy array (shape (n, 28, 28) or (n, 784); pixels uint8 0-255,
    other whole numbers 0-255, or floats 0-1) or of an IDX image file (gzip or raw): (n, 784), uint8, or
    float32 in [0, 1] (what `scale_pixels` makes of uint8). `path` names the file in messages."""
    wanted = "mnist models classify an IDX image file, gzip-compressed or not, or a .npy array n x 28 x 28 or n x 784"
    if not data.startswith(NPY_MAGIC):
        try:
            images = read_idx(path, 3, data)
        except DataError as error:
            raise DataError(f"{error} ({wanted})") from error
        if images.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"{path}: images of {'x'.join(map(str, images.shape[1:]))} pixels; {wanted}")
        return images.reshape(-1, 784)
    try:
        images = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise DataError(f"{path}: cannot read it as a .npy array ({error})") from error
    if images.ndim not in (2, 3) or images.shape[1:] not in (IMAGE_SHAPE, (784,)):
        raise DataError(f"{path}: an array of shape {images.shape}; {wanted} (one image: 1 x 28 x 28)")
    images = images.reshape(-1, 784)  # (0, 784) too
    if images.dtype.kind in "ui":
        if images.size and not 0 <= images.min() <= images.max() <= 255:
            raise DataError(f"{path}: whole-number pixels from {images.min()} to {images.max()}; they must lie in "
                            "0-255, as MNIST's")
        return images.astype(np.uint8)
    if images.dtype.kind != "f":
        raise DataError(f"{path}: {images.dtype} values; pixels are uint8 0-255 or floats 0-1")
    if not np.isfinite(images).all():
        raise DataError(f"{path}: pixels that are not finite (NaN or infinite)")
    if images.size and not 0 <= images.min() <= images.max() <= 1:
        raise DataError(f"{path}: float pixels from {images.min():g} to {images.max():g}; training scales pixels "
                        "to 0-1 (uint8 / 255): divide by 255, or give uint8 pixels 0-255")
    return images.astype(np.float32)


def build_mlp(sizes, net="mlp", k=None, unified=False, dropout=0.0, rng=None):
    """The papers' MNIST MLP: Linear, ReLU[, Dropout], ..., Linear (sizes: in, hidden..., out).

    meProp (mlptop, mlprand, and mlpvar, which meSimp then simplifies) applies to the
    hidden layers; the 10-unit output layer stays dense (TKDE 2018, Section 2.3.1). mlpact's hidden layers
    are ActiveLinear, meAct's (Section 3.5), and its output layer a dense Linear.
    """
    rng = rng if rng is not None else np.random.default_rng()
    selection = {"mlptop": "unified" if unified else "top", "mlprand": "rand", "mlpvar": "top"}.get(net)
    layers = []
    for position, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        hidden = position < len(sizes) - 1
        sparse = hidden and selection is not None
        if hidden and net == "mlpact":
            layers.append(ActiveLinear(n_in, n_out, rng=rng, name=f"layer{position}"))
        else:
            layers.append(Linear(n_in, n_out, k=min(k, n_out) if sparse else None,
                                 selection=selection if sparse else "top", rng=rng, name=f"layer{position}"))
        if hidden:
            layers.append(ReLU())
            if dropout:
                layers.append(Dropout(dropout, rng))
    return Sequential(layers)


CNN_CHANNELS = (16, 32)


def build_cnn(net="cnn", k=None, ratio=None, dropout=0.0, n_out=10, rng=None):
    """The papers' MNIST CNN (TKDE 2018, Section 3.3.2): two 5x5 convolutions (16 and 32 channels,
    padding 2), each followed by ReLU and 2x2 max pooling, then fully connected 512 and 10.

    cnntop applies spatial top-k (ratio) to both convolutions and top-k (k) to the hidden
    fully connected layer; the output layer stays dense.
    """
    rng = rng if rng is not None else np.random.default_rng()
    sparse = net == "cnntop"
    layers = [Reshape((1, 28, 28))]
    in_channels = 1
    for position, channels in enumerate(CNN_CHANNELS, 1):
        layers += [Conv2d(in_channels, channels, 5, padding=2, ratio=ratio if sparse else None, rng=rng,
                          name=f"conv{position}"), ReLU(), MaxPool2d(2)]
        in_channels = channels
    layers += [Reshape((-1,)), Linear(in_channels * 7 * 7, CNN_HIDDEN, k=k if sparse else None, rng=rng,
                                      name="fc1"), ReLU()]
    if dropout:
        layers.append(Dropout(dropout, rng))
    layers.append(Linear(CNN_HIDDEN, n_out, rng=rng, name="fc2"))
    return Sequential(layers)


def linear_layers(model):
    return [layer for layer in model.layers if isinstance(layer, Linear)]


@dataclass
class MnistSettings(Settings):
    """The papers' MNIST setting (TKDE 2018, Section 3.1 and Table 2): the MLP 784-500-500-10, ReLU, Adam,
    mini-batch 10, 20 epochs, dense (--net mlp) unless --net says otherwise, meProp's k 80; nnmnist's config
    files set the same fields by its keys."""

    net: str = retold(Settings, "net", "mlp", choices=MNIST_NETS,
                      help="mlp: dense MLP; mlptop: meProp top-k; mlprand: random k; mlpvar: meSimp; mlpact: meAct; "
                           "cnn: dense CNN; cnntop: CNN with spatial top-k.")
    dense_updates: bool = retold(Settings, "dense_updates", nets=MEPROP_NETS + ("mlpact",),
                                 help=about(Settings, "dense_updates").help + " (The dense nets update every row "
                                      "anyway.)")
    hidden: int = retold(Settings, "hidden", nets=MLP_NETS, help="MLP: hidden layer size.")
    k: Optional[int] = retold(Settings, "k", help="Rows kept per example (with --unified, per mini-batch) in the hidden (fully "
                                   "connected) layers' backward.")
    dropout: float = retold(Settings, "dropout", help="Dropout rate after each hidden layer.")
    data_dir: Optional[str] = retold(Settings, "data_dir", help="Folder with the MNIST files; else $TINYPROP_DATA, "
                                                             "else ~/.cache/tinyprop (downloaded).")
    layers: int = setting(3, "MLP: linear layers, counting the output layer.", key="Layers", nets=MLP_NETS, at_least=1)
    k_ratio: float = setting(0.05, "cnntop: share of each feature map's positions kept by the convolutions' "
                                   "spatial top-k.", nets=("cnntop",), above=0, at_most=1)
    unified: bool = setting(False, "mlptop with one top-k set per mini-batch.", nets=("mlptop",))
    act_after: int = setting(10, "mlpact: dense epochs before meAct (Algorithm 3's e), during which each example's "
                                 "gradients are recorded.", key="ActAfter", nets=("mlpact",), at_least=1)
    act_threshold: float = setting(0.004, "mlpact: meAct's activation threshold p; a hidden unit stays active for an "
                                          "example when its share of the example's recorded gradient exceeds p.",
                                   key="ActThreshold", nets=("mlpact",), above=0, below=1)
    act_mask: str = setting("zero", "mlpact: a masked unit's output in meAct's training: zero (0, the default), or "
                                    "recorded (held at its mean activation over the dense epochs for that example, "
                                    "a constant in the forward that gets no gradient). Testing uses every unit.",
                            key="ActMask", nets=("mlpact",), choices=MASKS)
    update_sizes: bool = setting(False, "Record each part's average absolute parameter change per update in "
                                        "metrics.jsonl (Figure 4, right); mlpact always does.", nets=MLP_NETS)
    label_count: int = setting(10, "Classes.", key="LabelCount", at_least=2, option=False)
    train_file: Optional[str] = setting(None, "Training images.", key="TrainFile", option=False, path=True)
    train_label_file: Optional[str] = setting(None, "Training labels.", key="TrainLabelFile", option=False, path=True)
    test_file: Optional[str] = setting(None, "Test images.", key="TestFile", option=False, path=True)
    test_label_file: Optional[str] = setting(None, "Test labels.", key="TestLabelFile", option=False, path=True)

    meprop_nets = MEPROP_NETS
    simplified_nets = ("mlpvar",)
    activated_nets = ("mlpact",)
    nnmnist = True
    nnmnist_defaults = dict(batch=100, k=160)  # where nnmnist's Config() differs from the papers' MNIST setting

    def unused_by(self, name):
        if name in ("hidden", "dropout") and self.net in MLP_NETS and self.layers == 1:
            return "a single linear layer"
        return super().unused_by(name)

    def check(self, fail):
        if self.net in MLP_NETS and self.meprop and self.layers < 2:
            fail("layers", f"{self.net} applies meProp to hidden layers, so it needs Layers >= 2, got {self.layers}")
        hidden = CNN_HIDDEN if self.net in CNN_NETS else self.hidden
        if self.meprop and not self.k < hidden:
            fail("k", f"must be smaller than the hidden size {hidden}, got {self.k}")
        if self.net == "mlpact" and self.layers < 2:
            fail("layers", f"mlpact applies meAct to hidden layers, so it needs Layers >= 2, got {self.layers}")
        if self.net == "mlpact" and not self.act_after < self.epochs:
            fail("act_after", f"must be below the epochs (--epochs, MaxEpoch), {self.epochs}, got {self.act_after}: "
                              "meAct starts after that many epochs")


class MnistTask(Task):
    """Train the papers' MNIST MLP (784-500-500-10) or CNN, on MNIST's 55,000 / 5,000 / 10,000 split."""

    Settings = MnistSettings
    name = "mnist"

    def __init__(self, data, model, meta):
        super().__init__(data, model, meta)
        model.reuse_buffers()  # train_step is done with each gradient and output in time (tinyprop.layers.base.Layer)
        self.eval_batch = evaluation_batch(meta["net"])
        self.n_classes = meta["sizes"][-1]

    @classmethod
    def locate(cls, settings):
        return locate_files(settings.data_dir, dict(
            train_images=settings.train_file, train_labels=settings.train_label_file,
            test_images=settings.test_file, test_labels=settings.test_label_file))

    @classmethod
    def load(cls, paths, limit, splits=None, meta=None):
        data = Mnist(paths)
        data.keep_first(limit)
        return data

    @classmethod
    def check(cls, settings, data):
        data.check_labels(settings.label_count, "LabelCount is", "set LabelCount in an nnmnist config (--config)")
        if settings.net in MLP_NETS:
            check_fits_in_memory(mlp_sizes(settings, data), settings)

    @classmethod
    def check_saved(cls, meta, data):
        data.check_labels(meta["sizes"][-1], "the model has", "train a model with more outputs (LabelCount)")

    @classmethod
    def describe(cls, settings, data):
        cnn = settings.net in CNN_NETS
        sizes = [data.n_inputs, CNN_HIDDEN, settings.label_count] if cnn else mlp_sizes(settings, data)
        return dict(task="mnist", net=settings.net, sizes=sizes, k=settings.k, unified=bool(settings.unified),
                    k_ratio=settings.k_ratio, **training_data(data.paths, settings.max_examples))

    @classmethod
    def build_model(cls, meta, rng, dropout=0.0):
        """The MLP or CNN a model description names."""
        if meta["net"] in CNN_NETS:
            return build_cnn(meta["net"], meta["k"], meta["k_ratio"], dropout, meta["sizes"][-1], rng)
        return build_mlp(meta["sizes"], meta["net"], meta["k"], meta["unified"], dropout, rng)

    @classmethod
    def check_description(cls, path, meta, arrays):
        """The sizes of a saved description, against its arrays, before the model is built."""
        sizes = meta.get("sizes")
        if not (isinstance(sizes, list) and len(sizes) >= 2 and all(type(size) is int and size > 0 for size in sizes)):
            raise DataError(f"{path}: sizes {sizes!r} are not a list of positive whole numbers")
        k = meta.get("k")
        if meta["net"] in MEPROP_NETS and not (type(k) is int and k > 0):
            raise DataError(f"{path}: k {k!r} is not a positive whole number, as {meta['net']} needs")
        names = ["fc1", "fc2"] if meta["net"] in CNN_NETS else [f"layer{i}" for i in range(1, len(sizes))]
        for name, width in zip(names, sizes[1:]):
            shape = arrays.get(f"{name}.weight", np.empty((0, 0))).shape
            if shape[:1] != (width,):
                raise DataError(f"{path}: {name}.weight has shape {shape}, the model description says {width} rows")

    @classmethod
    def simplified_pairs(cls, model):
        linears = linear_layers(model)
        return zip(linears[:-1], linears[1:])

    @classmethod
    def activated_layers(cls, model):
        """meAct's layers: the hidden ActiveLinear layers of an mlpact MLP."""
        return [layer for layer in model.layers if isinstance(layer, ActiveLinear)]

    def describe_run(self, settings):
        return f"{describe(self.meta)}, train {self.train_size} dev {self.data.size('dev')} test {self.data.size('test')}"

    def product_layers(self):
        """The layers whose backward is a matrix product, timed as the papers' "backprop time"."""
        return [layer for layer in self.model.layers if isinstance(layer, (Linear, Conv2d))]

    def product_layers_text(self):
        return "convolution and linear layers" if self.meta["net"] in CNN_NETS else "linear layers"

    def train_step(self, indices):
        """One mini-batch: forward, backward, update. Returns (summed loss, correct, predictions)."""
        images, labels = self.data.splits["train"]
        if self.activator is not None:
            self.activator.use(indices)
        return self.step(scale_pixels(images[indices]), labels[indices].astype(np.intp))

    def evaluate(self, split):
        """(mean loss, accuracy %, {}) on a split, with dropout off."""
        images, labels = self.data.splits[split]
        total_loss, correct = 0.0, 0
        with self.evaluating():
            for first, logits in logits_in_batches(self.model, images, self.eval_batch):
                targets = labels[first:first + self.eval_batch].astype(np.intp)
                total_loss += self.loss.forward(logits, targets)
                correct += int((logits.argmax(axis=1) == targets).sum())
        return total_loss / labels.shape[0], 100.0 * correct / labels.shape[0], {}

    @classmethod
    def predict(cls, model, meta, stream, name, log=print):
        """The class (digit) the model gives each image of an IDX image file or a .npy array (`read_images`),
        one a line, scored as evaluation scores them."""
        images = read_images(name, stream.read())
        model.train(False)
        batches = logits_in_batches(model, images, evaluation_batch(meta["net"]))
        classes = np.concatenate([logits.argmax(axis=1) for _, logits in batches] or [np.zeros(0, np.intp)])
        log(f"classified {images.shape[0]} images")
        return "".join(f"{label}\n" for label in classes)

    def hidden_sizes(self):
        """The widths of the hidden fully connected layers (meSimp changes them)."""
        return [layer.n_out for layer in linear_layers(self.model)][:-1]

    def current_meta(self):
        return dict(self.meta, sizes=self.meta["sizes"][:1] + self.hidden_sizes() + self.meta["sizes"][-1:])

    def summary_fields(self, settings):
        return dict(k=self.meta["k"], unified=self.meta["unified"], k_ratio=self.meta["k_ratio"])

    def simplified_fields(self, saved_model, log):
        """How much faster the saved (simplified) model decodes the test set than an unsimplified one."""
        unsimplified = build_mlp(self.meta["sizes"][:1] + self.simplifier.original_sizes + self.meta["sizes"][-1:],
                                 rng=np.random.default_rng(0))
        fields = dict(decode_time_s=self.decoding_seconds(saved_model()),
                      decode_time_unsimplified_s=self.decoding_seconds(unsimplified))
        fields["decode_speedup"] = fields["decode_time_unsimplified_s"] / fields["decode_time_s"]
        log(f"the saved model decodes the test set in {fields['decode_time_s']:.3f}s, unsimplified "
            f"{fields['decode_time_unsimplified_s']:.3f}s ({fields['decode_speedup']:.1f}x)")
        return fields

    def decoding_seconds(self, model, repeats=5):
        """Median time of a forward pass over the test set."""
        self.model, saved = model, self.model
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.evaluate("test")
            times.append(time.perf_counter() - start)
        self.model = saved
        return float(np.median(times))


def mlp_sizes(settings, data):
    """Input, hidden..., output sizes of the MLP the settings describe."""
    return [data.n_inputs] + [settings.hidden] * (settings.layers - 1) + [settings.label_count]


def check_fits_in_memory(sizes, settings):
    """Refuse an MLP whose parameters, with their gradients and optimizer state, cannot fit in this
    machine's memory, before building it (a --layers of millions would build small layers for hours)."""
    count = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))  # weights and biases
    arrays = 2 + len(OPTIMIZER_CLASSES[settings.optim].state_names)  # value, gradient, the optimizer's state
    needed = count * arrays * np.dtype(np.float32).itemsize
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        n_layers, h = len(sizes) - 1, sizes[1]
        hidden = f"{h}x{n_layers - 1}-" if n_layers > 1 else ""
        options = f"--layers {n_layers}, --hidden {h}" if n_layers > 1 else f"--layers {n_layers}"
        raise ConfigError(f"the MLP {sizes[0]}-{hidden}{sizes[-1]} ({options}) has {count:,} parameters: "
                          f"{needed / 2 ** 30:,.1f} GiB with their gradients and {settings.optim}'s state, and this "
                          f"machine has {memory / 2 ** 30:.1f} GiB; use fewer or narrower layers")


def describe(meta):
    if meta["net"] in CNN_NETS:
        ratio = f" ratio={meta['k_ratio']} k={meta['k']}" if meta["net"] == "cnntop" else ""
        return (f"{meta['net']}{ratio}: conv5x5x{CNN_CHANNELS[0]}-pool-conv5x5x{CNN_CHANNELS[1]}-pool-"
                f"{CNN_HIDDEN}-{meta['sizes'][-1]}")
    sparsity = f" k={meta['k']}" if meta["k"] else ""
    unified = " unified" if meta["unified"] else ""
    return f"{meta['net']}{sparsity}{unified}: sizes {'-'.join(map(str, meta['sizes']))}"
