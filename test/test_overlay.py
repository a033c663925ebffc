"""Overlay images: masks tinted and outlined, best mask on top, cups drawn, bad input refused."""
import numpy as np
import pytest

from latent_segmentation_ros.core.overlay import PALETTE, render_overlay
from latent_segmentation_ros.core.results import CameraResult, GraspCandidate


def result_with(masks, scores):
    masks = np.asarray(masks, dtype=bool)
    return CameraResult(
        camera="c",
        masks=masks,
        scores=np.asarray(scores, np.float32),
        labels=np.ones(len(masks), np.int64),
        boxes=np.zeros((len(masks), 4), np.float32),
        support_counts=np.ones(len(masks), np.int64),
        mode="confidence_mask",
        p=0.9,
        num_samples=8,
    )


def test_masks_are_tinted_outlined_and_the_rest_untouched():
    image = np.full((20, 30, 3), 100, np.uint8)
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:12, 2:12] = True
    masks[1, 8:18, 8:25] = True  # overlaps the first
    out = render_overlay(image, result_with(masks, [0.9, 0.5]), alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == image.shape
    outside = ~masks.any(axis=0)
    np.testing.assert_array_equal(out[outside], image[outside])
    np.testing.assert_array_equal(out[6, 6], np.rint(0.5 * 100 + 0.5 * PALETTE[0]).astype(np.uint8))
    np.testing.assert_array_equal(out[10, 10], np.rint(0.5 * 100 + 0.5 * PALETTE[0]).astype(np.uint8))  # best on top
    np.testing.assert_array_equal(out[14, 20], np.rint(0.5 * 100 + 0.5 * PALETTE[1]).astype(np.uint8))
    np.testing.assert_array_equal(out[2, 5], PALETTE[0])  # outline in full colour
    np.testing.assert_array_equal(out[17, 20], PALETTE[1])


def test_no_masks_gives_the_image():
    image = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(render_overlay(image, result_with(np.zeros((0, 8, 9)), [])), image)


def test_cups_are_drawn():
    image = np.zeros((40, 40, 3), np.uint8)
    grasp = GraspCandidate(0, 20.0, 20.0, 0.0, 1, 2, 0.9, np.array([[10.0, 20.0], [30.0, 20.0]]), np.array([True, False]))
    out = render_overlay(image, result_with(np.zeros((0, 40, 40)), []), grasps=[grasp], cup_radius=4.0)
    np.testing.assert_array_equal(out[20, 10], [255, 255, 255])  # sealed cup filled
    np.testing.assert_array_equal(out[20, 30], [0, 0, 0])  # idle cup only outlined
    with pytest.raises(ValueError, match="cup_radius"):
        render_overlay(image, result_with(np.zeros((0, 40, 40)), []), grasps=[grasp])


def test_bad_input_is_refused():
    result = result_with(np.zeros((1, 8, 8)), [0.5])
    with pytest.raises(ValueError, match="uint8"):
        render_overlay(np.zeros((8, 8, 3), np.float32), result)
    with pytest.raises(ValueError, match="masks are"):
        render_overlay(np.zeros((8, 9, 3), np.uint8), result)
    with pytest.raises(ValueError, match="alpha"):
        render_overlay(np.zeros((8, 8, 3), np.uint8), result, alpha=2.0)
