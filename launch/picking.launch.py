"""The picking cell's perception: two-camera segmentation and suction grasp planning.

    ros2 launch latent_segmentation_ros picking.launch.py
    ros2 launch latent_segmentation_ros picking.launch.py checkpoint:=/models/tote.safetensors \\
        device:=cuda left_image_topic:=/cam_a/color/image_raw right_image_topic:=/cam_b/color/image_raw

Parameters come from ``config`` (default: the package's config/picking.yaml); the launch
arguments below override the file only when given a non-empty value. Tune p live with
``ros2 param set /latent_segmentation p 0.95``. When either node ends while the launch runs
(e.g. a checkpoint that does not load), the launch stops the other and exits with code 1.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from latent_segmentation_ros.core.launch_decisions import LaunchFailure, unexpected_exit

PACKAGE = "latent_segmentation_ros"

ARGUMENTS = [
    ("namespace", "", "namespace for both nodes and their relative topics (empty: none)"),
    ("checkpoint", "", "Latent-MaskRCNN .safetensors checkpoint (empty: the one in the config file, "
     "or the bundled demo model)"),
    ("device", "", "torch device: auto, cpu, cuda or cuda:N (empty: the config file's)"),
    ("left_image_topic", "", "sensor_msgs/Image topic of the first camera (empty: the config file's)"),
    ("right_image_topic", "", "sensor_msgs/Image topic of the second camera (empty: the config file's)"),
    ("input_timeout", "", "seconds without input before /diagnostics warns, 0: never (empty: the config "
     "file's)"),
    ("use_sim_time", "false", "use the /clock topic (true when replaying a bag with --clock)"),
    ("log_level", "info", "log level of both nodes"),
]


def _on_node_exit(event, context):
    """A node that ends while the launch runs (e.g. the segmentation node refusing a checkpoint
    or device:=cuda without CUDA) ends the launch: the other node is stopped, exit code 1."""
    error = unexpected_exit(event.process_name, event.returncode, context.is_shutdown)
    if error is not None:
        raise LaunchFailure(error)


def _nodes(context, *args, **kwargs):
    """Both nodes, with overrides only for the launch arguments that were given."""
    value = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    config = LaunchConfiguration("config")
    overrides = {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}
    if value["input_timeout"]:
        overrides["input_timeout"] = ParameterValue(LaunchConfiguration("input_timeout"), value_type=float)
    segmentation_overrides = dict(overrides)
    for name in ("checkpoint", "device"):
        if value[name]:
            segmentation_overrides[name] = ParameterValue(LaunchConfiguration(name), value_type=str)
    if value["left_image_topic"] or value["right_image_topic"]:
        if not (value["left_image_topic"] and value["right_image_topic"]):
            raise LaunchFailure("give both left_image_topic and right_image_topic, or neither")
        segmentation_overrides["camera_topics"] = [value["left_image_topic"], value["right_image_topic"]]
    ros_arguments = ["--log-level", value["log_level"]]
    nodes = [
        Node(
            package=PACKAGE,
            executable="segmentation_node",
            name="latent_segmentation",
            namespace=value["namespace"] or None,
            parameters=[config, segmentation_overrides],
            ros_arguments=ros_arguments,
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package=PACKAGE,
            executable="grasp_node",
            name="suction_grasp_planner",
            namespace=value["namespace"] or None,
            parameters=[config, overrides],
            ros_arguments=ros_arguments,
            output="screen",
            emulate_tty=True,
        ),
    ]
    return nodes + [RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_on_node_exit)) for node in nodes]


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(
            "config",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "picking.yaml"]),
            description="parameter file of both nodes (every parameter, with a comment each)",
        )
    ]
    declared += [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)])
