"""What several test files share (pytest puts this folder on the import path)."""
import contextlib

import numba
import pytest


@contextlib.contextmanager
def numba_threads(count):
    """Numba's kernels on `count` threads inside the block, the count before restored after; the test is
    skipped where Numba has fewer threads."""
    if count > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"Numba has fewer than {count} threads on this machine")
    before = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(before)
