"""Where a run came from, for its config.json: tinyprop's version and git commit, the command line, the
library versions, the processor, the BLAS libraries (the kernel each chose, its threads), Numba's threads
and the size and sha256 of each input file. A run repeats bit for bit only on the same processor,
libraries and BLAS thread count: these tell a reader whether two runs should agree to the last digit.
"""
import hashlib
import os
import platform
import subprocess
import sys

import tinyprop
from tinyprop.tasks.files import naming

CHUNK = 1 << 20  # 1 MiB: the 20 MB EWT file hashes quickly without being held in memory
GIT_TIMEOUT = 5  # seconds; a hung git (a network file system, a lock) must not hold up the run


def provenance(data_files):
    """The record, JSON-serialisable; data_files is {key: path}. Raises OSError naming a file it cannot read."""
    import numba
    import numpy
    import scipy
    commit, dirty = git_state(os.path.dirname(os.path.dirname(os.path.abspath(tinyprop.__file__))))
    return {
        "tinyprop_version": tinyprop.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "command_line": list(sys.argv),
        "python": {"implementation": platform.python_implementation(), "version": platform.python_version()},
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "processor": processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "blas": blas(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),  # it overrides the kernels' choice (architecture)
        "openblas_l2_size": os.environ.get("OPENBLAS_L2_SIZE"),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "numba_threads": {"configured": numba.config.NUMBA_NUM_THREADS, "in_use": numba.get_num_threads()},
        "numba_cpu": numba_cpu(),
        "data_files": {key: file_record(path) for key, path in data_files.items()},
    }


def git_state(folder):
    """(commit, has uncommitted changes) when folder is the top of a git work tree, else (None, None)."""
    head = git(folder, "rev-parse", "--show-prefix", "HEAD")
    if head is None or not head.startswith("\n"):  # a non-empty prefix: a copy installed inside another tree
        return None, None
    status = git(folder, "status", "--porcelain", "--untracked-files=no")
    return (None, None) if status is None else (head.split()[0], bool(status.strip()))


def git(folder, *arguments):
    """git's output, or None when git is missing, fails or hangs: provenance never fails a run over it."""
    try:
        done = subprocess.run(["git", *arguments], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=GIT_TIMEOUT, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def processor():
    """The processor's model: Linux's platform.processor() gives only the architecture, so /proc/cpuinfo first."""
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def numba_cpu():
    """The processor LLVM compiles Numba's kernels for ("znver3"): it tells apart the models that a hypervisor
    names alike ("AMD EPYC")."""
    import numba
    from llvmlite import binding
    return numba.config.CPU_NAME or binding.get_host_cpu_name()


def blas():
    """Each BLAS library loaded in the process: which, its version, the kernel it chose, its threads and file."""
    import numpy  # noqa: F401 -- loads NumPy's BLAS; threadpoolctl lists only the libraries already loaded
    import scipy.linalg.cython_blas  # noqa: F401 -- SciPy's, which Numba's np.dot (the LSTM's products) calls
    from threadpoolctl import threadpool_info
    return sorted(({"internal_api": info["internal_api"], "version": info.get("version"),
                    "architecture": info.get("architecture"), "num_threads": info["num_threads"],
                    "threading_layer": info.get("threading_layer"), "file": os.path.basename(info["filepath"])}
                   for info in threadpool_info() if info["user_api"] == "blas"), key=lambda library: library["file"])


def file_record(path):
    """The file's absolute path, size and sha256, read in chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
            size = stream.tell()  # the bytes hashed, even if the file changes meanwhile
    except OSError as error:
        raise naming(error, path) from error
    return {"path": os.path.abspath(path), "size": size, "sha256": digest.hexdigest()}
