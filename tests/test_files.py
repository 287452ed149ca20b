"""Run files: written whole or not at all; model files read back only as they were written; which data a
saved model is scored on."""
import errno
import json
import os

import pytest

from tinyprop.tasks.files import append_jsonl, check_writable, write_bytes, write_json


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
