"""The batched K-code decoder is the model itself, not an approximation: each shared-computation
identity, and the whole sampler against a per-code loop that materialises F' = W_f F + b + W_z z.
Also: latent_dim = 0 is torchvision's MaskRCNN."""
import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from latent_maskrcnn.model.batched_decoding import constant_map_conv, pool_for_codes, rpn_head_for_codes
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LEVEL_NAMES, LatentMaskRCNN
from latent_maskrcnn.model.postprocess import mirror_prediction
from latent_maskrcnn.model.roi_align_gather import expand_boxes


def make_images(dtype=torch.float32, sizes=((64, 80), (50, 70))):
    generator = torch.Generator().manual_seed(1)
    return [torch.rand((3, h, w), generator=generator).to(dtype) for h, w in sizes]


@pytest.mark.parametrize("height, width", [(1, 1), (1, 5), (2, 2), (2, 7), (3, 3), (4, 9), (7, 5)])
def test_constant_map_conv_matches_full_convolution(height, width):
    generator = torch.Generator().manual_seed(height * 10 + width)
    conv = torch.nn.Conv2d(6, 4, 3, padding=1)
    values = torch.randn(3, 6, generator=generator)
    full = F.conv2d(values[:, :, None, None].expand(-1, -1, height, width), conv.weight, None, padding=1)
    torch.testing.assert_close(constant_map_conv(conv, values, height, width), full)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LatentMaskRCNN(tiny_config()).eval()


def materialised(shared, biases, image, code):
    return OrderedDict((name, x[image:image + 1] + b[image, code][None, :, None, None]) for (name, x), b in
                       zip(shared.items(), biases))


def test_rpn_head_runs_the_3x3_conv_once_and_stays_exact(model):
    images = make_images()
    image_list, _, features = model.preprocess(images)
    codes = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        shared = model.injection.shared(features)
        biases = model.injection.code_bias(codes)
        objectness, deltas = rpn_head_for_codes(model.rpn, list(shared.values()), biases)
        for image in range(2):
            for code in range(3):
                logits, regression = model.rpn.head(list(materialised(shared, biases, image, code).values()))
                for level in range(len(LEVEL_NAMES)):
                    torch.testing.assert_close(objectness[level][image * 3 + code], logits[level][0], atol=1e-5, rtol=1e-5)
                    torch.testing.assert_close(deltas[level][image * 3 + code], regression[level][0], atol=1e-5, rtol=1e-5)


def test_roi_pooling_of_shared_maps_plus_bias_is_exact_even_outside_the_map(model):
    images = make_images()
    image_list, _, features = model.preprocess(images)
    codes = torch.randn(2, 2, 16, generator=torch.Generator().manual_seed(3))
    # Boxes of every size (so every FPN level is used), some reaching past the image and the
    # padded feature map, where RoIAlign's sampling points fall outside and count as zero.
    boxes = [
        torch.tensor([[0.0, 0.0, 10.0, 12.0], [5.0, 5.0, 70.0, 60.0], [60.0, 40.0, 110.0, 90.0]]),
        torch.tensor([[-20.0, -15.0, 30.0, 20.0], [1.0, 2.0, 3.0, 4.0]]),
        torch.tensor([[10.0, 10.0, 60.0, 50.0]]),
        torch.zeros((0, 4)),
    ]
    with torch.no_grad():
        shared = model.injection.shared(features)
        biases = model.injection.code_bias(codes)
        level_biases = OrderedDict(zip(LEVEL_NAMES, biases))
        for pooler in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
            pooled = pool_for_codes(pooler, shared, level_biases, boxes, image_list.image_sizes, 2)
            expected = []
            for index, box in enumerate(boxes):
                image, code = divmod(index, 2)
                injected = materialised(shared, biases, image, code)
                expected.append(pooler(injected, [box], [image_list.image_sizes[image]]))
            torch.testing.assert_close(pooled, torch.cat(expected), atol=1e-5, rtol=1e-5)


