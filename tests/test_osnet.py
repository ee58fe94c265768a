"""OSNet: the paper's sizes, the omni-scale block, last_stride, training, distillation, ONNX."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from deep.models import build_model, count_parameters, model_complexity
from deep.osnet import AggregationGate, LiteConv3x3, OmniScaleBottleneck, OSNet

WIDTHS = {"osnet_x1_0": 1.0, "osnet_x0_75": 0.75, "osnet_x0_5": 0.5, "osnet_x0_25": 0.25}


@pytest.mark.parametrize(
    ("name", "millions"),
    [("osnet_x1_0", 2.2), ("osnet_x0_75", 1.3), ("osnet_x0_5", 0.6), ("osnet_x0_25", 0.2)],
)
def test_parameter_counts_match_the_paper(name, millions):
    # The paper's convention: up to and including fc-512, no identity classifier. That is
    # count_parameters' test-time count (classifier and BN neck dropped) of the re-ID model.
    model = build_model(name, num_classes=751)
    params = count_parameters(model)
    assert params == sum(p.numel() for p in OSNet(WIDTHS[name]).parameters())
    assert params / 1e6 == pytest.approx(millions, rel=0.10)
    with_classifier = count_parameters(model, include_classifier=True)
    assert with_classifier - params == 751 * 512 + 2 * 512  # classifier + BN neck


def test_width_one_has_the_papers_mult_adds():
    model = build_model("osnet_x1_0", 10)
    _, gflops = model_complexity(model, (256, 128))
    assert gflops / 2 * 1e3 == pytest.approx(978.9, abs=0.5)  # Table 1: 978.9M mult-adds


def test_bottleneck_has_four_streams_of_one_to_four_lite_layers_and_one_gate():
    block = OmniScaleBottleneck(64, 256)
    depths = [sum(isinstance(m, LiteConv3x3) for m in s.modules()) for s in block.streams]
    assert depths == [1, 2, 3, 4]
    assert sum(isinstance(m, AggregationGate) for m in block.modules()) == 1
    lite = block.streams[0][0]
    assert lite[0].kernel_size == (1, 1) and lite[1].groups == lite[1].in_channels == 64
    # The shared gate gets gradient from every stream.
    x = torch.randn(2, 64, 8, 4)
    grads = []
    for stream in block.streams:
        block.zero_grad()
        block.gate(stream(block.reduce(x))).sum().backward()
        grads.append(block.gate.weights[1].weight.grad.clone())
    assert all(g.abs().sum() > 0 for g in grads)


def test_gate_is_channel_wise_in_zero_one():
    gate = AggregationGate(32)
    x = torch.rand(2, 32, 4, 2) + 0.1
    weights = gate(x) / x
    assert weights.min() > 0 and weights.max() < 1
    torch.testing.assert_close(weights, weights[..., :1, :1].expand_as(weights))


@pytest.mark.parametrize("size", [(64, 32), (256, 128)])
@pytest.mark.parametrize("last_stride", [2, 1])
def test_input_sizes_and_last_stride(size, last_stride):
    model = build_model("osnet_x0_25", 5, last_stride=last_stride).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        conv5 = model.backbone[:-1](x)
        assert model.extract(x).shape == (2, 512)
    stride = 16 if last_stride == 2 else 8
    assert conv5.shape[-2:] == (size[0] // stride, size[1] // stride)


def test_default_last_stride_is_the_papers():
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        default = build_model("osnet_x0_25", 5).eval().backbone[:-1](x)
    assert default.shape[-2:] == (4, 2)  # stride 16, as published


def test_weight_init():
    net = OSNet(0.5)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        elif isinstance(m, nn.Conv2d) and m.bias is not None:
            assert torch.all(m.bias == 0)
    conv = net.features[2].restore[0]  # 1x1, 32 -> 128: kaiming fan-out std sqrt(2 / 128)
    assert conv.weight.std().item() == pytest.approx((2 / 128) ** 0.5, rel=0.1)


def test_a_few_sgd_steps_lower_the_loss():
    torch.manual_seed(0)
    model = build_model("osnet_x0_25", 4).train()
    x, y = torch.randn(16, 3, 64, 32), torch.arange(16) % 4
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(12):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # The first steps are noisy (train-mode BN on one small batch): judge the last two.
    assert sum(losses[-2:]) / 2 < 0.5 * losses[0]


@pytest.mark.parametrize(
    ("name", "size"),
    [("osnet_x0_25", (64, 32)), ("osnet_x0_25", (256, 128)), ("osnet_x1_0", (256, 128))],
)
def test_onnx_export_matches_pytorch(name, size, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from deep.export import EXPORT_ATOL, export_onnx

    torch.manual_seed(0)
    model = build_model(name, 5).eval()
    # Opset 17, TorchScript exporter; ONNX Runtime vs PyTorch on batches of 1 and 3 (the export
    # used 2, so the dynamic batch axis is exercised), an ExportError above 1e-4.
    diff = export_onnx(model, tmp_path / "osnet.onnx", size)
    assert EXPORT_ATOL == 1e-4 and diff <= 1e-4
    assert (tmp_path / "osnet.onnx").is_file()


@pytest.fixture(scope="module")
def tiny_dataset(small_synthetic_root):
    from data.layouts import load_dataset

    return small_synthetic_root, load_dataset("market1501", small_synthetic_root)


@pytest.mark.slow
def test_trains_with_deep_train_cli(tiny_dataset, tmp_path):
    from deep.checkpoint import load_checkpoint, load_trained
    from deep.train import main

    root, _ = tiny_dataset
    out = tmp_path / "run"
    args = [
        "--model", "osnet_x0_25", "--dataset", "market1501", "--data-root", str(root),
        "--input-size", "64x32", "--epochs", "1", "--batch-size", "8", "--warmup-epochs", "0",
        "--lr", "0.05", "--threads", "1", "--erasing", "0",
        "--checkpoint-every", "0", "--out", str(out), "--init", "scratch",
    ]  # fmt: skip
    assert main(args) == 0
    assert load_checkpoint(out / "model.pt")["model_name"] == "osnet_x0_25"
    model, _ = load_trained(out, expected_model="osnet_x0_25")
    with torch.no_grad():
        assert torch.isfinite(model.extract(torch.randn(2, 3, 64, 32))).all()


@pytest.mark.slow
def test_is_a_distillation_student(tiny_dataset, tmp_path):
    from deep import teacher as teacher_signal
    from deep.checkpoint import load_checkpoint
    from deep.config import TrainConfig
    from deep.train import train

    root, dataset = tiny_dataset
    base = TrainConfig(
        model="mobilenet_v1_0.25", dataset="market1501", data_root=str(root), input_size=(32, 16),
        epochs=1, batch_size=8, warmup_epochs=0, lr=0.05, threads=1,
        bn_neck=False, erasing=0.0, checkpoint_every=0, init="scratch",
    )  # fmt: skip
    train(dataclasses.replace(base, out=str(tmp_path / "teacher")), dataset=dataset)
    student = dataclasses.replace(base, model="osnet_x0_25", kd_T=4.0, kd_alpha=0.9)
    runs = {}
    for name, signal in [
        ("plain", None),
        ("kd", teacher_signal.TeacherSignal(tmp_path / "teacher", need_embedding=True)),
    ]:
        cfg = dataclasses.replace(
            student, out=str(tmp_path / name), kd_feature_weight=1.0 if signal else 0.0
        )
        teacher_dim = signal.embedding_dim if signal else None
        train(cfg, teacher=signal, teacher_dim=teacher_dim, dataset=dataset)
        runs[name] = load_checkpoint(tmp_path / name / "model.pt")["model"]
    # Logit and embedding (256-D teacher -> 512-D student) distillation both ran.
    assert "feature_kd" in load_checkpoint(tmp_path / "kd" / "checkpoint.pt")
    assert not torch.equal(runs["plain"]["classifier.weight"], runs["kd"]["classifier.weight"])
