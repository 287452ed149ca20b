"""The package as pip installs it (not editable): tasks/ and cli.py land as tinyprop.tasks and tinyprop.cli,
nothing under a generic top-level name, and both ways of starting the command work."""
import csv
import glob
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import site
import subprocess
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# not copied: the copy is what pip builds in (its build/ and egg-info stay there), and it should be small; the
# package has nothing of results/, where a sweep may be writing while the tests run
SKIPPED_AT_TOP = {".git", ".venv", "venv", "build", "dist", "runs", "data", ".pytest_cache", "results"}

CHECK = r"""
import json, sys, sysconfig
found = {}
for name in ("tasks", "cli"):
    try:
        module = __import__(name)
    except ModuleNotFoundError as error:
        found[name] = None if error.name == name else f"ModuleNotFoundError for {error.name}"
    else:
        found[name] = getattr(module, "__file__", None) or repr(module)
import tinyprop.tasks.mnist, tinyprop.cli
print(json.dumps({"found": found, "purelib": sysconfig.get_paths()["purelib"], "cli": tinyprop.cli.__file__,
                  "mnist": tinyprop.tasks.mnist.__file__}))
"""


def ignore_for_copy(folder, names):
    skipped = {name for name in names if name == "__pycache__" or name.endswith((".egg-info", ".pyc"))}
    if os.path.samefile(folder, ROOT):
        skipped |= SKIPPED_AT_TOP & set(names)
    return skipped


def setuptools_builds_wheels_here():
    """The setuptools this interpreter sees can build the wheel without pip fetching one: 61 or later (pyproject's
    requirement) with bdist_wheel, built in from 70.1, before that from the wheel package."""
    try:
        version = tuple(int(part) for part in re.findall(r"\d+", importlib.metadata.version("setuptools"))[:2])
    except importlib.metadata.PackageNotFoundError:
        return False
    return version >= (70, 1) or (version >= (61,) and importlib.util.find_spec("wheel") is not None)


def run(command, cwd, env):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    shown = " ".join(str(part) if len(str(part)) < 200 else "..." for part in command)
    assert result.returncode == 0, f"{shown} exited {result.returncode}:\n{result.stdout[-3000:]}\n" \
        f"{result.stderr[-3000:]}"
    return result


def test_a_non_editable_install_puts_everything_under_tinyprop(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=ignore_for_copy)  # tinyprop/cli.py stays a link
    # A fresh environment that sees this interpreter's packages (numpy, numba, ...; pip and setuptools): a
    # .pth file lists its site-packages folders. (--system-site-packages would give the base interpreter's
    # when the tests run in a virtual environment.) The folders a .pth names do not have their own .pth files
    # run, so an editable tinyprop installed there stays out; the fresh install comes first on sys.path anyway.
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=importlib.util.find_spec("pip") is None)
    python = str(environment / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    outer = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    with open(os.path.join(purelib, "_outer_site_packages.pth"), "w") as pth:
        pth.write("".join(f"{folder}\n" for folder in outer if os.path.isdir(folder)))
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    outside = tmp_path / "elsewhere"  # the working folder: neither the checkout nor the copy
    outside.mkdir()

    # --ignore-installed: an editable tinyprop that pip sees through the .pth is left alone, not uninstalled
    install = [python, "-m", "pip", "install", "--no-deps", "--ignore-installed", str(source)]
    if setuptools_builds_wheels_here():
        install.insert(4, "--no-build-isolation")
    result = subprocess.run(install, cwd=outside, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and re.search(r"(No matching distribution|Could not find a version that "
                                            r"satisfies the requirement) .*(setuptools|wheel)", result.stderr):
        pytest.skip("building the wheel needs setuptools>=61 (and wheel) from the package index, which is out of "
                    "reach: " + result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, f"{' '.join(install)} exited {result.returncode}:\n{result.stdout[-3000:]}\n" \
        f"{result.stderr[-3000:]}"

    # what the wheel installed: tinyprop/ and its dist-info, and the console script outside site-packages
    records = glob.glob(os.path.join(purelib, "tinyprop-*.dist-info", "RECORD"))
    assert len(records) == 1, records
    with open(records[0], newline="") as record:
        installed = [row[0] for row in csv.reader(record) if row]
    top_level = {path.split("/")[0] for path in installed if not path.startswith("..")}
    assert top_level == {"tinyprop", os.path.basename(os.path.dirname(records[0]))}, sorted(top_level)
    assert {"tinyprop/cli.py", "tinyprop/tasks/__init__.py", "tinyprop/tasks/mnist.py"} <= set(installed)
    assert not {"tasks", "cli", "cli.py"} & set(os.listdir(purelib))

    checked = json.loads(run([python, "-c", CHECK], outside, env).stdout)
    assert checked["found"] == {"tasks": None, "cli": None}  # both ModuleNotFoundError
    assert os.path.realpath(checked["purelib"]) == os.path.realpath(purelib)
    for name in ("cli", "mnist"):  # imported from site-packages, not from the checkout
        assert os.path.realpath(checked[name]).startswith(os.path.realpath(purelib) + os.sep), checked
        assert not os.path.realpath(checked[name]).startswith(os.path.realpath(ROOT) + os.sep), checked

    as_module = run([python, "-m", "tinyprop", "--help"], outside, env)
    as_script = run([str(environment / "bin" / "tinyprop"), "--help"], outside, env)
    assert as_module.stdout == as_script.stdout and as_module.stdout.startswith("Usage: tinyprop ")
