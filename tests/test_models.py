"""Model registry: every model builds, shapes, MobileNet v1 sizes, clear errors."""

from __future__ import annotations

import pytest
import torch

from deep.mobilenet_v1 import MobileNetV1
from deep.models import build_model, list_models, model_complexity


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_with_the_same_head(name):
    model = build_model(name, num_classes=7)
    x = torch.randn(2, 3, 64, 32)
    model.train()
    logits, embedding = model(x, return_embedding=True)
    assert logits.shape == (2, 7) and embedding.shape == (2, model.embedding_dim)
    model.eval()
    with torch.no_grad():
        assert model.extract(x).shape == (2, model.embedding_dim)


@pytest.mark.parametrize(("width", "millions"), [(1.0, 4.2), (0.75, 2.6), (0.5, 1.3), (0.25, 0.5)])
def test_mobilenet_v1_parameter_counts_match_the_paper(width, millions):
    params = sum(p.numel() for p in MobileNetV1(width, num_classes=1000).parameters())
    assert params / 1e6 == pytest.approx(millions, abs=0.06)


def test_complexity_is_reported():
    small = build_model("mobilenet_v1_0.25", 10)
    big = build_model("resnet50", 10)
    p_small, f_small = model_complexity(small, (64, 32))
    p_big, f_big = model_complexity(big, (64, 32))
    assert 0 < p_small < p_big and 0 < f_small < f_big


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match=r"known models: .*resnet50"):
        build_model("vgg16", 10)


def test_pretrained_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_model("resnet18", 10, pretrained=True)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_model("resnet18", 10, weights=tmp_path / "nope.pth")


def test_local_weights_are_loaded(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", 10, weights=path)
    torch.testing.assert_close(model.backbone.body[0].weight, reference.conv1.weight)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2_1.0"])
def test_zero_init_residual_starts_every_residual_block_as_the_identity(name):
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.resnet import BasicBlock, Bottleneck

    plain = build_model(name, 10)
    zeroed = build_model(name, 10, zero_init_residual=True)
    blocks = [
        m
        for m in zeroed.backbone.modules()
        if isinstance(m, BasicBlock | Bottleneck)
        or (isinstance(m, InvertedResidual) and m.use_res_connect)
    ]
    assert blocks
    for block in blocks:
        if isinstance(block, InvertedResidual):
            x = torch.randn(2, block.conv[0][0].in_channels, 8, 4)
            expected = x  # a zero branch leaves the skip alone
        else:
            if block.downsample is not None:
                continue
            x = torch.randn(2, block.conv1.in_channels, 8, 4)
            expected = torch.relu(x)
        block.eval()
        with torch.no_grad():
            torch.testing.assert_close(block(x), expected)
    # Without the option the same block is not the identity (the test can fail).
    twin = dict(plain.backbone.named_modules())[
        next(n for n, m in zeroed.backbone.named_modules() if m is block)
    ]
    twin.eval()
    with torch.no_grad():
        assert not torch.allclose(twin(x), expected)
