"""What the launch files decide, without launch installed: which exits end a launch with an
error, the bag replay's verdict from the player's exit code, and where its recording goes."""
from __future__ import annotations

from datetime import datetime

import pytest

from latent_segmentation_ros.core.launch_decisions import (
    LaunchFailure,
    bag_name,
    live_output,
    player_outcome,
    require_programs,
    unexpected_exit,
)

NOW = datetime(2024, 5, 17, 13, 4, 5)


@pytest.mark.parametrize("code, how", [(1, "exited with code 1"), (0, "exited cleanly"), (-9, "killed by signal 9")])
def test_a_process_ending_while_the_launch_runs_is_an_error(code, how):
    error = unexpected_exit("segmentation_node-1", code, shutting_down=False)
    assert error is not None and "segmentation_node-1" in error and how in error


def test_exits_while_the_launch_shuts_down_are_expected():
    assert unexpected_exit("grasp_node-2", 0, shutting_down=True) is None
    assert unexpected_exit("grasp_node-2", -2, shutting_down=True) is None


def test_only_a_player_exit_code_of_zero_is_a_replay():
    done = player_outcome(0, "/data/out")
    assert done.succeeded and "bag finished" in done.message and "/data/out" in done.message
    failed = player_outcome(2, "/data/out")
    assert not failed.succeeded
    assert "exited with code 2" in failed.message and "not replayed" in failed.message
    assert "bag finished" not in failed.message
    assert not player_outcome(-15, "/data/out").succeeded
    assert player_outcome(2, "/data/out", shutting_down=True) is None  # Ctrl-C during playback


def test_the_default_recording_goes_to_the_current_directory_not_beside_the_bag(tmp_path):
    bag = tmp_path / "data" / "tote_bag"
    bag.mkdir(parents=True)
    cwd = tmp_path / "work"
    cwd.mkdir()
    out = live_output("", f"{bag}/", NOW, cwd)
    assert out == cwd / "tote_bag_live_2024_05_17-13_04_05"
    assert out.parent != bag.parent
    assert live_output("", str(bag) + ".mcap", NOW, cwd).name.startswith("tote_bag_live_")
    assert bag_name("/x/recording.db3") == "recording"


def test_a_given_output_is_kept_relative_to_the_current_directory(tmp_path):
    assert live_output("runs/live", "bag", NOW, tmp_path) == tmp_path / "runs" / "live"
    assert live_output(str(tmp_path / "abs"), "bag", NOW, "/elsewhere") == tmp_path / "abs"


def test_an_existing_output_or_a_missing_bag_is_refused(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(LaunchFailure, match="exists already"):
        live_output("taken", "bag", NOW, tmp_path)
    with pytest.raises(LaunchFailure, match="bag:= is required"):
        live_output("", " ", NOW, tmp_path)


def test_missing_programs_are_named():
    require_programs({"ros2": "/opt/ros/jazzy/bin/ros2"})
    with pytest.raises(LaunchFailure, match="not found on PATH: ros2"):
        require_programs({"ros2": None})
