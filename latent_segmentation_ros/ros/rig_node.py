"""The package's two nodes as separate processes over real DDS, driven as a robot cell would:
camera pairs published with the sensor-data QoS, mask and grasp arrays and /diagnostics
received, parameters set through the nodes' own services, signals sent to the processes.

``latent-seg bench node`` and the live tests use it. The nodes are started from a colcon install
of this package (the executables ``ros2 run`` would start), each in its own process group, in a
ROS domain of the caller's choosing on loopback.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image

from latent_segmentation_ros.core.image_conversion import numpy_to_image
from latent_segmentation_ros.msg import ConfidenceMaskArray, GraspCandidateArray

PACKAGE = "latent_segmentation_ros"
CAMERAS = ("overhead_left", "overhead_right")
SEGMENTATION_NODE = "latent_segmentation"
GRASP_NODE = "suction_grasp_planner"
LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}  # DiagnosticStatus levels


def find_install_prefix(explicit: str | os.PathLike | None = None) -> Path:
    """The colcon install prefix holding this package's node executables.

    Given one, that; otherwise the first prefix of ``AMENT_PREFIX_PATH`` (what sourcing the
    workspace's setup script sets) that has them.
    """
    candidates = [Path(explicit)] if explicit else [
        Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p
    ]
    for prefix in candidates:
        if (prefix / "lib" / PACKAGE / "segmentation_node").is_file():
            return prefix
    where = str(explicit) if explicit else "AMENT_PREFIX_PATH"
    raise FileNotFoundError(
        f"no built {PACKAGE} in {where}: build it with colcon (tools/colcon_build.sh) and source "
        "the workspace (source tools/ros2_env.sh)"
    )


def _python_site(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def node_environment(domain_id: int, prefix: Path, threads: int | None = None) -> dict[str, str]:
    """This process's environment for a node: the given domain on loopback, the install's
    Python package first, unbuffered logs."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated on Jazzy; a warning if set beside the above
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    site = str(_python_site(prefix))
    env["PYTHONPATH"] = os.pathsep.join([site] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != site])
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def parameter_argument(name: str, value: Any) -> str:
    """``name:=value`` for ``--ros-args -p`` (the value is read as YAML there)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    return f"{name}:={text}"


class NodeProcess:
    """One node executable running in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.started_at = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(env), cwd=str(cwd), start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def output(self) -> str:
        """Everything the node wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def send(self, sig: int, group: bool = True) -> None:
        """Send ``sig`` to the node's process group (as a terminal does) or to the node alone."""
        try:
            if group:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None when still running after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def memory_kib(self) -> dict[str, int]:
        """Resident memory now and at its peak (VmRSS, VmHWM) in KiB; empty once it exited."""
        try:
            lines = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        except OSError:
            return {}
        values = {}
        for line in lines:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        return values

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGKILL after ``timeout`` seconds; the exit code."""
        if self.returncode is None:
            self.send(signal.SIGINT)
            if self.wait(timeout) is None:
                self.send(signal.SIGKILL)
                self.wait(timeout)
        return self.process.returncode


def start_node(
    executable: str,
    *,
    prefix: Path,
    domain_id: int,
    log_dir: Path,
    parameters: Mapping[str, Any] | None = None,
    params_file: Path | None = None,
    threads: int | None = None,
) -> NodeProcess:
    """Start ``lib/latent_segmentation_ros/<executable>`` of the install with the package's
    parameter file (config/picking.yaml unless another is given) and ``parameters`` on top."""
    params_file = params_file or prefix / "share" / PACKAGE / "config" / "picking.yaml"
    argv = [sys.executable, str(prefix / "lib" / PACKAGE / executable), "--ros-args", "--params-file", str(params_file)]
    for name, value in (parameters or {}).items():
        argv += ["-p", parameter_argument(name, value)]
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    return NodeProcess(executable, argv, node_environment(domain_id, prefix, threads), log_dir / f"{executable}.log", log_dir)


def synthetic_pairs(count: int, height: int, width: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two-camera RGB views of ``count`` tote scenes, rendered as ``latent-seg make-bag`` does."""
    from latent_segmentation_ros.replay.synthetic_bag import render_synthetic_views

    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        (left, _), (right, _) = render_synthetic_views(rng, height, width, 2)
        pairs.append((left, right))
    return pairs


