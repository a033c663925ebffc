"""rclpy plumbing both nodes share: parameters declared from the ROS-free specs, the message
factory for rclpy's generated classes, diagnostics, and a main() that never hides a failure."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from diagnostic_updater import Updater
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from latent_segmentation_ros.messages import MessageFactory, rclpy_array_converters
from latent_segmentation_ros.node_support import NodeStats, diagnostic_summary
from latent_segmentation_ros.parameters import ParameterSet, ParameterSpec

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}


class StartupError(RuntimeError):
    """The node cannot start (bad parameters, a checkpoint that does not load); says why."""


def rclpy_factory() -> MessageFactory:
    """Builds this package's messages with the classes rosidl generated for it."""
    from latent_segmentation_ros.msg import (
        ConfidenceMask,
        ConfidenceMaskArray,
        GraspCandidate,
        GraspCandidateArray,
    )

    return MessageFactory(
        confidence_mask=ConfidenceMask,
        confidence_mask_array=ConfidenceMaskArray,
        grasp_candidate=GraspCandidate,
        grasp_candidate_array=GraspCandidateArray,
        image=Image,
        region_of_interest=RegionOfInterest,
        header=Header,
        time=Time,
        **rclpy_array_converters(),
    )


def descriptor_for(spec: ParameterSpec) -> ParameterDescriptor:
    """A ParameterDescriptor with the spec's description, range and read-only flag."""
    descriptor = ParameterDescriptor(
        description=spec.description,
        additional_constraints=spec.constraints,
        read_only=spec.read_only,
    )
    if spec.minimum is not None and spec.maximum is not None:
        if spec.kind == "integer":
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
            ]
        elif spec.kind in ("double", "double_array"):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
            ]
    return descriptor


class ParameterizedNode(Node):
    """A node whose parameters come from a spec table and are validated by a ROS-free rule set.

    ``on_change`` receives the proposed changes (name -> value) and returns an object with
    ``accepted`` and ``reason``; a refused change is reported to the caller of ``ros2 param set``.
    """

    def __init__(self, name: str, specs: Mapping[str, ParameterSpec], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for spec in specs.values():
            try:
                self.declare_parameter(spec.name, spec.default, descriptor_for(spec))
            except Exception as error:  # an override of the wrong type or out of range
                raise StartupError(f"invalid parameter {spec.name}: {error}") from None
        declared = {spec.name: self.get_parameter(spec.name).value for spec in specs.values()}
        try:
            self.parameter_set = ParameterSet(specs, declared)
        except ValueError as error:
            raise StartupError(f"invalid parameters: {error}") from None
        self.stats = NodeStats()
        self._previous_snapshot: dict | None = None
        self._on_change: Callable[[dict], Any] | None = None

    def watch_parameters(self, on_change: Callable[[dict], Any]) -> None:
        """Start validating ``ros2 param set`` requests with ``on_change``."""
        self._on_change = on_change
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        changes = {parameter.name: parameter.value for parameter in parameters}
        decision = self._on_change(changes)
        if not decision.accepted:
            self.get_logger().warning(f"parameter change refused: {decision.reason}")
        return SetParametersResult(successful=bool(decision.accepted), reason=decision.reason)

    def start_diagnostics(self, task_name: str) -> None:
        self.updater = Updater(self)
        self.updater.setHardwareID(self.get_name())
        self.updater.add(task_name, self._diagnose)

    def _diagnose(self, stat: Any) -> Any:
        snapshot = self.stats.snapshot()
        level, message, values = diagnostic_summary(snapshot, self._previous_snapshot)
        self._previous_snapshot = snapshot
        stat.summary(LEVELS[level], message)
        for key, value in values:
            stat.add(key, value)
        return stat


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """rclpy.init, build the node, spin until Ctrl-C or shutdown; 1 when the node cannot start."""
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except StartupError as error:
        get_logger("latent_segmentation_ros").fatal(f"refusing to start: {error}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
