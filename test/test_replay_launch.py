"""launch/replay.launch.py: parses everywhere; where launch and launch_ros are installed, its
actions and event handlers are checked with launch's own objects, and it is run (nodes from the
colcon install, a stand-in ``ros2`` whose player exits with a chosen code, as ``ros2 bag play``
does without rosbag2): the player's exit code decides the message and the launch's exit code.

launch_ros.actions.Node is an ExecuteProcess itself: the recorder is the ExecuteProcess that is
not a Node."""
import ast
import importlib.util
import os
import stat
from pathlib import Path

import pytest

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "replay.launch.py"


def test_launch_file_parses_and_defines_the_entry_point():
    tree = ast.parse(LAUNCH_FILE.read_text())
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in names
    source = LAUNCH_FILE.read_text()
    # Its decisions are the package's plain functions (test_launch_decisions.py).
    for name in ("player_outcome", "unexpected_exit", "live_output", "require_programs"):
        assert name in source


def _description():
    spec = importlib.util.spec_from_file_location("replay_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _parts(description):
    from launch.actions import ExecuteProcess, RegisterEventHandler, TimerAction
    from launch_ros.actions import Node

    entities = description.entities
    nodes = [e for e in entities if isinstance(e, Node)]
    recorders = [e for e in entities if isinstance(e, ExecuteProcess) and not isinstance(e, Node)]
    timers = [e for e in entities if isinstance(e, TimerAction)]
    handlers = [e.event_handler for e in entities if isinstance(e, RegisterEventHandler)]
    return nodes, recorders, timers, handlers


def test_launch_description_plays_records_and_runs_nodes_on_sim_time():
    pytest.importorskip("launch")
    pytest.importorskip("launch_ros")
    from launch.actions import DeclareLaunchArgument, ExecuteProcess
    from launch_ros.actions import Node

    description = _description()
    arguments = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert {"bag", "out", "config", "rate", "start_delay", "storage"} <= set(arguments)
    assert arguments["out"].default_value[0].text == ""  # resolved at launch time, see test_launch_decisions
    nodes, recorders, timers, handlers = _parts(description)
    assert len(nodes) == 2
    assert len(recorders) == 1
    (timer,) = timers
    (player,) = timer.actions
    assert isinstance(player, ExecuteProcess) and not isinstance(player, Node)
    # One exit handler each for the player, both nodes and the recorder.
    assert len(handlers) == 4


def _exited(action, code):
    from launch.events.process import ProcessExited

    return ProcessExited(action=action, name="ros2-4", cmd=["ros2", "bag", "play"], cwd=None, env=None, pid=1,
                         returncode=code)


def _context(out: str):
    from launch import LaunchContext

    context = LaunchContext()
    context.launch_configurations["out"] = out
    return context


def test_the_players_exit_code_decides_and_other_exits_end_the_launch():
    pytest.importorskip("launch")
    pytest.importorskip("launch_ros")
    from launch.actions import LogInfo, TimerAction

    from latent_segmentation_ros.core.launch_decisions import LaunchFailure

    nodes, recorders, timers, handlers = _parts(_description())
    player = timers[0].actions[0]
    (on_player,) = [h for h in handlers if h.matches(_exited(player, 0))]
    done = on_player.handle(_exited(player, 0), _context("/data/live"))
    assert any(isinstance(a, LogInfo) and "bag finished" in str(a.msg[0].text) for a in done)
    assert any(isinstance(a, TimerAction) for a in done)
    with pytest.raises(LaunchFailure, match="exited with code 2"):
        on_player.handle(_exited(player, 2), _context("/data/live"))
    for process in [*nodes, *recorders]:
        (handler,) = [h for h in handlers if h.matches(_exited(process, 1))]
        with pytest.raises(LaunchFailure, match="while the launch was running"):
            handler.handle(_exited(process, 1), _context("/data/live"))


FAKE_ROS2 = """#!/bin/sh
# Stands in for ros2cli: `bag record` runs until stopped, `bag play` ends with $FAKE_PLAY_EXIT
# (2 is what ros2cli answers when rosbag2 is not installed).
case "$2" in
  record) trap 'exit 0' INT TERM; while :; do sleep 0.1; done ;;
  play) echo "ros2: error: invalid choice: 'bag'" >&2; exit "$FAKE_PLAY_EXIT" ;;
esac
exit 2
"""


@pytest.mark.parametrize("player_exit, launch_exit", [(2, 1), (0, 0)])
def test_replay_launch_exit_code_follows_the_player(ros_domain, tmp_path, player_exit, launch_exit):
    pytest.importorskip("launch_ros")
    pytest.importorskip("rclpy")
    pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")
    from latent_segmentation_ros.ros import rig_node

    prefix = rig_node.find_install_prefix()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ros2").write_text(FAKE_ROS2)
    (bin_dir / "ros2").chmod(stat.S_IRWXU)
    bag = tmp_path / "data" / "tote_bag"
    bag.mkdir(parents=True)  # never opened: the stand-in player does not read it
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_PLAY_EXIT": str(player_exit)}
    launch = rig_node.start_launch("replay.launch.py", [f"bag:={bag}", "start_delay:=1.0"], prefix=prefix,
                                   domain_id=ros_domain, log_dir=tmp_path / "run", env=env)
    try:
        code = launch.wait(timeout=120)
    finally:
        launch.stop()
    output = launch.output()
    assert code == launch_exit, output[-3000:]
    if player_exit:
        assert "ros2 bag play exited with code 2" in output and "bag finished" not in output, output[-3000:]
    else:
        assert f"bag finished; outputs recorded in {tmp_path / 'run'}/tote_bag_live_" in output, output[-3000:]
    assert not list(bag.parent.glob("tote_bag_live*"))  # nothing beside the input bag
