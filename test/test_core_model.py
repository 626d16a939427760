"""The classifier: shapes, finite outputs, precisions, normalisation, freezing, config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reward_model_ros.core.config import ConfigError, ModelConfig
from reward_model_ros.core.inference import BatchScorer, pick_device
from reward_model_ros.core.model import ResNetRewardModel
from reward_model_ros.core.preprocess import Preprocessor

torch.set_num_threads(2)


def images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), np.uint8)


@pytest.mark.parametrize("arch", ["resnet10", "resnet18", "resnet34", "resnet50"])
def test_every_arch_gives_one_finite_probability_per_image(arch):
    torch.manual_seed(0)
    model = ResNetRewardModel(ModelConfig(arch=arch, image_size=[3, 64, 64]))
    pred = model.predict(images(3))
    assert pred.probabilities.shape == (3,) and pred.logits.shape == (3,)
    assert np.isfinite(pred.logits).all()
    assert ((pred.probabilities >= 0) & (pred.probabilities <= 1)).all()
    assert np.allclose(pred.probabilities, 1 / (1 + np.exp(-pred.logits)), atol=1e-5)


def test_predict_scores_in_eval_mode_and_leaves_the_mode_as_it_was():
    """predict switches a training model to eval (dropout off, BatchNorm running statistics)
    and back; a model already in eval is scored without a switch."""
    torch.manual_seed(0)
    model = ResNetRewardModel(ModelConfig(arch="resnet10", dropout=0.9, image_size=[3, 64, 64]))
    x = images(4)
    model.eval()
    expected = model.predict(x).logits
    model.train()
    assert np.allclose(model.predict(x).logits, expected, atol=1e-5)  # not dropout's, not batch stats
    assert model.training and model.head[2].training and model.backbone.training
    model.eval()
    assert np.allclose(model.predict(x).logits, expected, atol=1e-5)
    assert not model.training and not model.head[2].training


def test_head_shape():
    model = ResNetRewardModel(ModelConfig(arch="resnet10", hidden_dim=32, dropout=0.3))
    linear1, relu, dropout, linear2 = model.head
    assert (linear1.in_features, linear1.out_features) == (512, 32)
    assert isinstance(relu, torch.nn.ReLU) and dropout.p == 0.3
    assert (linear2.in_features, linear2.out_features) == (32, 1)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_stays_close_to_fp32(precision):
    torch.manual_seed(0)
    cfg = ModelConfig(arch="resnet10", image_size=[3, 64, 64])
    model = ResNetRewardModel(cfg)
    ref = model.predict(images(4)).probabilities
    model.cfg.precision = precision
    low = model.predict(images(4)).probabilities
    assert np.isfinite(low).all()
    assert np.abs(low - ref).max() < 0.05


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-5), ("bf16", 0.02)])
def test_frozen_graph_scores_like_the_eager_model_at_any_batch_size(precision, tolerance):
    """model.optimize=freeze: predict goes through a traced, frozen copy (bf16 weights for
    bf16), built on first use for any batch size, dropped when the model trains again."""
    torch.manual_seed(0)
    eager = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 64, 64]))
    fast = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 64, 64], precision=precision))
    fast.cfg.optimize = "freeze"
    fast.load_state_dict(eager.state_dict())
    fast.eval()  # as load_checkpoint leaves it
    fast.temperature = eager.temperature = 1.7
    for n in (1, 3, 8):  # traced at batch 1, then other sizes
        x = images(n)
        assert np.abs(fast.predict(x).probabilities - eager.predict(x).probabilities).max() < tolerance
    assert list(fast._graphs) == ["cpu"]  # the frozen graph scored them, not the eager model
    assert set(fast.state_dict()) == set(eager.state_dict())  # the graph is no submodule
    fast.train()
    assert not fast._graphs  # weights may change in training: the graph is rebuilt after
    fast.eval()
    with torch.no_grad():
        fast.head[-1].bias += 5.0
    fast.load_state_dict(fast.state_dict())
    assert fast.predict(images(2)).probabilities.min() > eager.predict(images(2)).probabilities.min()


def test_fast_inference_is_bf16_frozen_only_where_bf16_is_native(monkeypatch):
    import reward_model_ros.core.model as model_module

    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: True)
    assert model_module.fast_inference(torch.device("cpu")) == ("bf16", "freeze")
    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: False)  # emulated bf16 is slower
    assert model_module.fast_inference(torch.device("cpu")) == ("fp32", "none")


def test_uint8_and_float_inputs_agree():
    torch.manual_seed(0)
    model = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 64, 64]))
    x = images(2)
    a = model.predict(x).logits
    b = model.predict(torch.from_numpy(x).float() / 255).logits
    assert np.allclose(a, b, atol=1e-4)


def test_normalize_changes_the_input_the_backbone_sees():
    torch.manual_seed(0)
    model = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 64, 64], normalize=True))
    seen = []
    model.backbone.conv1.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    x = np.full((1, 3, 64, 64), 255, np.uint8)
    model.predict(x)
    model.cfg.normalize = False
    model.predict(x)
    expected_red = (1.0 - 0.485) / 0.229
    assert seen[0][0, 0].flatten()[0].item() == pytest.approx(expected_red, rel=1e-4)
    assert seen[1][0, 0].flatten()[0].item() == pytest.approx(1.0)


def test_frozen_stages_freeze_the_stem_and_layer1_only():
    torch.manual_seed(0)
    model = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 64, 64], frozen_stages=1))
    b = model.backbone
    frozen = [b.conv1, b.bn1, b.layer1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in (b.layer2, b.layer3, b.layer4, model.head) for p in m.parameters())
    model.train()
    assert not b.bn1.training and not b.layer1.training and b.layer2.training
    before = {n: p.clone() for n, p in model.named_parameters()}
    stats = b.bn1.running_mean.clone()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    torch.nn.functional.binary_cross_entropy_with_logits(
        model(torch.from_numpy(images(4))), torch.ones(4)
    ).backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(
        not n.startswith(("backbone.conv1", "backbone.bn1", "backbone.layer1")) for n in moved
    )
    assert any(n.startswith("backbone.layer2") for n in moved)
    assert torch.equal(b.bn1.running_mean, stats)  # frozen BatchNorm statistics stay as loaded
    with pytest.raises(ConfigError, match="frozen_stages"):
        ModelConfig(frozen_stages=5).validate()


def test_freeze_backbone_really_freezes():
    torch.manual_seed(0)
    model = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 64, 64], freeze_backbone=True))
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert not model.backbone.training and model.head.training  # BatchNorm stats frozen too
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head[0].weight.clone()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(torch.from_numpy(images(4))), torch.ones(4)
    )
    loss.backward()
    opt.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(head_before, model.head[0].weight)


def test_unfrozen_backbone_trains():
    torch.manual_seed(0)
    model = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 64, 64]))
    before = model.backbone.conv1.weight.clone()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    model.train()
    torch.nn.functional.binary_cross_entropy_with_logits(
        model(torch.from_numpy(images(4))), torch.ones(4)
    ).backward()
    opt.step()
    assert not torch.equal(before, model.backbone.conv1.weight)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"arch": "resnet12"}, r"model.arch='resnet12': must be one of resnet10"),
        ({"hidden_dim": 0}, r"model.hidden_dim=0"),
        ({"dropout": 1.0}, r"model.dropout=1.0"),
        ({"image_size": [1, 128, 128]}, r"model.image_size=\[1, 128, 128\]"),
        ({"precision": "int4"}, r"model.precision='int4'"),
        ({"optimize": "jit"}, r"model.optimize='jit': must be one of none, freeze"),
        ({"crop_boxes": {"front": [10, 10, 5, 20]}}, r"crop_boxes\['front'\]"),
        ({"pretrained": True, "pretrained_path": "x.safetensors"}, r"both set"),
    ],
)
def test_bad_config_names_the_key(changes, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**changes).validate()


def test_pretrained_path_refuses_pickles_and_loads_safetensors(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    with pytest.raises(ConfigError, match=r"only .safetensors files are loaded"):
        ResNetRewardModel(ModelConfig(pretrained_path=str(tmp_path / "w.pth")))
    torch.manual_seed(1)
    donor = resnet18()
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    model = ResNetRewardModel(ModelConfig(pretrained_path=str(path)))
    assert torch.equal(model.backbone.conv1.weight, donor.conv1.weight)
    with pytest.raises(ConfigError, match=r"does not fit"):
        ResNetRewardModel(ModelConfig(arch="resnet50", pretrained_path=str(path)))


def test_batch_scorer_micro_batches_match_one_batch():
    torch.manual_seed(0)
    model = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 64, 64]))
    x = images(7)
    whole = BatchScorer(model, micro_batch_size=256)(x)
    split = BatchScorer(model, micro_batch_size=3)(x)
    assert np.allclose(whole, split, atol=1e-5)
    with pytest.raises(ValueError, match="micro_batch_size=0"):
        BatchScorer(model, micro_batch_size=0)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


# --- preprocessing ----------------------------------------------------------------------
def test_preprocess_center_crop_keeps_aspect_and_centre():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = 255  # the centred 480x480 square is white, the side bands black
    out = Preprocessor(ModelConfig(image_size=[3, 96, 96]))(frame)  # scale 0.2: band edges exact
    assert out.shape == (3, 96, 96) and out.flags["C_CONTIGUOUS"]
    assert out.min() == 255  # the side bands were cropped away, not squeezed in


def test_preprocess_stretch_keeps_everything():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = 255
    out = Preprocessor(ModelConfig(image_size=[3, 128, 128], resize_mode="stretch"))(frame)
    assert out[:, :, 0].max() == 0 and out[:, :, 64].min() == 255


def test_preprocess_crop_box_per_camera():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[10:50, 20:60] = [255, 0, 0]
    cfg = ModelConfig(
        image_size=[3, 32, 32], crop_boxes={"wrist": [20, 10, 60, 50]}, camera_names=["front", "wrist"]
    )
    pre = Preprocessor(cfg)
    cropped = pre(frame, "wrist")
    assert (cropped[0] == 255).all() and (cropped[1:] == 0).all()
    assert not (pre(frame, "front")[0] == 255).all()  # a known camera without a box is not cropped
    # a camera the model does not know, or none, is an error: never a silently uncropped frame
    for unknown in ("/image_raw", None):
        with pytest.raises(ConfigError, match=r"not one of the model's cameras \['front', 'wrist'\]"):
            pre(frame, unknown)
    with pytest.raises(ConfigError, match=r"reaches outside its 50x40 frame"):
        pre(frame[:40, :50], "wrist")


def test_crop_boxes_must_name_a_camera_of_the_model():
    with pytest.raises(ConfigError, match=r"crop_boxes names camera\(s\) \['camera'\], but the cameras are"):
        ModelConfig(crop_boxes={"camera": [0, 0, 8, 8]}, camera_names=["front"]).validate()


def test_preprocess_upscales_small_frames_and_refuses_non_rgb():
    pre = Preprocessor(ModelConfig(image_size=[3, 64, 64]))
    assert pre(np.zeros((20, 30, 3), np.uint8)).shape == (3, 64, 64)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB frame"):
        pre(np.zeros((20, 30), np.uint8))
