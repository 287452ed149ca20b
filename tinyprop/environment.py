"""The thread settings tinyprop's command line starts with: OpenBLAS and libgomp (Numba's OpenMP layer) read them
once, when they load, so a script sets them before it first imports NumPy:

    import tinyprop.environment
    tinyprop.environment.set_thread_defaults()

Each is a default: a value the user set stays. Why each (docs/performance.md, "Threads"):

- OPENBLAS_NUM_THREADS=1: BLAS runs on one thread but for products large enough to share out
  (tinyprop.threads); idle BLAS threads spinning beside the Numba kernels made runs many times slower.
- OPENBLAS_THREAD_TIMEOUT=4: the threads BLAS starts for a large product sleep after 2^4 cycles, its least,
  rather than spin beside the kernels' threads.
- GOMP_SPINCOUNT=30000: the kernels' threads wait for the next kernel spinning under a millisecond, not
  libgomp's default of several; a large BLAS product that follows a kernel then has the core to itself,
  and a mini-batch's kernels, microseconds apart, still find the threads awake.
"""
import os

THREAD_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "OPENBLAS_THREAD_TIMEOUT": "4", "GOMP_SPINCOUNT": "30000"}


def set_thread_defaults():
    """Set each of THREAD_DEFAULTS that the environment does not set already."""
    for name, value in THREAD_DEFAULTS.items():
        os.environ.setdefault(name, value)