def assert_predictions_equal(fast, reference, atol, mask_pixels_differing=0.0):
    assert len(fast) == len(reference)
    for fast_image, reference_image in zip(fast, reference):
        assert len(fast_image) == len(reference_image)
        for a, b in zip(fast_image, reference_image):
            assert a["boxes"].shape == b["boxes"].shape
            torch.testing.assert_close(a["boxes"], b["boxes"], atol=atol, rtol=0)
            torch.testing.assert_close(a["scores"], b["scores"], atol=atol, rtol=0)
            assert torch.equal(a["labels"], b["labels"])
            # float32 rounding may move a pixel whose probability is within ~1e-5 of 0.5
            if a["masks"].numel():
                assert (a["masks"] != b["masks"]).float().mean() <= mask_pixels_differing


@pytest.mark.parametrize("injection", ["bias", "film", "roi"])
def test_batched_sampler_equals_per_code_loop_with_materialised_maps(injection):
    """In float64 so that float rounding cannot reorder near-tied proposals. The FiLM scales
    start at zero; here they get random weights, so that they matter."""
    torch.manual_seed(5)
    model = LatentMaskRCNN(tiny_config(num_classes=3, latent_injection=injection)).double().eval()
    with torch.no_grad():
        if injection == "film":
            for linear in model.injection.code_scale_proj.values():
                linear.weight.normal_(0.0, 0.3)
        if injection == "roi":
            model.roi_heads.box_head.code_scale.weight.normal_(0.0, 0.3)
            model.roi_heads.box_head.code_bias.weight.normal_(0.0, 0.3)
    images = make_images(torch.float64)
    image_list, _, features = model.preprocess(images)
    with torch.no_grad():
        codes = model.prior_distribution(image_list, features).sample_codes(4, torch.Generator().manual_seed(9))
        fast = model._to_predictions(model._decode_codes(image_list, features, codes), image_list, images, 4)
    reference = model.decode_reference(images, codes)
    assert sum(len(p["boxes"]) for per_image in fast for p in per_image) > 20
    assert_predictions_equal(fast, reference, atol=1e-9)


def test_sample_uses_the_batched_decoder_on_prior_codes(model):
    """`sample` decodes exactly the codes N(mean, std) drawn from the seeded generator."""
    images = make_images()
    samples = model.sample(images, num_samples=2, seed=4)
    image_list, _, features = model.preprocess(images)
    with torch.no_grad():
        codes = model.prior_distribution(image_list, features).sample_codes(2, torch.Generator().manual_seed(4))
    reference = model.decode_reference(images, codes)
    assert_predictions_equal(samples, reference, atol=1e-4, mask_pixels_differing=1e-3)


def test_flip_decodes_the_first_codes_again_on_the_mirror_image_and_maps_them_back(model):
    """K = 3 with flip: codes 1-2 on the image, code 1 again on the mirror image, mirrored back;
    all three codes drawn from the image's own prior, as without flip."""
    images = make_images()
    samples = model.sample(images, num_samples=3, seed=4, flip=True)
    image_list, _, features = model.preprocess(images)
    with torch.no_grad():
        codes = model.prior_distribution(image_list, features).sample_codes(2, torch.Generator().manual_seed(4))
    own = model.decode_reference(images, codes)
    mirrored = model.decode_reference([image.flip(-1) for image in images], codes[:, :1])
    expected = [own[i] + [mirror_prediction(mirrored[i][0], images[i].shape[-1])] for i in range(len(images))]
    assert sum(len(p["boxes"]) for p in samples[1]) > 0
    assert_predictions_equal(samples, expected, atol=1e-4, mask_pixels_differing=1e-3)
    back = mirror_prediction(mirror_prediction(samples[0][2], 80), 80)
    assert torch.equal(back["masks"], samples[0][2]["masks"]) and torch.equal(back["boxes"], samples[0][2]["boxes"])


