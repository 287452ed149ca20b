"""The provenance a run records in config.json: the data files' digests, the git commit, the BLAS libraries."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tinyprop
from tinyprop.tasks.provenance import CHUNK, git_state, provenance

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(folder, *arguments):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                           *arguments], cwd=folder, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def record():
    return provenance({})


def test_a_data_file_is_recorded_with_its_absolute_path_size_and_sha256(tmp_path, monkeypatch):
    content = np.random.default_rng(0).bytes(2 * CHUNK + 123)  # the last chunk short
    (tmp_path / "images.gz").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    files = provenance({"train_images": "images.gz"})["data_files"]
    assert files == {"train_images": {"path": str(tmp_path / "images.gz"), "size": len(content),
                                      "sha256": hashlib.sha256(content).hexdigest()}}


def test_a_missing_data_file_raises_an_oserror_naming_it(tmp_path):
    with pytest.raises(OSError) as raised:
        provenance({"train_images": str(tmp_path / "absent.gz")})
    assert raised.value.filename == str(tmp_path / "absent.gz")


@needs_git
def test_the_commit_is_this_checkouts_head(record):
    if os.path.dirname(os.path.dirname(os.path.abspath(tinyprop.__file__))) != CHECKOUT:
        pytest.skip("tinyprop is not imported from this checkout (not an editable install)")
    assert record["git_commit"] == git(CHECKOUT, "rev-parse", "HEAD").strip()
    assert isinstance(record["git_dirty"], bool)  # its value is checked below: others edit this tree meanwhile


@needs_git
def test_the_git_state_is_the_top_of_a_work_tree_only(tmp_path):
    repository = tmp_path / "checkout"
    (repository / "tinyprop").mkdir(parents=True)
    (repository / "tinyprop" / "__init__.py").write_text("__version__ = '0'\n")
    git(repository, "init", "-q")
    git(repository, "add", ".")
    git(repository, "commit", "-q", "--no-verify", "-m", "first")
    head = git(repository, "rev-parse", "HEAD").strip()
    (repository / "untracked.txt").write_text("not counted\n")
    assert git_state(str(repository)) == (head, False)
    (repository / "tinyprop" / "__init__.py").write_text("__version__ = '1'\n")
    assert git_state(str(repository)) == (head, True)
    assert git_state(str(repository / "tinyprop")) == (None, None)  # a copy inside another project's tree
    (tmp_path / "elsewhere").mkdir()
    assert git_state(str(tmp_path / "elsewhere")) == (None, None)


def test_the_blas_libraries_name_their_kind_and_threads(record):
    assert record["blas"], "NumPy's BLAS is loaded, so threadpoolctl lists at least one"
    for library in record["blas"]:
        assert library["internal_api"] and library["num_threads"] > 0 and library["file"]
        if library["internal_api"] == "openblas" and os.environ.get("OPENBLAS_NUM_THREADS") == "1":
            assert library["num_threads"] == 1  # conftest.py sets it, as the command line does
    assert record["openblas_num_threads"] == os.environ.get("OPENBLAS_NUM_THREADS")
    assert record["openblas_coretype"] == os.environ.get("OPENBLAS_CORETYPE")
    assert record["openblas_l2_size"] == os.environ.get("OPENBLAS_L2_SIZE")


def test_the_processor_numbas_kernels_are_compiled_for_is_named(record):
    from llvmlite import binding
    assert record["numba_cpu"] == binding.get_host_cpu_name() and record["numba_cpu"] not in ("", "generic")


def test_the_record_is_json_with_the_command_line_and_versions(record):
    assert json.loads(json.dumps(record)) == record
    assert record["command_line"] == sys.argv
    assert record["tinyprop_version"] == tinyprop.__version__ and record["numpy"] == np.__version__
    assert record["numba_threads"]["in_use"] >= 1 and record["cpu_count"] >= 1


def test_environment_changes_ignore_the_order_blas_libraries_loaded_in():
    from tinyprop.tasks.run import environment_changes
    numpy_blas = {"file": "libscipy_openblas64_.so", "version": "0.3.27", "architecture": "Zen", "num_threads": 1}
    scipy_blas = {"file": "libscipy_openblas.so", "version": "0.3.27", "architecture": "Zen", "num_threads": 1}
    before = {"numpy": "2.1", "blas": [numpy_blas, scipy_blas]}
    assert environment_changes(before, {"numpy": "2.1", "blas": [scipy_blas, numpy_blas]}) == []
    changed = environment_changes(before, {"numpy": "2.1", "blas": [scipy_blas, dict(numpy_blas, architecture="Haswell")]})
    assert len(changed) == 1 and "libscipy_openblas64_.so 0.3.27 Zen 1" in changed[0] and "Haswell" in changed[0]
    assert environment_changes(before, dict(before, numba_cpu="znver3")) == []  # a start that did not record it
    assert environment_changes(dict(before, numba_cpu="znver4"), dict(before, numba_cpu="znver3")) == [
        "numba_cpu was znver4, now znver3"]
