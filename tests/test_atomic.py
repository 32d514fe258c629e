"""Files and folders are published whole or not at all."""

from __future__ import annotations

import pytest

from plankton_kedro.engine.atomic import atomic_path


def test_a_file_replaces_the_target_only_once_written(tmp_path):
    target = tmp_path / "state.pt"
    target.write_text("previous")
    with atomic_path(target) as temporary:
        assert not str(temporary).endswith("state.pt")
        (tmp_path / temporary).write_text("new")
        assert target.read_text() == "previous"  # still the old one while writing
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_a_failure_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.pt"
    target.write_text("previous")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        (tmp_path / temporary).write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_a_folder_is_published_whole(tmp_path):
    target = tmp_path / "shards"
    with atomic_path(target) as temporary:
        (tmp_path / temporary).mkdir()
        (tmp_path / temporary / "index.json").write_text("{}")
        assert not target.exists()
    assert (target / "index.json").read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "other") as temporary:
        (tmp_path / temporary).mkdir()
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]