def test_flip_leaves_the_prior_mean_and_a_single_sample_alone(model):
    images = make_images()
    assert_predictions_equal(model.sample(images, mode="prior_mean", flip=True), model.sample(images, mode="prior_mean"), atol=0)
    assert_predictions_equal(model.sample(images, num_samples=1, seed=2, flip=True),
                             model.sample(images, num_samples=1, seed=2), atol=0)
    with pytest.raises(ValueError, match="flip must be true or false"):
        model.sample(images, flip="yes")


def test_film_starts_as_the_plain_injection_and_its_scale_changes_the_samples():
    torch.manual_seed(3)
    plain = LatentMaskRCNN(tiny_config()).eval()
    film = LatentMaskRCNN(tiny_config(latent_injection="film")).eval()
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and all(name.startswith("injection.code_scale_proj.") for name in missing) and missing
    converted = plain.with_film_injection()
    assert converted.config.latent_injection == "film" and plain.config.latent_injection == "bias"
    assert torch.equal(converted.injection.code_proj["0"].weight, plain.injection.code_proj["0"].weight)
    with pytest.raises(ValueError, match="plain \\(bias\\) injection"):
        converted.with_film_injection()
    images = make_images()
    # equal up to float rounding: the scaled RPN convolution runs as one wider convolution
    assert_predictions_equal(film.sample(images, num_samples=2, seed=1), plain.sample(images, num_samples=2, seed=1),
                             atol=1e-4, mask_pixels_differing=1e-3)
    with torch.no_grad():
        film.injection.code_scale_proj["0"].weight.fill_(0.5)
    changed = film.sample(images, num_samples=2, seed=1)
    assert any(not torch.equal(a["scores"], b["scores"]) for a, b in zip(changed[0], plain.sample(images, num_samples=2, seed=1)[0]))


def torchvision_twin(model):
    """torchvision's own MaskRCNN with the same architecture and the same weights."""
    config = model.config
    twin = MaskRCNN(
        copy.deepcopy(model.backbone),
        num_classes=None,
        min_size=config.min_size,
        max_size=config.max_size,
        rpn_anchor_generator=AnchorGenerator(tuple((s,) for s in config.anchor_sizes), ((0.5, 1.0, 2.0),) * 5),
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        box_score_thresh=config.box_score_thresh,
        box_detections_per_img=config.box_detections_per_img,
        box_head=TwoMLPHead(config.fpn_channels * 49, config.box_head_dim),
        box_predictor=FastRCNNPredictor(config.box_head_dim, config.num_classes),
        mask_head=MaskRCNNHeads(config.fpn_channels, [config.mask_head_channels] * 4, 1),
        mask_predictor=MaskRCNNPredictor(config.mask_head_channels, config.mask_head_channels, config.num_classes),
    )
    twin.load_state_dict(model.state_dict(), strict=True)
    return twin.eval()


