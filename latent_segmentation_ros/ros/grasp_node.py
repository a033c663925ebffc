"""The suction grasp node (rclpy wiring only; the behaviour is GraspCore's).

Subscribes to each camera's ConfidenceMaskArray topic, plans suction grasps on every array and
publishes a GraspCandidateArray per array on ``grasp_candidates`` (``/grasp_candidates`` without
a namespace). Cup geometry and ranking parameters change live.
"""
from __future__ import annotations

import sys
from typing import Any

from rclpy.qos import QoSProfile
from rclpy.qos_overriding_options import QoSOverridingOptions

from latent_segmentation_ros.core.grasping import GraspCore
from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS
from latent_segmentation_ros.msg import ConfidenceMaskArray, GraspCandidateArray
from latent_segmentation_ros.ros.base_node import ParameterizedNode, rclpy_factory, run_node

NODE_NAME = "suction_grasp_planner"
OUTPUT_TOPIC = "grasp_candidates"
WARNING_PERIOD_S = 5.0


class GraspNode(ParameterizedNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, GRASP_PARAMETERS, **kwargs)
        self.core = GraspCore(rclpy_factory(), self.parameter_set, self.stats)
        overrides = QoSOverridingOptions.with_default_policies()
        self._grasp_publisher = self.create_publisher(
            GraspCandidateArray, OUTPUT_TOPIC, QoSProfile(depth=10), qos_overriding_options=overrides
        )
        self._mask_subscriptions = [
            self.create_subscription(
                ConfidenceMaskArray, topic, self._on_masks, QoSProfile(depth=10), qos_overriding_options=overrides
            )
            for topic in self.parameter_set["confidence_mask_topics"]
        ]
        self.watch_parameters(self.core.on_parameters)
        self.start_diagnostics("grasp planning", "confidence mask array")
        self.get_logger().info(
            f"planning grasps on {', '.join(self.parameter_set['confidence_mask_topics'])}, "
            f"publishing on {self._grasp_publisher.topic_name}"
        )

    def _on_masks(self, message: ConfidenceMaskArray) -> None:
        # published inside handle, so the latency in /diagnostics runs from arrival to publication
        outcome = self.core.handle(message, publish=self._grasp_publisher.publish)
        if outcome.output is None:
            self.get_logger().warning(
                f"mask array dropped ({outcome.drop_reason}): {outcome.detail}", throttle_duration_sec=WARNING_PERIOD_S
            )


def main(args: list[str] | None = None) -> int:
    return run_node(GraspNode, args)


if __name__ == "__main__":
    sys.exit(main())
