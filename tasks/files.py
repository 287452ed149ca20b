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


def model_file_arrays(params, meta):
    """What model.npz holds: each parameter's value under its name, and the model description
    (a JSON object with at least "task") under "meta"."""
    arrays = {param.name: param.value for param in params}
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def read_model_file(path, task=None, keys=()):
    """(meta, arrays) of a model.npz written by training: the model description and the parameters.
    With `task`, the file must hold a model of that task, whose description has `keys`."""
    not_a_model = f"{path}: not a tinyprop model file (the model.npz that `tinyprop train` writes)"
    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            arrays = {name: saved[name] for name in saved.files if name != "meta"}
    except (ValueError, TypeError, EOFError) as error:  # not an archive (numpy's would advise unpickling it)
        raise DataError(not_a_model) from error
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{not_a_model}: {error}") from error
    if not isinstance(meta, dict):
        raise DataError(f"{not_a_model}: its description is a JSON {type(meta).__name__}, not an object")
    if task is not None and meta.get("task") != task:
        raise DataError(f"{path}: a model of task {meta.get('task')!r}, not {task}")
    missing = [key for key in keys if key not in meta]
    if missing:
        raise DataError(f"{path}: the model description lacks {', '.join(missing)}; was it written by an "
                        "older tinyprop? Train the model again")
    return meta, arrays


def training_data(paths, max_examples):
    """What model.npz records of the data a model was trained on, for `tinyprop evaluate`."""
    return dict(data_files={key: os.path.abspath(path) for key, path in paths.items()}, max_examples=max_examples)


def evaluation_data(meta, data_dir, locate, log, all_examples=False):
    """The data files to score a saved model on, and how many examples of each split to take, logged.

    The files: those found in `data_dir` if it is given, else the files the model was trained on while
    they are all in place, else those `locate(None)` finds. The count: the run's --max-examples (None:
    all), unless `all_examples`."""
    recorded = meta.get("data_files") or {}
    missing = [path for path in recorded.values() if not os.path.isfile(path)]
    if data_dir is None and recorded and not missing:
        paths = recorded
    else:
        if data_dir is None and missing:
            log(f"the model's training data is not all in place ({', '.join(missing)} missing); looking for the "
                "data as training does")
        paths = locate(data_dir)
    folders = sorted({os.path.dirname(os.path.abspath(path)) for path in paths.values()})
    limit = None if all_examples else meta.get("max_examples")
    sliced = f"; only the first {limit} of each split, as in training" if limit else ""
    log(f"data: {', '.join(folders)}{sliced}")
    return paths, limit


def load_parameters(path, model, arrays):
    """Copy saved arrays into the model's parameters, checking that each is there with its shape."""
    for param in model.params():
        if param.name not in arrays:
            raise DataError(f"{path}: no array for {param.name}; the file does not match its model description")
        if arrays[param.name].shape != param.shape:
            raise DataError(f"{path}: {param.name} has shape {arrays[param.name].shape}, "
                            f"the model description says {param.shape}")
        param.value[...] = arrays[param.name]


def append_jsonl(path, record):
    """Append one JSON object as a line; each line is written whole with one write call."""
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
    except OSError as error:
        raise naming(error, path) from error
