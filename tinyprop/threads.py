"""BLAS's threads: one, but for products large enough to share out on the kernels' threads.

Training and evaluation run tinyprop's Numba kernels on the run's `threads` (tinyprop.tasks.run.using_threads)
and BLAS on one thread: OpenBLAS's threads wait for work by spinning, and between the many small products of
a mini-batch of 10 they held the cores the kernels' threads needed (docs/performance.md). A product of at
least SHARED_MIN_MACS multiply-adds, such as the parser's at mini-batch 10,000 or a large evaluation batch,
runs on as many BLAS threads as the kernels have: there, starting the threads costs little against the work.
"""
import contextlib

import numba

# a product this large takes milliseconds on one core, against microseconds to wake BLAS's threads
SHARED_MIN_MACS = 10 ** 8
_controller = None  # threadpoolctl's view of the BLAS libraries, made at the first shared product


def blas_threads_for(macs):
    """A context in which BLAS runs on the kernels' thread count (numba.get_num_threads()) if the product
    has at least SHARED_MIN_MACS multiply-adds (`macs`), and as it is set otherwise."""
    global _controller
    count = numba.get_num_threads()
    if count == 1 or macs < SHARED_MIN_MACS:
        return contextlib.nullcontext()
    if _controller is None:
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller.limit(limits=count, user_api="blas")
