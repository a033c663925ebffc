"""The two-camera segmentation node (rclpy wiring only; the behaviour is SegmentationCore's).

Subscribes to the camera topics with the sensor-data QoS (overridable), pairs the images with
message_filters' ApproximateTimeSynchronizer (camera_sync's pairer, the same policy, where
message_filters is not installed), hands the newest pair to a worker thread that owns
the model, and publishes one ConfidenceMaskArray per camera on ``<camera>/confidence_masks``
(plus ``<camera>/segmentation_overlay`` when enabled). ``ros2 param set`` of p, mode or
num_samples takes effect at once and re-publishes the last frame.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import Image

from latent_segmentation_ros.core.camera_sync import SyncPolicy
from latent_segmentation_ros.core.cpu_threads import passive_openmp_waits
from latent_segmentation_ros.core.node_support import DROP_ERROR
from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS
from latent_segmentation_ros.core.pipeline import CheckpointLoadError, PerceptionPipeline, PipelineSettings
from latent_segmentation_ros.core.segmentation import PIPELINE_SETTINGS, FrameOutput, FrameWorker, Outcome, SegmentationCore
from latent_segmentation_ros.msg import ConfidenceMaskArray
from latent_segmentation_ros.ros.base_node import (
    ParameterizedNode,
    StartupError,
    rclpy_factory,
    run_node,
    subscribe_image_pairs,
)

NODE_NAME = "latent_segmentation"
WARNING_PERIOD_S = 5.0
SHUTDOWN_WAIT_S = 2.0


class SegmentationNode(ParameterizedNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, SEGMENTATION_PARAMETERS, **kwargs)
        values = self.parameter_set
        settings = PipelineSettings(**{name: values[name] for name in PIPELINE_SETTINGS})
        started = time.perf_counter()
        try:
            pipeline = PerceptionPipeline.from_checkpoint(
                values["checkpoint"] or None, values["device"], settings, warm_up_kernel=False
            )
        except CheckpointLoadError as error:
            raise StartupError(str(error)) from None
        self.get_logger().info(
            f"model {pipeline.model_id} on {pipeline.device} loaded in {time.perf_counter() - started:.1f} s"
        )
        if str(pipeline.device).split(":")[0] == "cpu":
            self._compile_kernel()
        self.core = SegmentationCore(pipeline, rclpy_factory(), values, self.stats)
        self.worker = FrameWorker(self.core, self._publish, self._report_drop)

        overrides = QoSOverridingOptions.with_default_policies()
        self._mask_publishers = {}
        self._overlay_publishers = {}
        for camera in self.core.cameras:
            self._mask_publishers[camera] = self.create_publisher(
                ConfidenceMaskArray, f"{camera}/confidence_masks", QoSProfile(depth=10),
                qos_overriding_options=overrides,
            )
            self._overlay_publishers[camera] = self.create_publisher(
                Image, f"{camera}/segmentation_overlay", QoSProfile(depth=2),
                qos_overriding_options=overrides,
            )
        self._pairing = subscribe_image_pairs(
            self,
            values["camera_topics"],
            qos_profile_sensor_data,
            SyncPolicy(values["sync_slop"], values["queue_size"]),
            self._on_pair,
            self.stats.source_message,
            qos_overriding_options=overrides,
        )
        self.watch_parameters(self._on_parameters)
        self.start_diagnostics("segmentation", "synchronised image pair")
        self.worker.start()
        self.get_logger().info(
            f"segmenting {', '.join(values['camera_topics'])} with mode={values['mode']} p={values['p']} "
            f"num_samples={values['num_samples']}"
        )

    def _compile_kernel(self) -> None:
        """The compiled CPU aggregation kernel, compiled (first start: ~20 s) or loaded from its
        disk cache (well under a second) in the background: frames meanwhile use the torch
        kernel (the same definitions), so the node segments from its first pair."""
        from latent_maskrcnn.aggregation import confidence_kernel
        from latent_maskrcnn.aggregation.confidence_masks import warm_up_compiled_kernel

        logger = self.get_logger()

        def done(seconds: float, error: BaseException | None) -> None:
            if error is None:
                logger.info(
                    f"compiled aggregation kernel ready after {seconds:.1f} s "
                    f"(cache: {confidence_kernel.CACHE_PATH or 'none writable, compiled each start'})"
                )
            else:
                logger.error(f"compiled aggregation kernel unavailable, the torch kernel stays: {error}")

        confidence_kernel.compile_in_background(warm_up_compiled_kernel, done)

    def _on_pair(self, *images: Image) -> None:
        # runs under the synchroniser's lock: only hand the pair over
        self.worker.submit(*images)

    def _on_parameters(self, changes: dict) -> Any:
        decision = self.core.on_parameters(changes)
        if decision.accepted and decision.changed:
            self.get_logger().info(f"parameters applied: {decision.changed}")
        if decision.refresh:
            self.worker.request_refresh()
        return decision

    def _publish(self, output: FrameOutput) -> None:
        for camera, message in output.mask_arrays:
            self._mask_publishers[camera].publish(message)
        for camera, message in output.overlays:
            self._overlay_publishers[camera].publish(message)

    def _report_drop(self, outcome: Outcome) -> None:
        if outcome.drop_reason == DROP_ERROR:
            self.get_logger().error(
                f"frame dropped, processing failed: {outcome.detail}", throttle_duration_sec=WARNING_PERIOD_S
            )
        else:
            self.get_logger().warning(
                f"frame dropped ({outcome.drop_reason}): {outcome.detail}", throttle_duration_sec=WARNING_PERIOD_S
            )

    def destroy_node(self) -> None:
        # Wait for a frame in progress only so long: shutdown must finish within seconds; the
        # worker is a daemon thread and whatever it publishes late is a counted, logged drop.
        self.worker.stop(timeout=SHUTDOWN_WAIT_S)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    passive_openmp_waits()  # before torch is imported (by the model load)
    import_model_code_in_background()
    return run_node(SegmentationNode, args)


def import_model_code_in_background() -> threading.Thread:
    """Import torch, torchvision and the model code (most of the start: about 2.3 s of 3.2 s on
    a quiet 2-core CPU) on a daemon thread while rclpy starts, creates the node and declares its
    parameters; the model load then finds them imported (or waits for the import lock)."""

    def run() -> None:
        try:
            import latent_maskrcnn.model.checkpoint  # noqa: F401
        except Exception:  # reported by the model load itself, with the checkpoint's path
            pass

    thread = threading.Thread(target=run, name="import_model_code", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    sys.exit(main())
