"""launch/replay.launch.py: parses everywhere; on a ROS machine, builds the expected actions."""
import ast
import importlib.util
from pathlib import Path

import pytest

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "replay.launch.py"


def test_launch_file_parses_and_defines_the_entry_point():
    tree = ast.parse(LAUNCH_FILE.read_text())
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in names


def test_launch_description_plays_records_and_runs_nodes_on_sim_time():
    pytest.importorskip("launch")
    pytest.importorskip("launch_ros")
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, TimerAction
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("replay_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    entities = description.entities
    arguments = {e.name for e in entities if isinstance(e, DeclareLaunchArgument)}
    assert {"bag", "out", "config", "rate"} <= arguments
    assert len([e for e in entities if isinstance(e, Node)]) == 2
    record = [e for e in entities if isinstance(e, ExecuteProcess)]
    assert len(record) == 1
    timers = [e for e in entities if isinstance(e, TimerAction)]
    assert timers and isinstance(timers[0].actions[0], ExecuteProcess)
