"""rclpy plumbing both nodes share: parameters declared from the ROS-free specs, the message
factory for rclpy's generated classes, diagnostics, camera pairing, and a main() that never
hides a failure and ends cleanly on SIGINT / SIGTERM.

message_filters and diagnostic_updater come with every apt or source ROS 2 but not with the
ROS 2 wheels on PyPI. Where they are missing the nodes pair the cameras with the package's own
approximate-time pairer (camera_sync, the same policy replay uses) on plain subscriptions, and
publish the same DiagnosticArray on /diagnostics themselves; they log which they use.
"""
from __future__ import annotations

import gc
import math
import threading
import time
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from latent_segmentation_ros.core.camera_sync import ApproximateTimePairer, SyncPolicy
from latent_segmentation_ros.core.messages import MessageFactory, rclpy_array_converters
from latent_segmentation_ros.core.node_support import NodeStats, diagnostic_summary, seconds_since_process_start
from latent_segmentation_ros.core.parameters import ParameterSet, ParameterSpec
from latent_segmentation_ros.core.signals import (
    ShutdownRequest,
    StartupInterrupted,
    ignore_further_signals,
    install_shutdown_handlers,
)

try:
    import message_filters
except ImportError:  # ROS 2 from PyPI: pair with camera_sync
    message_filters = None
try:
    from diagnostic_updater import Updater
except ImportError:  # ROS 2 from PyPI: publish /diagnostics ourselves
    Updater = None

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}
DIAGNOSTICS_PERIOD_S = 1.0  # diagnostic_updater's default
SPIN_PERIOD_S = 0.1  # how soon the spin loop notices a shutdown request


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
    bounds = spec.descriptor_range()
    if bounds is not None:
        if spec.kind == "integer":
            low = math.ceil(bounds[0])  # an exclusive integer minimum: the next integer
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(bounds[1]), step=1)]
        elif spec.kind in ("double", "double_array"):
            descriptor.floating_point_range = [FloatingPointRange(from_value=bounds[0], to_value=bounds[1], step=0.0)]
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
        self._input_name = "input"
        self._on_change: Callable[[dict], Any] | None = None

    def set_parameters(self, parameter_list: list) -> list:
        """rclpy's, with every refusal logged: also those of rclpy's own checks (range, type,
        read-only), which refuse before the node's callback sees the change."""
        results = super().set_parameters(parameter_list)
        for parameter, result in zip(parameter_list, results):
            self._log_refusal([parameter], result)
        return results

    def set_parameters_atomically(self, parameter_list: list) -> SetParametersResult:
        """rclpy's (what the set_parameters services call), with a refusal logged."""
        result = super().set_parameters_atomically(parameter_list)
        self._log_refusal(parameter_list, result)
        return result

    def _log_refusal(self, parameters: list, result: SetParametersResult) -> None:
        if not result.successful:
            values = ", ".join(f"{p.name}={p.value!r}" for p in parameters)
            self.get_logger().warning(f"parameter change refused ({values}): {result.reason}")

    def watch_parameters(self, on_change: Callable[[dict], Any]) -> None:
        """Start validating ``ros2 param set`` requests with ``on_change``."""
        self._on_change = on_change
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        changes = {parameter.name: parameter.value for parameter in parameters}
        decision = self._on_change(changes)  # a refusal is logged by set_parameters*
        return SetParametersResult(successful=bool(decision.accepted), reason=decision.reason)

    def start_diagnostics(self, task_name: str, input_name: str) -> None:
        """Publish this node's health on /diagnostics every second (see diagnostic_summary)."""
        self._input_name = input_name
        if Updater is not None:
            self.updater = Updater(self)
            self.updater.setHardwareID(self.get_name())
            used = "diagnostic_updater"
        else:
            self.updater = DiagnosticsPublisher(self, self.get_name(), DIAGNOSTICS_PERIOD_S)
            used = "own /diagnostics publisher (diagnostic_updater is not installed)"
        self.updater.add(task_name, self._diagnose)
        self.get_logger().info(f"diagnostics: {used}")

    def _diagnose(self, stat: Any) -> Any:
        level, message, values = diagnostic_summary(
            self.stats.snapshot(), float(self.parameter_set["input_timeout"]), self._input_name
        )
        stat.summary(LEVELS[level], message)
        for key, value in values:
            stat.add(key, value)
        return stat


