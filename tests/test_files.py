"""Run files: written whole or not at all."""
import json
import os

import pytest

from tasks.files import write_json


def test_a_failed_write_leaves_the_previous_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "summary.json"
    write_json(str(path), {"test_acc": 98.1})
    with pytest.raises(TypeError):
        write_json(str(path), {"test_acc": object()})  # fails halfway, in json.dumps
    assert os.listdir(tmp_path) == ["summary.json"] and json.loads(path.read_text()) == {"test_acc": 98.1}
