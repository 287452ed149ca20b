"""tinyprop: minimal-effort backpropagation (meProp) on the CPU, from scratch.

Sun, Ren, Ma, Wang, "meProp: Sparsified Back Propagation for Accelerated Deep Learning
with Reduced Overfitting", ICML 2017; Sun et al., "Training Simplification and Model
Simplification for Deep Learning: A Minimal Effort Back Propagation Method", TKDE 2018.

`import tinyprop as tp` gives `tp.layers`, `tp.optim` and meSimp's classes (`tp.Simplifier`,
`tp.ColumnBlock`, the activity records) and the data readers, imported on first use:
`tp.read_idx(path, ndim)` (an MNIST IDX file, gzip or raw: a uint8 array of its header's shape, images
(n, 28, 28)), `tp.read_conllu(path)` (a CoNLL-U file: a list of `tp.Sentence`, with forms, UPOS, XPOS,
heads and relations) and `tp.write_conllu`.
"""
import importlib as _importlib

__version__ = "0.1.0"

_SUBMODULES = ("layers", "optim")
_MESIMP_CLASSES = ("ActivityRecord", "ColumnBlock", "GateActivityRecord", "LinearActivityRecord", "Simplifier")
_DATA = {"read_idx": "tinyprop.tasks.mnist", "read_conllu": "tinyprop.tasks.conllu",  # name -> its module
         "write_conllu": "tinyprop.tasks.conllu", "Sentence": "tinyprop.tasks.conllu"}
__all__ = [*_SUBMODULES, *_MESIMP_CLASSES, *_DATA]


def __getattr__(name):
    """PEP 562 lazy attributes: `tinyprop.cli` starts without importing NumPy and Numba."""
    if name in _SUBMODULES:
        return _importlib.import_module(f"tinyprop.{name}")
    if name in _MESIMP_CLASSES:
        return getattr(_importlib.import_module("tinyprop.mesimp"), name)
    if name in _DATA:
        return getattr(_importlib.import_module(_DATA[name]), name)
    raise AttributeError(f"module 'tinyprop' has no attribute {name!r}")


def __dir__():
    """dir(tinyprop) and tab completion list what tinyprop offers (and the lazy names among it)."""
    return sorted([*__all__, "__version__"])