class StatusBuilder:
    """What a diagnostics task fills in: the ``summary`` / ``add`` calls of diagnostic_updater's
    status wrapper, building a DiagnosticStatus."""

    def __init__(self, name: str, hardware_id: str) -> None:
        self.status = DiagnosticStatus(name=name, hardware_id=hardware_id, level=DiagnosticStatus.ERROR,
                                       message="no message was set")

    def summary(self, level: Any, message: str) -> None:
        self.status.level = level
        self.status.message = message

    def add(self, key: str, value: Any) -> None:
        self.status.values.append(KeyValue(key=str(key), value=str(value)))


PERIOD_PARAMETER = "diagnostic_updater.period"


class DiagnosticsPublisher:
    """/diagnostics for a node without diagnostic_updater: one DiagnosticArray per period with a
    status per task, named ``"<node name>: <task name>"`` with the hardware id, as the updater's.

    The period is the updater's read-only parameter ``diagnostic_updater.period`` (seconds, set
    at start like any parameter), so one parameter file serves both."""

    def __init__(self, node: Node, hardware_id: str, period_s: float = DIAGNOSTICS_PERIOD_S) -> None:
        self._node = node
        self._hardware_id = hardware_id
        self._tasks: list[tuple[str, Callable[[Any], Any]]] = []
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.period_s = self._declare_period(node, period_s)
        self._timer = node.create_timer(self.period_s, self.update)

    @staticmethod
    def _declare_period(node: Node, default_s: float) -> float:
        descriptor = ParameterDescriptor(
            description="seconds between /diagnostics updates (diagnostic_updater's parameter)", read_only=True,
        )
        try:
            if not node.has_parameter(PERIOD_PARAMETER):
                node.declare_parameter(PERIOD_PARAMETER, float(default_s), descriptor)
            period_s = node.get_parameter(PERIOD_PARAMETER).value
        except InvalidParameterTypeException as error:
            period_s = error  # reported below, as any other bad value
        if isinstance(period_s, bool) or not isinstance(period_s, (int, float)) or not math.isfinite(period_s) \
                or period_s <= 0:
            node.get_logger().warning(
                f"{PERIOD_PARAMETER} must be a positive number of seconds, got {period_s!r}; using {default_s:g}"
            )
            return float(default_s)
        return float(period_s)

    def add(self, name: str, task: Callable[[Any], Any]) -> None:
        self._tasks.append((name, task))

    def update(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self._node.get_clock().now().to_msg()
        for name, task in self._tasks:
            builder = StatusBuilder(f"{self._node.get_name()}: {name}", self._hardware_id)
            task(builder)
            array.status.append(builder.status)
        self._publisher.publish(array)


def subscribe_image_pairs(
    node: Node,
    topics: Sequence[str],
    qos: Any,
    policy: SyncPolicy,
    on_pair: Callable[..., None],
    on_image: Callable[[str], None] | None = None,
    **subscription_options: Any,
) -> Any:
    """Subscribe to ``topics`` and call ``on_pair(*images)`` for each approximately synchronised
    set: message_filters' ApproximateTimeSynchronizer where installed, else camera_sync's pairer
    (the same policy). ``on_image(topic)`` sees every image before pairing (for counting).
    Returns the object to keep alive."""
    if message_filters is not None:
        subscribers = [
            message_filters.Subscriber(node, Image, topic, qos_profile=qos, **subscription_options) for topic in topics
        ]
        if on_image is not None:
            for topic, subscriber in zip(topics, subscribers):
                subscriber.registerCallback(lambda _message, topic=topic: on_image(topic))
        synchronizer = message_filters.ApproximateTimeSynchronizer(subscribers, policy.queue_size, policy.slop)
        synchronizer.registerCallback(on_pair)
        node.get_logger().info("camera pairing: message_filters.ApproximateTimeSynchronizer")
        return subscribers, synchronizer
    node.get_logger().info("camera pairing: camera_sync.ApproximateTimePairer (message_filters is not installed)")
    return PairingSubscriptions(node, topics, qos, policy, on_pair, on_image, **subscription_options)


class PairingSubscriptions:
    """Plain rclpy image subscriptions feeding camera_sync's approximate-time pairer."""

    def __init__(
        self,
        node: Node,
        topics: Sequence[str],
        qos: Any,
        policy: SyncPolicy,
        on_pair: Callable[..., None],
        on_image: Callable[[str], None] | None = None,
        **subscription_options: Any,
    ) -> None:
        self._pairer: ApproximateTimePairer = ApproximateTimePairer(policy, num_streams=len(topics))
        self._lock = threading.Lock()  # callbacks may run on several executor threads
        self._topics = list(topics)
        self._on_pair = on_pair
        self._on_image = on_image
        self.subscriptions = [
            node.create_subscription(Image, topic, partial(self._receive, index), qos, **subscription_options)
            for index, topic in enumerate(topics)
        ]

    def _receive(self, index: int, message: Image) -> None:
        if self._on_image is not None:
            self._on_image(self._topics[index])
        stamp_ns = int(message.header.stamp.sec) * 1_000_000_000 + int(message.header.stamp.nanosec)
        with self._lock:
            matched = self._pairer.add(index, stamp_ns, message)
        if matched is not None:
            self._on_pair(*matched)


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """rclpy.init, build the node, spin until SIGINT / SIGTERM or an external shutdown; 0 then,
    1 when the node cannot start (the reason logged).

    rclpy's own signal handlers are off: they raise KeyboardInterrupt, which a second Ctrl-C
    (a launcher forwards the terminal's) throws from inside the teardown. Ours only request the
    shutdown and ignore repeats; the spin loop looks every ``SPIN_PERIOD_S``.
    """
    shutdown = install_shutdown_handlers()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    logger = get_logger("latent_segmentation_ros")
    node = None
    executor = SingleThreadedExecutor()
    started = time.monotonic()
    try:
        if not shutdown.requested:
            shutdown.interrupt_startup = True  # a signal now abandons the start at once
            try:
                node = factory()
            finally:
                shutdown.interrupt_startup = False
            logger = node.get_logger()
            since_start = seconds_since_process_start()
            logger.info(
                f"ready {time.monotonic() - started:.1f} s after rclpy.init"
                + ("" if since_start is None else f", {since_start:.1f} s after the process started")
            )
            executor.add_node(node)
            while rclpy.ok() and not shutdown.requested:
                executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except StartupError as error:
        logger.fatal(f"refusing to start: {error}")
        return 1
    except (ExternalShutdownException, StartupInterrupted):
        pass
    finally:
        _teardown(executor, node, shutdown, logger)
    return 0


def _teardown(executor: Any, node: Node | None, shutdown: ShutdownRequest, logger: Any) -> None:
    if shutdown.requested:
        logger.info(f"shutting down on {shutdown.signal_name}")
        ignore_further_signals()  # the process ends now; a late repeat must not kill it
    executor.shutdown(timeout_sec=1.0)
    if node is not None:
        node.destroy_node()
    rclpy.try_shutdown()
    # The process ends next: spare the interpreter's final garbage collection a walk over
    # torch's millions of objects (measured: 1.3 s of a 2 s exit, more on a busy machine).
    gc.freeze()
