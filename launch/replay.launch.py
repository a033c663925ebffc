"""Replay a recorded bag through the live nodes and record what they publish.

    ros2 launch latent_segmentation_ros replay.launch.py bag:=/path/to/bag [out:=/path/to/out]
    latent-seg score --predictions /path/to/out --ground-truth /path/to/bag --out report_dir

Plays the bag with ``ros2 bag play --clock`` (simulated time from the bag), runs the
segmentation and grasp nodes with ``use_sim_time``, records their outputs with
``ros2 bag record``, and shuts everything down shortly after the bag has finished. The
player's exit code decides the outcome: 0 logs where the outputs are and exits 0; a player that
fails (e.g. rosbag2 not installed), or a node or the recorder that ends while the bag plays,
ends the launch at once with the reason and exit code 1. ``out`` defaults to a new folder in
the current directory, never beside the input bag. Unlike the
offline ``latent-seg replay`` this exercises the live path: QoS, synchronisation, drops under
load and real latency.
"""
import os
import shutil
from datetime import datetime

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetLaunchConfiguration,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from latent_segmentation_ros.core.launch_decisions import (
    DRAIN_S,
    LaunchFailure,
    live_output,
    player_outcome,
    require_programs,
    unexpected_exit,
)

PACKAGE = "latent_segmentation_ros"


def _prepare(context, *args, **kwargs):
    """Before anything starts: ``ros2`` must exist, and ``out`` is made concrete (the given
    folder, or a new one in the current directory; an existing folder ends the launch at once)."""
    require_programs({"ros2": shutil.which("ros2")})
    out = live_output(LaunchConfiguration("out").perform(context), LaunchConfiguration("bag").perform(context),
                      datetime.now(), os.getcwd())
    return [SetLaunchConfiguration("out", str(out))]


def _on_player_exit(event, context):
    """The player's exit code decides: 0 -> log, record a little longer, shut down (exit 0);
    anything else -> the launch ends with that error (exit 1)."""
    outcome = player_outcome(event.returncode, LaunchConfiguration("out").perform(context), context.is_shutdown)
    if outcome is None:
        return None
    if not outcome.succeeded:
        raise LaunchFailure(outcome.message)
    return [
        LogInfo(msg=outcome.message),
        TimerAction(period=DRAIN_S, actions=[EmitEvent(event=Shutdown(reason="bag replay finished"))]),
    ]


def _on_process_exit(event, context):
    """A node or the recorder ending before the launch stops them ends the launch with an error."""
    error = unexpected_exit(event.process_name, event.returncode, context.is_shutdown)
    if error is not None:
        raise LaunchFailure(error)


def generate_launch_description() -> LaunchDescription:
    bag = LaunchConfiguration("bag")
    out = LaunchConfiguration("out")
    config = LaunchConfiguration("config")
    left = LaunchConfiguration("left_camera")
    right = LaunchConfiguration("right_camera")
    arguments = [
        DeclareLaunchArgument("bag", description="rosbag2 to play (directory, or .mcap/.db3 file)"),
        DeclareLaunchArgument(
            "out", default_value="",
            description="new bag directory to record the node outputs into (empty: <bag name>_live_<time> in the "
                        "current directory)",
        ),
        DeclareLaunchArgument(
            "config",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "picking.yaml"]),
            description="parameter file of the nodes (camera topics, p, samples, checkpoint, ...)",
        ),
        DeclareLaunchArgument("left_camera", default_value="overhead_left", description="first camera name"),
        DeclareLaunchArgument("right_camera", default_value="overhead_right", description="second camera name"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate of the bag"),
        DeclareLaunchArgument(
            "start_delay", default_value="10.0", description="seconds to let the nodes load the model before playing"
        ),
        DeclareLaunchArgument("storage", default_value="mcap", description="storage of the recorded bag"),
    ]
    sim_time = {"use_sim_time": True}
    segmentation = Node(
        package=PACKAGE,
        executable="segmentation_node",
        name="latent_segmentation",
        parameters=[config, sim_time],
        output="screen",
    )
    grasping = Node(
        package=PACKAGE,
        executable="grasp_node",
        name="suction_grasp_planner",
        parameters=[config, sim_time],
        output="screen",
    )
    record = ExecuteProcess(
        cmd=[
            "ros2", "bag", "record",
            "--output", out,
            "--storage", LaunchConfiguration("storage"),
            "--use-sim-time",
            ["/", left, "/confidence_masks"],
            ["/", right, "/confidence_masks"],
            "/grasp_candidates",
        ],
        name="bag_record",
        output="screen",
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", bag, "--clock", "--rate", LaunchConfiguration("rate")],
        name="bag_play",
        output="screen",
    )
    handlers = [RegisterEventHandler(OnProcessExit(target_action=play, on_exit=_on_player_exit))]
    handlers += [
        RegisterEventHandler(OnProcessExit(target_action=process, on_exit=_on_process_exit))
        for process in (segmentation, grasping, record)
    ]
    return LaunchDescription(
        arguments
        + [OpaqueFunction(function=_prepare)]
        + handlers
        + [
            segmentation,
            grasping,
            record,
            TimerAction(period=LaunchConfiguration("start_delay"), actions=[play]),
        ]
    )
