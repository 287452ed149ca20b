"""Run outputs, written so that a crash never leaves a half-written file, and read back."""
import json
import os
import tempfile
import zipfile

import numpy as np


class DataError(Exception):
    """Input data that cannot be used: names the file and what is wrong with it."""


def _atomic_write(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    except OSError as error:
        raise naming(error, path) from error
    try:
        with os.fdopen(handle, "wb") as stream:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(stream.fileno(), 0o666 & ~umask)  # mkstemp makes it private; give the mode open() would
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):  # not if the interrupt came after the rename
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise naming(error, path) from error
        raise


def naming(error, path):
    """The OSError, naming the file the caller writes: not the temporary one, and not none at all
    (a full disk's error names no file)."""
    return OSError(error.errno, error.strerror, path)


def check_writable(path):
    """Fail now, before the work whose result goes to `path`, if its folder (or the nearest one that
    exists) cannot take a new file."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    try:
        tempfile.TemporaryFile(dir=folder).close()  # a file where a folder should be: NotADirectoryError
    except OSError as error:
        raise naming(error, path) from error


def write_json(path, data):
    """Write `data` as indented JSON, atomically (a temporary file renamed over the target)."""
    _atomic_write(path, lambda stream: stream.write((json.dumps(data, indent=2) + "\n").encode()))


def write_npz(path, arrays):
    """Write a dict of arrays as .npz, atomically."""
    _atomic_write(path, lambda stream: np.savez(stream, **arrays))


def write_bytes(path, data):
    _atomic_write(path, lambda stream: stream.write(data))


def read_model_file(path):
    """(meta, arrays) of a model.npz written by training: the model description and the parameters."""
    not_a_model = f"{path}: not a tinyprop model file (the model.npz that `tinyprop train` writes)"
    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            arrays = {name: saved[name] for name in saved.files if name != "meta"}
    except MemoryError as error:
        raise DataError(f"{path}: its arrays do not fit in this machine's memory") from error
    except (ValueError, TypeError, EOFError) as error:  # not an archive (numpy's would advise unpickling it)
        raise DataError(not_a_model) from error
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{not_a_model}: {error}") from error
    if not isinstance(meta, dict):
        raise DataError(f"{not_a_model}: its description is a JSON {type(meta).__name__}, not an object")
    return meta, arrays


def training_data(paths, max_examples):
    """What model.npz records of the data a model was trained on, for `tinyprop evaluate`."""
    return dict(data_files={key: os.path.abspath(path) for key, path in paths.items()}, max_examples=max_examples)


def append_jsonl(path, record):
    """Append one JSON object as a line; each line is written whole with one write call."""
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
    except OSError as error:
        raise naming(error, path) from error


def keep_lines(path, lines):
    """Keep the first `lines` lines of a text file, atomically; a file with fewer is a DataError."""
    try:
        with open(path, encoding="utf-8") as stream:
            kept = [line for _, line in zip(range(lines), stream)]
    except FileNotFoundError:
        kept = []
    if len(kept) < lines or not all(line.endswith("\n") for line in kept):
        raise DataError(f"{path}: {len(kept)} whole lines, but the checkpoint covers {lines}; the file was "
                        "changed or cut since: the run cannot be resumed")
    write_bytes(path, "".join(kept).encode())


def read_json(path):
    """A JSON file that tinyprop wrote; one it cannot read is a DataError naming it."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read it ({error})") from error
