"""Stopping the `tinyprop` command from outside: Ctrl-C, SIGTERM and SIGKILL, at any moment of a run."""
import os
import signal
import subprocess
import sys
import time

import pytest

from test_resume import assert_same_run

pytestmark = pytest.mark.data


def command(*args, env=None, ctrl_c=signal.SIG_DFL):
    """The tinyprop command in a process of its own, as a user starts it from a terminal: with Ctrl-C's
    default action (`ctrl_c`), even where these tests run in the background of a shell, which ignores it."""
    return subprocess.Popen([sys.executable, "-m", "tinyprop", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, **(env or {})),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, ctrl_c))


def training(mnist_dir, out):
    return ["train", "mnist", "--net", "mlptop", "--k", 40, "--max-examples", 2000, "--epochs", 2,
            "--iter-per-epoch", 4, "--seed", 5, "--data-dir", os.path.dirname(mnist_dir), "--out", out]


def wait_for(path, process, timeout=120):
    start = time.monotonic()
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() - start < timeout, f"no {path} after {timeout} s"
        time.sleep(0.02)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_training_ends_with_how_to_resume(tmp_path, mnist_dir, signum, code):
    out = tmp_path / "run"
    process = command(*training(mnist_dir, out))
    wait_for(out / "checkpoint.npz", process)
    process.send_signal(signum)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == code, errors
    assert errors.endswith(f"\nstopped: {out} holds the run so far; continue it with: tinyprop train --resume {out}\n")
    assert "Traceback" not in errors


def test_a_command_started_with_ctrl_c_ignored_keeps_ignoring_it(tmp_path, mnist_dir):
    """As a shell script's background job: the script's Ctrl-C is not the job's."""
    out = tmp_path / "run"
    process = command(*training(mnist_dir, out), ctrl_c=signal.SIG_IGN)
    wait_for(out / "checkpoint.npz", process)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 0 and (out / "summary.json").exists(), errors


def test_a_killed_run_resumes_to_the_files_of_the_run_left_alone(tmp_path, mnist_dir):
    out = tmp_path / "run"
    process = command(*training(mnist_dir, out))
    wait_for(out / "checkpoint.npz", process)
    time.sleep(0.2)  # into the second part
    process.kill()
    process.wait()
    assert not (out / "summary.json").exists()
    resumed = command("train", "--resume", out)
    output, errors = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, errors
    assert f"resuming {out} after epoch 1 part " in output
    alone = command(*training(mnist_dir, tmp_path / "alone"))
    assert alone.communicate(timeout=300) and alone.returncode == 0
    assert_same_run(out, tmp_path / "alone")


def catching_ctrl_c(process, timeout=60):
    """Wait until `process` has tinyprop's Ctrl-C handler, which its __main__ sets first thing, with one for SIGTERM
    (Python's own start catches Ctrl-C, not SIGTERM): Linux's /proc/PID/status, SigCgt. Before that, as Python
    starts (longer on a busy machine), Ctrl-C ends it as any program."""
    start = time.monotonic()
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() - start < timeout, f"no Ctrl-C handler after {timeout} s"
        with open(f"/proc/{process.pid}/status") as status:
            caught = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
        if caught & 1 << (signal.SIGTERM - 1):
            return
        time.sleep(0.005)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads a process's signal handlers from /proc")
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.35, 0.65, 0.95])
def test_ctrl_c_in_the_first_second_ends_with_one_line(tmp_path, mnist_dir, delay):
    """The command imports the command line, then numpy, Numba and the tasks, reads the data and starts
    the run: Ctrl-C at each moment after it has set its handler ends with `stopped` (how to resume, once
    the run has its config.json), no traceback."""
    process = command(*training(mnist_dir, tmp_path / "run"))
    catching_ctrl_c(process)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130, errors
    assert errors.splitlines()[-1].startswith("stopped") and "Traceback" not in errors, errors


def test_ctrl_c_while_the_kernels_compile_leaves_a_cache_that_works(tmp_path, mnist_dir):
    cache = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}  # empty: the run compiles every kernel
    process = command(*training(mnist_dir, tmp_path / "run"), env=cache)
    wait_for(tmp_path / "run" / "config.json", process)  # the data is read; the first steps compile
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in errors, errors
    assert not (tmp_path / "run" / "checkpoint.npz").exists()  # stopped before its first evaluation
    resumed = command("train", "--resume", tmp_path / "run", env=cache)
    output, errors = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "from the start: it stopped before its first evaluation" in output, errors
    alone = command(*training(mnist_dir, tmp_path / "alone"), env=cache)
    assert alone.communicate(timeout=300) and alone.returncode == 0
    assert_same_run(tmp_path / "run", tmp_path / "alone")
