"""Latent-MaskRCNN: config, training losses and gradients, sampling outputs and their
reproducibility, and the latent code really changing proposals and masks."""
import pytest
import torch

from latent_maskrcnn.model.config import ModelConfig, tiny_config
from latent_maskrcnn.model.distributions import DiagonalGaussian, kl_divergence
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN


def make_images(seed=0, sizes=((64, 80), (56, 72))):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand((3, h, w), generator=generator) for h, w in sizes]


def make_targets(images):
    targets = []
    for index, image in enumerate(images):
        _, height, width = image.shape
        if index == 1:  # an image without instances
            targets.append(
                {
                    "boxes": torch.zeros((0, 4)),
                    "labels": torch.zeros((0,), dtype=torch.int64),
                    "masks": torch.zeros((0, height, width), dtype=torch.uint8),
                }
            )
            continue
        masks = torch.zeros((2, height, width), dtype=torch.bool)
        masks[0, 4:30, 6:40] = True
        masks[1, 28:60, 36:76] = True
        targets.append(
            {
                "boxes": torch.tensor([[6.0, 4.0, 40.0, 30.0], [36.0, 28.0, 76.0, 60.0]]),
                "labels": torch.tensor([1, 1]),
                "masks": masks,
            }
        )
    return targets


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LatentMaskRCNN(tiny_config()).eval()


# ---------------------------------------------------------------- config


def test_config_round_trip_and_unknown_keys():
    config = tiny_config(num_classes=3, class_names=["__background__", "bag", "box"])
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown ModelConfig keys: \\['bogus', 'colour'\\]"):
        ModelConfig.from_dict({**config.to_dict(), "bogus": 1, "colour": "red"})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": "vgg"}, "backbone 'vgg'"),
        ({"num_classes": 3, "class_names": ["__background__", "bag"]}, "class_names has 2 names but num_classes is 3"),
        ({"class_names": ["bg", "item"]}, "class_names\\[0\\] must be '__background__'"),
        ({"latent_dim": -1}, "latent_dim"),
        ({"min_size": 100, "max_size": 80}, "min_size <= max_size"),
        ({"box_fg_iou_thresh": 0.5, "box_bg_iou_thresh": 0.6}, "box_bg_iou_thresh \\(0.6\\) must not exceed"),
        ({"box_fg_iou_thresh": 1.5}, "box_fg_iou_thresh must be in"),
        ({"latent_injection": "concat"}, "latent_injection 'concat' is not one of"),
    ],
)
def test_config_refuses_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_default_config_is_the_papers_model():
    config = ModelConfig()
    assert (config.backbone, config.latent_dim, config.num_classes) == ("resnet50_fpn", 64, 2)
    assert config.class_names == ["__background__", "class_1"]


def test_box_iou_thresholds_decide_a_merged_proposal_over_two_halves():
    """A pair labelled as two items: the box over both halves meets each half at IoU 0.5. At
    torchvision's 0.5 / 0.5 it is a positive (matched to a half); at 0.6 / 0.6 a negative, so the
    labelling decides its target."""
    halves = torch.tensor([[0.0, 0.0, 20.0, 20.0], [20.0, 0.0, 40.0, 20.0]])
    merged = torch.tensor([[0.0, 0.0, 40.0, 20.0]])
    target = [{"boxes": halves, "labels": torch.tensor([1, 1])}]

    def label_of_merged(model):
        _, labels = model.roi_heads.assign_targets_to_proposals([merged], [halves], [target[0]["labels"]])
        return int(labels[0][0])

    model = LatentMaskRCNN(tiny_config())
    assert label_of_merged(model) == 1
    assert LatentMaskRCNN(tiny_config(box_fg_iou_thresh=0.6, box_bg_iou_thresh=0.6)).roi_heads.proposal_matcher.high_threshold == 0.6
    model.set_box_iou_thresholds(0.6, 0.6)
    assert label_of_merged(model) == 0
    assert (model.config.box_fg_iou_thresh, model.config.box_bg_iou_thresh) == (0.6, 0.6)
    with pytest.raises(ValueError, match="must not exceed"):
        model.set_box_iou_thresholds(0.5, 0.7)


