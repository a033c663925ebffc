"""Replay a recorded bag through the live nodes and record what they publish.

    ros2 launch latent_segmentation_ros replay.launch.py bag:=/path/to/bag [out:=/path/to/out]
    latent-seg score --predictions /path/to/out --ground-truth /path/to/bag --out report_dir

Plays the bag with ``ros2 bag play --clock`` (simulated time from the bag), runs the
segmentation and grasp nodes with ``use_sim_time``, records their outputs with
``ros2 bag record``, and shuts everything down shortly after the bag has finished. Unlike the
offline ``latent-seg replay`` this exercises the live path: QoS, synchronisation, drops under
load and real latency.
"""
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    LogInfo,
    RegisterEventHandler,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "latent_segmentation_ros"


def generate_launch_description() -> LaunchDescription:
    bag = LaunchConfiguration("bag")
    out = LaunchConfiguration("out")
    config = LaunchConfiguration("config")
    left = LaunchConfiguration("left_camera")
    right = LaunchConfiguration("right_camera")
    arguments = [
        DeclareLaunchArgument("bag", description="rosbag2 to play (directory, or .mcap/.db3 file)"),
        DeclareLaunchArgument(
            "out", default_value=[bag, "_live"], description="bag directory to record the node outputs into"
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
        output="screen",
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", bag, "--clock", "--rate", LaunchConfiguration("rate")],
        output="screen",
    )
    stop_after_play = RegisterEventHandler(
        OnProcessExit(
            target_action=play,
            on_exit=[
                LogInfo(msg=["bag finished; outputs recorded in ", out]),
                # Let the last frames go through the nodes and into the recording.
                TimerAction(period=5.0, actions=[EmitEvent(event=Shutdown(reason="bag replay finished"))]),
            ],
        )
    )
    return LaunchDescription(
        arguments
        + [
            segmentation,
            grasping,
            record,
            stop_after_play,
            TimerAction(period=LaunchConfiguration("start_delay"), actions=[play]),
        ]
    )