def test_latent_dim_zero_is_plain_maskrcnn():
    torch.manual_seed(6)
    model = LatentMaskRCNN(tiny_config(latent_dim=0)).eval()
    assert model.prior is None and model.encoder is None and model.injection is None
    images = make_images()
    ours = model.sample(images, num_samples=8, seed=0)
    assert [len(per_image) for per_image in ours] == [1, 1]
    with torch.no_grad():
        theirs = torchvision_twin(model)(images)
    # the same function; RoIAlign sums its samples in another order (roi_align_gather.py)
    for mine, reference in zip(ours, theirs):
        prediction = mine[0]
        assert len(prediction["boxes"]) > 0
        torch.testing.assert_close(prediction["boxes"], reference["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(prediction["scores"], reference["scores"], atol=1e-5, rtol=0)
        assert torch.equal(prediction["labels"], reference["labels"])
        assert (prediction["masks"] != (reference["masks"][:, 0] >= 0.5)).float().mean() <= 1e-3


def test_latent_dim_zero_trains_with_a_zero_kl_term():
    torch.manual_seed(7)
    model = LatentMaskRCNN(tiny_config(latent_dim=0)).train()
    images = make_images()
    targets = [
        {"boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0]]), "labels": torch.tensor([1]),
         "masks": torch.ones((1, image.shape[1], image.shape[2]), dtype=torch.uint8)}
        for image in images
    ]
    losses = model(images, targets)
    assert float(losses["loss_kl"]) == 0.0
    sum(losses.values()).backward()
    assert model.rpn.head.conv[0][0].weight.grad.abs().sum() > 0


def test_mask_predictor_as_one_matrix_product_equals_torchvision(model):
    from latent_maskrcnn.model.batched_decoding import mask_probs_for_labels
    from torchvision.models.detection.roi_heads import maskrcnn_inference

    torch.manual_seed(8)
    predictor = MaskRCNNPredictor(16, 16, 5)
    torch.nn.init.normal_(predictor.conv5_mask.bias)
    features = torch.randn(7, 16, 14, 14)
    labels = torch.tensor([0, 1, 4, 2, 3, 1, 4])
    with torch.no_grad():
        expected = maskrcnn_inference(predictor(features), [labels])[0]
        nhwc = features.permute(0, 2, 3, 1).contiguous()
        torch.testing.assert_close(mask_probs_for_labels(predictor, nhwc, labels), expected)


def test_code_at_the_box_head_leaves_proposals_alone_and_changes_the_detections():
    """``latent_injection = "roi"``: the RPN sees the plain maps (one proposal set per image,
    whatever the code); the code changes the box head's answers."""
    torch.manual_seed(6)
    model = LatentMaskRCNN(tiny_config(latent_injection="roi")).eval()
    assert model.injection is None
    with torch.no_grad():
        model.roi_heads.box_head.code_scale.weight.normal_(0.0, 0.5)
    images = make_images()
    codes = torch.randn(len(images), 3, model.latent_dim)
    decoded = model.decode(images, codes)
    assert model.last_proposal_counts[0] == model.last_proposal_counts[1] == model.last_proposal_counts[2]
    for per_image in decoded:
        assert not torch.equal(per_image[0]["scores"], per_image[1]["scores"])
    assert_predictions_equal(decoded, model.decode_reference(images, codes), atol=1e-4, mask_pixels_differing=1e-3)


def test_box_context_pools_a_wider_window_in_training_and_in_batched_decoding():
    """``box_context``: the box head reads a window around each proposal; the batched decoder
    pools the same windows as torchvision's RoIHeads through the pooler."""
    torch.manual_seed(8)
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert expand_boxes(boxes, 1.5).tolist() == [[5.0, 10.0, 35.0, 70.0]] and expand_boxes(boxes, 1.0) is boxes
    model = LatentMaskRCNN(tiny_config(latent_injection="roi", box_context=1.8)).eval()
    with torch.no_grad():
        model.roi_heads.box_head.code_scale.weight.normal_(0.0, 0.5)
    images = make_images()
    codes = torch.randn(len(images), 2, model.latent_dim)
    assert_predictions_equal(model.decode(images, codes), model.decode_reference(images, codes), atol=1e-4,
                             mask_pixels_differing=1e-3)
    narrow = LatentMaskRCNN(tiny_config(latent_injection="roi")).eval()
    narrow.load_state_dict(model.state_dict())
    assert not torch.equal(narrow.decode(images, codes)[0][0]["scores"], model.decode(images, codes)[0][0]["scores"])
    with pytest.raises(ValueError, match="box_context needs latent_injection"):
        tiny_config(latent_injection="bias", box_context=1.5)
    assert LatentMaskRCNN(tiny_config(latent_dim=0, box_context=1.5)).roi_heads.box_roi_pool.context == 1.5


def test_decode_refuses_codes_of_the_wrong_shape(model):
    images = make_images()
    with pytest.raises(ValueError, match="codes must be"):
        model.decode(images, torch.zeros(len(images), 2, model.latent_dim + 1))
