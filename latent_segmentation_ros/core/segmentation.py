"""Everything the segmentation node does, without ROS: Image messages in, message objects out.

The rclpy node only wires topics, parameters and diagnostics to this class. A bad input never
raises out of :meth:`SegmentationCore.handle`: it is a counted drop with a reason the node logs
(throttled), so the node never dies on a bad message.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from latent_segmentation_ros.core.heap import HeapTrimmer
from latent_segmentation_ros.core.image_conversion import ImageTooLarge, message_to_rgb
from latent_segmentation_ros.core.messages import MessageFactory, build_confidence_mask_array, numpy_to_image_message
from latent_segmentation_ros.core.node_support import (
    DROP_ERROR,
    DROP_IMAGE,
    DROP_SIZE,
    DROP_STAMPS,
    DROP_TOO_LARGE,
    NodeStats,
    Work,
)
from latent_segmentation_ros.core.overlay import render_overlay
from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS, ParameterSet
from latent_segmentation_ros.core.pipeline import PerceptionPipeline
from latent_segmentation_ros.core.results import CameraResult

# The smallest image side the model accepts (LatentMaskRCNN refuses smaller images): a smaller
# camera image is a bad image, not a failure of the processing.
MIN_IMAGE_SIDE = 2
PIPELINE_SETTINGS = ("p", "mask_threshold", "num_samples", "flip_samples", "mode", "score_threshold", "min_mask_area", "seed")
# a change of these re-publishes the last frame at once
REFRESHING = frozenset(PIPELINE_SETTINGS) | {"publish_overlay"}


@dataclass
class FrameOutput:
    """What to publish for one frame: per camera its mask array and (if enabled) overlay."""

    mask_arrays: list[tuple[str, Any]]
    overlays: list[tuple[str, Any]]
    results: list[CameraResult]
    refreshed: bool = False


@dataclass
class Outcome:
    """The result of one work item: an output to publish (a FrameOutput, or the grasp node's
    message), or the reason it was dropped."""

    output: Any = None
    drop_reason: str = ""
    detail: str = ""


@dataclass
class ParameterDecision:
    accepted: bool
    reason: str = ""
    refresh: bool = False
    changed: dict = field(default_factory=dict)


class SegmentationCore:
    """Pairs of Image-like messages -> ConfidenceMaskArray (+ overlay) objects per camera."""

    def __init__(
        self,
        pipeline: PerceptionPipeline,
        factory: MessageFactory,
        parameters: ParameterSet | None = None,
        stats: NodeStats | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.pipeline = pipeline
        self.factory = factory
        self.parameters = parameters or ParameterSet(SEGMENTATION_PARAMETERS)
        self.stats = stats or NodeStats()
        self._clock = clock
        self._last_headers: list[Any] | None = None
        self._last_images: list[np.ndarray] | None = None
        # A node runs for days: release glibc's free heap pages every few dozen pairs, as the
        # replay does (see heap.py for why the resident memory would creep up otherwise).
        self.heap = HeapTrimmer()
        self.pipeline.update_settings(**{name: self.parameters[name] for name in PIPELINE_SETTINGS})

    @property
    def cameras(self) -> list[str]:
        return list(self.parameters["camera_names"])

    # ------------------------------------------------------------------ parameters
    def on_parameters(self, changes: Mapping[str, Any]) -> ParameterDecision:
        """Validate a parameter change as a whole; apply it when valid (the node's callback)."""
        reasons = self.parameters.validate(changes)
        if reasons:
            return ParameterDecision(False, "; ".join(reasons))
        changed = self.parameters.apply(changes)
        settings = {name: value for name, value in changed.items() if name in PIPELINE_SETTINGS}
        if settings:
            self.pipeline.update_settings(**settings)
        refresh = bool(REFRESHING & set(changed)) and self.pipeline.has_frame
        return ParameterDecision(True, "", refresh, changed)

    # ------------------------------------------------------------------ frames
    def handle(self, work: Work) -> Outcome:
        """Process one work item from the LatestPairSlot; never raises."""
        try:
            if work.kind == "refresh":
                return self._refresh()
            return self._pair(work.messages)
        except Exception as error:  # the node must survive anything a frame can cause
            detail = f"{type(error).__name__}: {error}"
            self.stats.drop(DROP_ERROR, detail)
            return Outcome(drop_reason=DROP_ERROR, detail=detail)

    def _drop(self, reason: str, detail: str) -> Outcome:
        self.stats.drop(reason, detail)
        return Outcome(drop_reason=reason, detail=detail)

    def _pair(self, messages: Sequence[Any]) -> Outcome:
        start = self._clock()
        cameras = self.cameras
        if len(messages) != len(cameras):
            return self._drop(DROP_ERROR, f"{len(messages)} images for {len(cameras)} cameras")
        stamps = [stamp_seconds(message.header) for message in messages]
        spread = max(stamps) - min(stamps)
        if spread > self.parameters["sync_slop"]:
            return self._drop(
                DROP_STAMPS, f"stamps {spread:.3f} s apart, more than sync_slop {self.parameters['sync_slop']:g} s"
            )
        images = []
        for camera, message in zip(cameras, messages):
            try:
                images.append(
                    message_to_rgb(message, self.parameters["generic_color_order"], self.parameters["max_image_pixels"])
                )
            except ImageTooLarge as error:
                return self._drop(DROP_TOO_LARGE, f"{camera}: {error}")
            except ValueError as error:
                return self._drop(DROP_IMAGE, f"{camera}: {error}")
            if min(images[-1].shape[:2]) < MIN_IMAGE_SIDE:
                height, width = images[-1].shape[:2]
                return self._drop(
                    DROP_IMAGE, f"{camera}: a {width}x{height} image is smaller than the model's {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels"
                )
        sizes = {camera: image.shape[:2] for camera, image in zip(cameras, images)}
        if len(set(sizes.values())) > 1:
            listing = ", ".join(f"{c} {w}x{h}" for c, (h, w) in sizes.items())
            return self._drop(DROP_SIZE, f"the cameras' images differ in size (width x height): {listing}")
        results = self.pipeline.process(images, cameras)
        headers = [message.header for message in messages]
        self._last_headers, self._last_images = headers, images
        output = self._build(results, headers, images, refreshed=False)
        self.stats.frame_done((self._clock() - start) * 1000.0)
        self.heap.tick()
        return Outcome(output=output)

    def _refresh(self) -> Outcome:
        if self._last_headers is None:
            return Outcome()
        results = self.pipeline.refresh()
        if results is None:
            return Outcome()
        output = self._build(results, self._last_headers, self._last_images, refreshed=True)
        self.stats.refresh_done()
        return Outcome(output=output)

    def _build(
        self, results: list[CameraResult], headers: list[Any], images: list[np.ndarray], refreshed: bool
    ) -> FrameOutput:
        arrays = [
            (result.camera, build_confidence_mask_array(result, header, self.factory))
            for result, header in zip(results, headers)
        ]
        overlays = []
        if self.parameters["publish_overlay"]:
            for result, header, image in zip(results, headers, images):
                pixels = render_overlay(image, result)
                overlays.append((result.camera, numpy_to_image_message(pixels, "rgb8", header, self.factory)))
        return FrameOutput(arrays, overlays, results, refreshed)


def stamp_seconds(header: Any) -> float:
    """A header's stamp in seconds (rclpy or rosbags headers)."""
    return int(header.stamp.sec) + int(header.stamp.nanosec) * 1e-9


class FrameWorker:
    """The worker thread that owns the model: takes the newest pair, processes, publishes.

    ``submit`` is what the synchroniser callback calls: it only stores the pair (replacing and
    counting an older one), so the callback returns at once. ``publish`` receives each
    FrameOutput; ``report_drop`` each dropped Outcome (the node logs it, throttled).
    """

    def __init__(
        self,
        core: SegmentationCore,
        publish: Callable[[FrameOutput], None],
        report_drop: Callable[[Outcome], None],
        poll_s: float = 0.2,
    ) -> None:
        from latent_segmentation_ros.core.node_support import LatestPairSlot

        self.core = core
        self.slot = LatestPairSlot()
        self._publish = publish
        self._report_drop = report_drop
        self._poll_s = poll_s
        self._thread: Any = None

    def submit(self, *messages: Any) -> None:
        from latent_segmentation_ros.core.node_support import DROP_BUSY

        self.core.stats.input_arrived()
        if self.slot.put(messages):
            self.core.stats.drop(DROP_BUSY)

    def request_refresh(self) -> None:
        self.slot.request_refresh()

    def run_once(self, timeout: float | None = None) -> Outcome | None:
        """Serve one work item (None when there was none within ``timeout``)."""
        work = self.slot.take(timeout)
        if work is None:
            return None
        outcome = self.core.handle(work)
        if outcome.output is not None:
            try:
                self._publish(outcome.output)
            except Exception as error:  # a failing publish must not stop the worker
                detail = f"publishing failed: {type(error).__name__}: {error}"
                self.core.stats.drop(DROP_ERROR, detail)
                outcome = Outcome(drop_reason=DROP_ERROR, detail=detail)
        if outcome.drop_reason:
            self._report_drop(outcome)
        return outcome

    def _loop(self) -> None:
        while not self.slot.closed:
            self.run_once(self._poll_s)

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=self._loop, name="segmentation_worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.slot.close()
        if self._thread is not None:
            self._thread.join(timeout)
