"""The README's quick commands run and say what it says, and the documentation's links and promises hold.

A quick command is a line of a fenced `bash` block of README.md that starts with `tinyprop ` and has
`--max-examples` or `--help` (the other lines, installs and full trainings, are not run here); they run in
order, through the installed `tinyprop` entry point, in a fresh working folder, with TINYPROP_DATA set.
The README's `python` block runs with this Python.
"""
import io
import os
import re
import shlex
import subprocess
import sys
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
MAX_README_LINES = 210
TINYPROP = os.path.join(os.path.dirname(sys.executable), "tinyprop")  # the installed entry point
FIRST_RUN_FLOOR = 80.0  # % test accuracy; two epochs on 5,000 images give about 89 to 90 (seed 1); chance is 10
EXAMPLE_FLOOR = 0.9  # the Python example's training accuracy (0.986 here; a linear rule on 5 of 50 features)
TEST_COMMAND = 'pip install -e ".[test]" && python -m pytest'


def read(path):
    with open(path, encoding="utf-8") as stream:
        return stream.read()


def fenced_blocks(text):
    """[(info string, text)] of the fenced code blocks of a markdown text."""
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, re.S | re.M)]


def quick_commands(text):
    return [line.strip() for info, block in fenced_blocks(text) if info.split()[:1] == ["bash"]
            for line in block.splitlines() if line.strip().startswith("tinyprop ")
            and ("--max-examples" in line or "--help" in line)]


