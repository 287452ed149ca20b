"""Run files: written whole or not at all; model files read back only as they were written; which data a
saved model is scored on."""
import errno
import json
import os

import numpy as np
import pytest

from tinyprop.tasks.files import (DataError, append_jsonl, check_writable, evaluation_data, load_parameters, write_bytes,
                         write_json)
from tinyprop.layers import Linear, Sequential


def test_a_failed_write_leaves_the_previous_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "summary.json"
    write_json(str(path), {"test_acc": 98.1})
    with pytest.raises(TypeError):
        write_json(str(path), {"test_acc": object()})  # fails halfway, in json.dumps
    assert os.listdir(tmp_path) == ["summary.json"] and json.loads(path.read_text()) == {"test_acc": 98.1}


def test_a_full_disk_is_reported_with_the_file_being_written(tmp_path, monkeypatch):
    """A full disk's OSError names no file; the message must say which one could not be written."""
    with pytest.raises(OSError) as raised:
        append_jsonl("/dev/full", {"epoch": 1})  # Linux's always-full device
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == "/dev/full"

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError) as raised:
        write_bytes(str(tmp_path / "model.npz"), b"weights")
    assert raised.value.filename == str(tmp_path / "model.npz") and os.listdir(tmp_path) == []


def test_a_file_is_writable_where_its_nearest_existing_folder_is(tmp_path):
    check_writable(str(tmp_path / "new" / "sub" / "parsed.conllu"))  # the folders would be made when it is written
    assert os.listdir(tmp_path) == []  # and the check makes none
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError) as raised:
        check_writable(str(tmp_path / "file" / "parsed.conllu"))
    assert raised.value.filename == str(tmp_path / "file" / "parsed.conllu")


def test_load_parameters_refuses_an_array_of_another_shape_even_if_it_broadcasts():
    model = Sequential([Linear(3, 4, rng=np.random.default_rng(0), name="a")])
    arrays = {param.name: param.value.copy() for param in model.params()}
    arrays["a.weight"] = np.ones((1, 3), np.float32)  # would broadcast over the 4 rows
    with pytest.raises(DataError, match=r"m.npz: a.weight has shape \(1, 3\), the model description says \(4, 3\)"):
        load_parameters("m.npz", model, arrays)


def test_a_given_data_dir_is_used_without_mentioning_the_missing_recorded_files(tmp_path):
    meta = dict(data_files=dict(test=str(tmp_path / "gone.conllu")), max_examples=None)
    lines = []
    found = dict(dev="/data/dev.conllu", test="/data/test.conllu")
    assert evaluation_data(meta, "/data", lambda data_dir: found, lines.append) == (found, None)
    assert lines == ["data: /data"]