def image_message(rgb: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8") -> Image:
    """A sensor_msgs/Image of an RGB array, as a camera driver publishes it."""
    fields = numpy_to_image(rgb, "rgb8")
    message = Image()
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    message.header.frame_id = frame_id
    message.height, message.width, message.step = fields.height, fields.width, fields.step
    message.encoding = encoding
    message.is_bigendian = fields.is_bigendian
    message.data = bytes(fields.data)
    return message


def stamp_ns_of(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class Received:
    """A message and when it arrived (time.monotonic())."""

    at: float
    message: Any


MAX_CAMERA_GAP_S = 0.05  # the longest pause between the two images of one published pair


class Rig:
    """A node of its own (private rclpy context, given domain) that publishes the cameras and
    records the nodes' outputs; spun in a background thread."""

    def __init__(self, domain_id: int, cameras: Sequence[str] = CAMERAS, namespace: str = "") -> None:
        self.cameras = tuple(cameras)
        self.lock = threading.Lock()
        self.masks: dict[str, list[Received]] = {camera: [] for camera in self.cameras}
        self.grasps: list[Received] = []
        self.diagnostics: list[Received] = []
        self.published_at: dict[int, float] = {}
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("rig_node", namespace=namespace or "/", context=self.context)
        prefix = f"/{namespace.strip('/')}" if namespace.strip("/") else ""
        self.image_publishers = [
            self.node.create_publisher(Image, f"{prefix}/{camera}/image_raw", qos_profile_sensor_data)
            for camera in self.cameras
        ]
        depth = QoSProfile(depth=200)
        for camera in self.cameras:
            self.node.create_subscription(
                ConfidenceMaskArray, f"{prefix}/{camera}/confidence_masks", self._keeper(self.masks[camera]), depth
            )
        self.node.create_subscription(GraspCandidateArray, f"{prefix}/grasp_candidates", self._keeper(self.grasps), depth)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._keeper(self.diagnostics), depth)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, name="rig_node", daemon=True)
        self._spinner.start()

    def _keeper(self, store: list[Received]) -> Callable[[Any], None]:
        def keep(message: Any) -> None:
            with self.lock:
                store.append(Received(time.monotonic(), message))
        return keep

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # the context was shut down while spinning
            if self.context.ok():
                raise

    def close(self) -> None:
        """Stop spinning and leave the domain."""
        self.context.try_shutdown()
        self._spinner.join(timeout=5)
        self.executor.shutdown(timeout_sec=1)
        self.node.destroy_node()

    def __enter__(self) -> "Rig":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- cameras --------------------------------------------------------------------------
    def publish(self, images: Sequence[Image]) -> None:
        """One image per camera, in camera order, each as far after the previous one as their
        stamps are apart (at most ``MAX_CAMERA_GAP_S``), as separate cameras publish; records
        when the pair went out, by stamp.

        Not back to back: over UDP (no shared memory between the processes), Fast DDS lost most
        best-effort pairs of a 300 kB and a 230 kB image published back to back by one process
        (at most 2 of 12 of the first images arrived), and none with 2 ms between the two.
        """
        now = time.monotonic()
        with self.lock:
            self.published_at.setdefault(stamp_ns_of(images[0].header), now)
        previous_stamp_ns = None
        for publisher, image in zip(self.image_publishers, images):
            stamp_ns = stamp_ns_of(image.header)
            if previous_stamp_ns is not None:
                time.sleep(min(max(stamp_ns - previous_stamp_ns, 0) / 1e9, MAX_CAMERA_GAP_S))
            publisher.publish(image)
            previous_stamp_ns = stamp_ns

    def pair(self, rgbs: Sequence[np.ndarray], stamp_ns: int, camera_offset_ns: int = 2_000_000) -> list[Image]:
        """The camera images of one pair: the first stamped ``stamp_ns``, the next a little later."""
        from latent_segmentation_ros.replay.synthetic_bag import optical_frame

        return [
            image_message(rgb, stamp_ns + index * camera_offset_ns, optical_frame(camera))
            for index, (rgb, camera) in enumerate(zip(rgbs, self.cameras))
        ]

    # ---- what came back -------------------------------------------------------------------
    def mask_arrays(self, camera: str) -> list[Received]:
        with self.lock:
            return list(self.masks[camera])

    def grasp_arrays(self) -> list[Received]:
        with self.lock:
            return list(self.grasps)

    def answered_stamps(self) -> set[int]:
        """Stamps (first camera's) of pairs with a mask array on every camera."""
        with self.lock:
            first = {stamp_ns_of(r.message.header) for r in self.masks[self.cameras[0]]}
            others = [
                {stamp_ns_of(r.message.header) for r in self.masks[camera]} for camera in self.cameras[1:]
            ]
        # the other cameras are stamped a few milliseconds after the first
        return {s for s in first if all(any(0 <= o - s < 50_000_000 for o in other) for other in others)}

    def diagnostic(self, node_name: str) -> DiagnosticStatus | None:
        """The latest /diagnostics status of the node called ``node_name``."""
        with self.lock:
            arrays = list(self.diagnostics)
        for received in reversed(arrays):
            for status in received.message.status:
                if status.hardware_id == node_name or status.name.startswith(f"{node_name}:"):
                    return status
        return None

    def wait_for(
        self, condition: Callable[[], Any], timeout: float, every: Callable[[], Any] | None = None, period: float = 0.5
    ) -> Any:
        """Poll ``condition`` until truthy or ``timeout`` s passed; ``every`` runs each ``period`` s."""
        deadline = time.monotonic() + timeout
        last = -float("inf")
        while True:
            value = condition()
            if value or time.monotonic() > deadline:
                return value
            if every is not None and time.monotonic() - last >= period:
                last = time.monotonic()
                every()
            time.sleep(0.02)

    # ---- parameters through the node's services --------------------------------------------
    def _call(self, service_type: Any, name: str, request: Any, timeout: float) -> Any:
        client = self.node.create_client(service_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available within {timeout:g} s")
            future = client.call_async(request)
            if not self.wait_for(future.done, timeout):
                raise TimeoutError(f"service {name} did not answer within {timeout:g} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node_name: str, values: Mapping[str, Any], timeout: float = 10.0) -> list[SetParametersResult]:
        """``ros2 param set`` for each name (one request): the node's answers in order."""
        request = SetParameters.Request()
        request.parameters = [Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
        return list(self._call(SetParameters, f"/{node_name}/set_parameters", request, timeout).results)

    def get_parameters(self, node_name: str, names: Sequence[str], timeout: float = 10.0) -> dict[str, Any]:
        request = GetParameters.Request()
        request.names = list(names)
        response = self._call(GetParameters, f"/{node_name}/get_parameters", request, timeout)
        return {name: parameter_value_to_python(value) for name, value in zip(names, response.values)}


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """A diagnostic status's key/value pairs as a dict."""
    return {item.key: item.value for item in status.values}


def drops_by_reason(status: DiagnosticStatus | None) -> dict[str, int]:
    """The drop counters (``dropped <reason>``) a node reports in /diagnostics."""
    if status is None:
        return {}
    return {
        key[len("dropped "):]: int(value)
        for key, value in status_values(status).items()
        if key.startswith("dropped ") and key != "dropped total"
    }


def stop_all(processes: Sequence[NodeProcess], timeout: float = 10.0) -> dict[str, int]:
    """Stop every node (SIGINT to each group at once, then wait); their exit codes."""
    for process in processes:
        if process.returncode is None:
            process.send(signal.SIGINT)
    return {process.name: process.stop(timeout) for process in processes}


# What ``ros2 launch FILE name:=value ...`` runs, for machines with launch but without ros2cli.
LAUNCH_RUNNER = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService(argv=sys.argv[2:])
source = PythonLaunchDescriptionSource(sys.argv[1])
arguments = [item.split(":=", 1) for item in sys.argv[2:]]
service.include_launch_description(IncludeLaunchDescription(source, launch_arguments=arguments))
sys.exit(service.run())
"""


def start_launch(
    launch_file: str,
    arguments: Sequence[str],
    *,
    prefix: Path,
    domain_id: int,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    threads: int | None = 1,
) -> NodeProcess:
    """``share/latent_segmentation_ros/launch/<launch_file>`` of the install with ``name:=value``
    arguments, as ``ros2 launch`` runs it (launch's LaunchService, exit code included), in its
    own process group; ``env`` entries go on top of the nodes' environment."""
    path = prefix / "share" / PACKAGE / "launch" / launch_file
    environment = node_environment(domain_id, prefix, threads)
    environment.update(env or {})
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-c", LAUNCH_RUNNER, str(path), *arguments]
    return NodeProcess(launch_file, argv, environment, log_dir / f"{launch_file}.log", log_dir)