# ---------------------------------------------------------------- KL


def test_kl_matches_closed_form_on_known_gaussians():
    q = DiagonalGaussian(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.log(torch.tensor([[1.0, 4.0], [1.0, 1.0]])))
    p = DiagonalGaussian(torch.zeros(2, 2), torch.zeros(2, 2))
    # dim 0: 0.5 * (1 + 1 - 1 - 0) = 0.5; dim 1: 0.5 * (4 + 0 - 1 - ln 4)
    expected = torch.tensor([0.5 + 0.5 * (3.0 - torch.log(torch.tensor(4.0)).item()), 0.0])
    torch.testing.assert_close(kl_divergence(q, p), expected)


def test_kl_agrees_with_torch_distributions():
    generator = torch.Generator().manual_seed(3)
    q = DiagonalGaussian(torch.randn(4, 8, generator=generator), torch.randn(4, 8, generator=generator))
    p = DiagonalGaussian(torch.randn(4, 8, generator=generator), torch.randn(4, 8, generator=generator))
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(q.mean, q.std), torch.distributions.Normal(p.mean, p.std)
    ).sum(-1)
    torch.testing.assert_close(kl_divergence(q, p), reference)


# ---------------------------------------------------------------- training


def test_training_losses_and_gradients_reach_every_part():
    torch.manual_seed(1)
    model = LatentMaskRCNN(tiny_config()).train()
    images = make_images()
    losses = model(images, make_targets(images))
    expected = {"loss_kl", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    assert set(losses) == expected
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    assert losses["loss_kl"] > 0
    sum(losses.values()).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name in [
        "encoder.head.weight",
        "encoder.cnn.0.0.weight",
        "encoder.graph.0.self_attn.in_proj_weight",
        "prior.mlp.2.weight",
        "prior.towers.0.0.weight",
        "injection.code_proj.0.weight",
        "injection.feature_proj.0.weight",
        "rpn.head.conv.0.0.weight",
        "roi_heads.box_head.fc6.weight",
        "roi_heads.mask_head.0.0.weight",
        "backbone.fpn.inner_blocks.0.0.weight",
    ]:
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


def test_film_scale_learns_from_the_decoder_losses_from_zero():
    torch.manual_seed(1)
    model = LatentMaskRCNN(tiny_config(latent_injection="film")).train()
    assert all(torch.count_nonzero(l.weight) == 0 for l in model.injection.code_scale_proj.values())
    images = make_images()
    losses = model(images, make_targets(images))
    sum(value for name, value in losses.items() if name != "loss_kl").backward()
    for linear in model.injection.code_scale_proj.values():
        assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_code_at_the_box_head_trains_encoder_and_film_from_the_box_losses(pooling):
    """``latent_injection = "roi"``: the box classifier's loss alone reaches the FiLM weights
    (the scale starts at zero) and, through the code, the encoder."""
    torch.manual_seed(3)
    model = LatentMaskRCNN(tiny_config(latent_injection="roi", encoder_pooling=pooling)).train()
    head = model.roi_heads.box_head
    assert torch.count_nonzero(head.code_scale.weight) == 0
    images = make_images()
    losses = model(images, make_targets(images))
    losses["loss_classifier"].backward()
    assert head.code_scale.weight.grad.abs().sum() > 0 and head.code_bias.weight.grad.abs().sum() > 0
    assert model.encoder.head.weight.grad.abs().sum() > 0
    assert model.rpn.head.conv[0][0].weight.grad is None  # the RPN does not see the code


def test_attention_pooling_weights_the_instances_and_ignores_padding():
    torch.manual_seed(4)
    encoder = LatentMaskRCNN(tiny_config(encoder_pooling="attention")).encoder
    nodes = torch.randn(2, 3, encoder.empty_set.shape[0])
    padding = torch.tensor([[False, False, True], [False, True, True]])
    pooled = encoder._pool(nodes, padding)
    torch.testing.assert_close(pooled[1], nodes[1, 0])
    changed = nodes.clone()
    changed[0, 2] += 100.0  # a padded node changes nothing
    torch.testing.assert_close(encoder._pool(changed, padding), pooled)
    assert not torch.allclose(pooled[0], nodes[0, :2].mean(dim=0))


def test_decoder_losses_reach_the_encoder_through_the_code():
    """Without the KL term the encoder still learns: the code drives the decoder."""
    torch.manual_seed(2)
    model = LatentMaskRCNN(tiny_config()).train()
    images = make_images()
    losses = model(images, make_targets(images))
    (losses["loss_objectness"] + losses["loss_mask"]).backward()
    assert model.encoder.head.weight.grad.abs().sum() > 0


def test_prior_mean_coin_trains_the_prior_through_the_decoder():
    torch.manual_seed(4)
    model = LatentMaskRCNN(tiny_config()).train()
    images = make_images(sizes=((64, 80), (64, 80), (64, 80), (64, 80)))
    targets = make_targets(images)
    torch.manual_seed(5)  # with 4 images, the coin picks the prior mean for at least one
    losses = model(images, targets, posterior_or_prior_mean_coin=True)
    losses["loss_objectness"].backward()
    assert model.prior.mlp[2].weight.grad.abs().sum() > 0


def test_training_refuses_bad_targets():
    model = LatentMaskRCNN(tiny_config()).train()
    images = make_images()
    targets = make_targets(images)
    targets[0]["masks"] = targets[0]["masks"][:, :10]
    with pytest.raises(ValueError, match="target 0: masks must be \\[2, 64, 80\\]"):
        model(images, targets)
    targets = make_targets(images)
    targets[0]["labels"] = torch.tensor([1, 5])
    with pytest.raises(ValueError, match="labels must be in \\[1, 1\\]"):
        model(images, targets)
    targets = make_targets(images)
    targets[0]["boxes"][1] = torch.tensor([50.0, 30.0, 40.0, 60.0])
    with pytest.raises(ValueError, match="box 1 has no area"):
        model(images, targets)
    with pytest.raises(ValueError, match="one target dict per image"):
        model(images, None)


# ---------------------------------------------------------------- sampling


def check_prediction(prediction, height, width, num_classes=2):
    boxes, labels, scores, masks = (prediction[k] for k in ("boxes", "labels", "scores", "masks"))
    count = boxes.shape[0]
    assert boxes.dtype == torch.float32 and boxes.shape == (count, 4)
    assert labels.dtype == torch.int64 and labels.shape == (count,)
    assert scores.dtype == torch.float32 and scores.shape == (count,)
    assert masks.dtype == torch.bool and masks.shape == (count, height, width)
    if count:
        assert bool(((labels >= 1) & (labels < num_classes)).all())
        assert bool(((scores >= 0) & (scores <= 1)).all())
        assert bool((boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all() and (boxes >= 0).all())
    for tensor in prediction.values():
        assert not tensor.is_inference()  # callers may edit results in place


def test_sample_output_shapes_and_types(model):
    images = make_images(sizes=((64, 80), (96, 100)))  # the second is resized internally
    samples = model.sample(images, num_samples=3, seed=0)
    assert len(samples) == 2 and all(len(per_image) == 3 for per_image in samples)
    for image, per_image in zip(images, samples):
        for prediction in per_image:
            check_prediction(prediction, image.shape[1], image.shape[2])
    assert sum(len(p["boxes"]) for p in samples[0]) > 0
    means = model.sample(images, mode="prior_mean")
    assert [len(per_image) for per_image in means] == [1, 1]
    check_prediction(means[1][0], 96, 100)


def test_sample_leaves_training_mode_and_global_rng_alone():
    model = LatentMaskRCNN(tiny_config()).train()
    state = torch.get_rng_state()
    model.sample(make_images(), num_samples=2, seed=3)
    assert model.training
    assert torch.equal(state, torch.get_rng_state())


def test_seed_reproduces_samples_and_other_seeds_differ(model):
    images = make_images()
    first = model.sample(images, num_samples=3, seed=11)
    again = model.sample(images, num_samples=3, seed=11)
    other = model.sample(images, num_samples=3, seed=12)
    for a, b in zip(first[0] + first[1], again[0] + again[1]):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(a["boxes"], b["boxes"]) for a, b in zip(first[0], other[0]))


def test_prior_mean_is_deterministic(model):
    images = make_images()
    first = model.sample(images, mode="prior_mean")
    second = model.sample(images, mode="prior_mean", seed=5)
    for a, b in zip(first, second):
        for key in a[0]:
            assert torch.equal(a[0][key], b[0][key])


def test_different_codes_change_proposals_and_masks(model):
    images = make_images()[:1]
    image_list, _, features = model.preprocess(images)
    codes = torch.stack([torch.zeros(16), 3.0 * torch.ones(16)])[None]  # [1, 2, D]
    with torch.no_grad():
        shared = model.injection.shared(features)
        biases = model.injection.code_bias(codes)
        from latent_maskrcnn.model.batched_decoding import proposals_for_codes

        proposals = proposals_for_codes(model.rpn, image_list, shared, biases)
    assert proposals[0].shape == proposals[1].shape
    assert not torch.allclose(proposals[0], proposals[1])
    predictions = model.decode_reference(images, codes)[0]
    assert not torch.equal(predictions[0]["masks"], predictions[1]["masks"])


def test_sample_refuses_bad_input(model):
    images = make_images()
    with pytest.raises(ValueError, match="mode must be one of"):
        model.sample(images, mode="confidence_mask")
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        model.sample(images, num_samples=0)
    with pytest.raises(ValueError, match="image 0 must be a float tensor \\[3, H, W\\]"):
        model.sample([torch.rand(64, 80)])
    with pytest.raises(ValueError, match="floating point"):
        model.sample([torch.zeros((3, 64, 80), dtype=torch.uint8)])
    bad = torch.rand(3, 64, 80)
    bad[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="image 0 contains NaN"):
        model.sample([bad])
    with pytest.raises(ValueError, match="non-empty list"):
        model.sample([])


def test_eval_forward_returns_prior_mean_predictions(model):
    images = make_images()
    predictions = model(images)
    means = model.sample(images, mode="prior_mean")
    assert len(predictions) == 2
    for prediction, mean in zip(predictions, means):
        assert torch.equal(prediction["boxes"], mean[0]["boxes"])


@pytest.mark.parametrize("backbone", ["mobilenet_v3_fpn"])
def test_other_small_backbone_trains_and_samples(backbone):
    torch.manual_seed(0)
    model = LatentMaskRCNN(tiny_config(backbone=backbone)).train()
    images = make_images()
    losses = model(images, make_targets(images))
    sum(losses.values()).backward()
    samples = model.sample(images, num_samples=2, seed=0)
    check_prediction(samples[0][1], 64, 80)


def test_prior_for_images_is_what_sample_draws_from(model):
    images = make_images()
    with torch.no_grad():
        prior = model.prior_for_images(images)
    assert prior.mean.shape == (2, 16) and prior.logvar.shape == (2, 16)
    # prior_mean mode decodes exactly the prior mean: the reference decoder on it agrees.
    means = model.sample(images, mode="prior_mean")
    reference = model.decode_reference(images, prior.mean[:, None])
    for mine, theirs in zip(means, reference):
        torch.testing.assert_close(mine[0]["boxes"], theirs[0]["boxes"], atol=1e-4, rtol=0)