def run_tinyprop(command, cwd, env):
    arguments = shlex.split(command)
    return subprocess.run([TINYPROP, *arguments[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_readme_has_quick_commands_a_first_run_and_a_python_example():
    text = read(README)
    commands = quick_commands(text)
    assert any("--max-examples" in command and " train " in command for command in commands), commands
    assert any("--help" in command for command in commands), commands
    assert [info for info, _ in fenced_blocks(text)].count("python") == 1


@pytest.mark.data
def test_the_readme_quick_commands_run_and_the_first_run_reaches_the_floor(tmp_path, mnist_dir):
    text = read(README)
    env = dict(os.environ, TINYPROP_DATA=os.path.dirname(os.path.abspath(mnist_dir)))  # the commands run elsewhere
    shown = re.search(r"^best dev acc [\d.]+ \(epoch \d+ part \d+\), test acc [\d.]+;.*$", text, re.M)
    assert shown, "the README shows the first run's last line"
    for command in quick_commands(text):
        result = run_tinyprop(command, tmp_path, env)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        if "--help" in command:
            assert result.stdout.startswith("Usage: tinyprop"), command
            continue
        last = result.stdout.strip().splitlines()[-1]
        found = re.fullmatch(r"best dev acc ([\d.]+) \(epoch \d+ part \d+\), test acc ([\d.]+);.*", last)
        assert found, f"{command}: its last line is not the README's kind: {last!r}"
        assert float(found.group(2)) > FIRST_RUN_FLOOR, last
        out = shlex.split(command)[shlex.split(command).index("--out") + 1] if "--out" in command else None
        if out:  # the README then points at this folder
            assert os.path.isfile(tmp_path / out / "summary.json") and os.path.isfile(tmp_path / out / "model.npz")


def differences_from_the_readmes_machine(text):
    """How this machine differs from the one the README's first run names (LLVM's target, BLAS's kernels, numpy
    and numba); on that one, the run must print the README's accuracies."""
    import numba
    import numpy
    from tinyprop.tasks.provenance import blas, numba_cpu
    named = re.search(r"\(LLVM's\s+(\w+),\s+OpenBLAS's\s+(\w+)\s+kernels[^)]*\)\s+with\s+numpy\s+([\d.]+)\s+and\s+"
                      r"numba\s+([\d.]+)", text)
    assert named, "the README names the machine of its first run"
    here = (numba_cpu(), "/".join(sorted({library["architecture"] for library in blas()})), numpy.__version__,
            numba.__version__)
    return [f"{name} {this}, the README's {that}" for name, this, that in
            zip(("LLVM target", "BLAS kernels", "numpy", "numba"), here, named.groups()) if this != that]


@pytest.mark.data
def test_the_readme_first_run_prints_its_accuracies_on_the_machine_it_names(tmp_path, mnist_dir):
    text = read(README)
    differences = differences_from_the_readmes_machine(text)
    if differences:
        pytest.skip(f"not the README's machine: {'; '.join(differences)}")
    (command,) = [command for command in quick_commands(text) if "--out" in command]
    env = dict(os.environ, TINYPROP_DATA=os.path.dirname(os.path.abspath(mnist_dir)))
    result = run_tinyprop(command, tmp_path, env)
    accuracies = r"best dev acc ([\d.]+) \(epoch \d+ part \d+\), test acc ([\d.]+);"
    shown = re.search(accuracies, text).groups()
    assert re.match(accuracies, result.stdout.strip().splitlines()[-1]).groups() == shown


def test_the_readme_python_example_trains(tmp_path):
    (code,) = [block for info, block in fenced_blocks(read(README)) if info == "python"]
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    found = re.search(r"training accuracy ([\d.]+)", result.stdout)
    assert found and float(found.group(1)) > EXAMPLE_FLOOR, result.stdout


def test_the_readme_is_short():
    with open(README, encoding="utf-8") as stream:
        assert len(stream.readlines()) <= MAX_README_LINES


def test_the_readme_keeps_the_generated_table_block_for_tinyprop_report():
    lines = read(README).splitlines()
    start = "<!-- generated by tinyprop report --update-docs: do not edit by hand -->"
    end = "<!-- end of generated table -->"
    assert lines.count(start) == 1 and lines.count(end) == 1 and lines.index(start) < lines.index(end)


def test_ci_runs_the_readme_test_command():
    assert any(TEST_COMMAND in block for info, block in fenced_blocks(read(README)) if info == "bash")
    assert TEST_COMMAND in read(os.path.join(ROOT, ".ci", "run")).splitlines()


def markdown_files():
    return [README] + sorted(os.path.join(DOCS, name) for name in os.listdir(DOCS) if name.endswith(".md"))


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: os.path.relpath(path, ROOT))
def test_every_relative_link_points_to_a_file_that_exists(path):
    text = read(path)
    for _, block in fenced_blocks(text):  # code is not links
        text = text.replace(block, "")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [target for target in targets if not re.match(r"[a-z]+:|#", target)]
    missing = [target for target in relative
               if not os.path.exists(os.path.join(os.path.dirname(path), target.split("#")[0]))]
    assert not missing, f"{os.path.relpath(path, ROOT)} links to files that do not exist: {missing}"


def test_the_nnmnist_page_names_every_key():
    from tinyprop.tasks.mnist import MnistSettings
    from tinyprop.tasks.settings import nnmnist_keys
    page = read(os.path.join(DOCS, "nnmnist.md"))
    missing = [key for key in nnmnist_keys(MnistSettings) if f"`{key}`" not in page]
    assert not missing, f"docs/nnmnist.md does not name {missing}"


# A measured time (a number and a unit of time) or a date (of the project's measurements: 2026); a ratio
# ("1.25x", "30% slower") is fine.
MEASUREMENT = re.compile(r"\b\d+(\.\d+)?\s?(s|ms|us|µs|ns|sec|seconds?|minutes?|hours?)\b"
                         r"|\b20\d\d-\d\d-\d\d\b|µs|\b2026\b")


def comments_and_docstrings(path):
    """(line, text) of the comments and triple-quoted strings of a Python file."""
    with open(path, encoding="utf-8") as stream:
        tokens = tokenize.generate_tokens(io.StringIO(stream.read()).readline)
        for token in tokens:
            if token.type == tokenize.COMMENT or (token.type == tokenize.STRING and token.string.lstrip("rbuf")[:3]
                                                  in ('"""', "'''")):
                yield token.start[0], token.string


def code_files():
    """The Python files of tinyprop/ and tasks/, and cli.py (tinyprop/cli.py links to it)."""
    yield os.path.join(ROOT, "cli.py")
    for folder in ("tinyprop", "tasks"):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            path = os.path.join(ROOT, folder, name)
            if os.path.isdir(path):
                yield from (os.path.join(path, inner) for inner in sorted(os.listdir(path)) if inner.endswith(".py"))
            elif name.endswith(".py") and not os.path.islink(path):
                yield path


def test_no_comment_or_docstring_in_the_code_quotes_a_measured_time_or_a_date():
    found = [f"{os.path.relpath(path, ROOT)}:{line}: {match.group(0)!r}"
             for path in code_files() for line, text in comments_and_docstrings(path)
             for match in [MEASUREMENT.search(text)] if match]
    assert not found, "measurements belong in docs/performance.md, with their command:\n" + "\n".join(found)
