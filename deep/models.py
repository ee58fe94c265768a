"""Model registry in the style of timm / torchreid: ``build_model(name, num_classes)``.

Every model is a backbone (ResNet-18/34/50/101 and MobileNet v2 from torchvision, our MobileNet v1
and OSNet) under the same re-ID head::

    backbone -> global average pooling -> embedding [-> BN neck] -> linear classifier (train ids)

``model(x)`` returns logits (or ``(logits, embedding)`` with ``return_embedding=True``);
``model.extract(x)`` returns the embedding used at test time (before the BN neck, as in the paper:
the global-average-pooled last convolutional features).

No weights are ever downloaded. ``pretrained=True`` loads ImageNet weights from the torchvision
cache if they are already there, ``weights=PATH`` from a local file; otherwise a clear error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from deep.mobilenet_v1 import MobileNetV1
from deep.osnet import OSNet
from deep.safe_load import load_tensors

log = logging.getLogger("deep.models")


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture and the facts other modules need about it (as timm's
    per-model config): how to build its backbone, its family and short label (tables, plots),
    its default last stride, and how to map a torchvision ImageNet state dict onto it."""

    name: str
    build: Callable[[int], tuple[nn.Module, int]]  # last_stride -> (backbone, feature_dim)
    family: str
    short_name: str
    #: re-ID practice keeps ResNets' last stage at stride 16 (Luo et al. 2019); MobileNets and
    #: OSNet keep their published stride 32
    default_last_stride: int
    #: torchvision ImageNet file as it appears in the torchvision cache (hub/checkpoints/)
    imagenet_file: str | None = None
    #: torchvision state dict -> our backbone's state dict
    map_imagenet: Callable[[dict], dict] | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry (one name, once)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; a ValueError listing the known models otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {list_models()}")
    return _REGISTRY[name]


class _ResNetBackbone(nn.Module):
    def __init__(self, net: torchvision.models.ResNet) -> None:
        super().__init__()
        self.body = nn.Sequential(
            net.conv1,
            net.bn1,
            net.relu,
            net.maxpool,
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


_RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _resnet_imagenet(state: dict) -> dict:
    """torchvision ResNet keys (``layer1.0.conv1.weight``) -> ``body.4.0.conv1.weight``."""
    mapped = {}
    for key, value in state.items():
        head = key.split(".")[0]
        if head in _RESNET_STAGES:
            mapped["body." + str(_RESNET_STAGES.index(head)) + key[len(head) :]] = value
    return mapped


def _features_imagenet(state: dict) -> dict:
    """torchvision MobileNet keys (``features.3.conv.0.weight``) -> ``3.conv.0.weight``."""
    return {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}


def _resnet(depth: int):
    def builder(last_stride: int = 1) -> tuple[nn.Module, int]:
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        if last_stride == 1:
            # Re-ID practice (Luo et al. 2019): keep layer4 at stride 16 for a larger final map.
            block = net.layer4[0]
            # BasicBlock strides in conv1, torchvision's Bottleneck (v1.5) in conv2.
            (block.conv1 if depth < 50 else block.conv2).stride = (1, 1)
            block.downsample[0].stride = (1, 1)
        return _ResNetBackbone(net), net.fc.in_features

    return builder


def _mobilenet_v1(width: float):
    def builder(last_stride: int = 2) -> tuple[nn.Module, int]:
        net = MobileNetV1(width=width, num_classes=0, last_stride=last_stride)
        return net.features, net.out_channels

    return builder


def _mobilenet_v2(width: float):
    def builder(last_stride: int = 2) -> tuple[nn.Module, int]:
        net = torchvision.models.mobilenet_v2(weights=None, width_mult=width)
        if last_stride == 1:
            for module in net.features[14].modules():  # first block of the stride-32 stage
                if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                    module.stride = (1, 1)
        return net.features, net.last_channel

    return builder


def _osnet(width: float):
    def builder(last_stride: int = 2) -> tuple[nn.Module, int]:
        # The backbone ends with OSNet's fc-512 as an (N, 512, 1, 1) map: the head's pooling is
        # the identity and the embedding is the paper's 512-D feature (see deep/osnet.py).
        net = OSNet(width=width, last_stride=last_stride)
        return net.features, net.out_channels

    return builder


def _resnet_spec(depth: int, imagenet_file: str) -> ModelSpec:
    return ModelSpec(f"resnet{depth}", _resnet(depth), "ResNet", f"R{depth}", 1,
                     imagenet_file, _resnet_imagenet)  # fmt: skip


def _mobilenet_v1_spec(width: str) -> ModelSpec:
    return ModelSpec(f"mobilenet_v1_{width}", _mobilenet_v1(float(width)), "MobileNet v1",
                     f"MNv1 {width}", 2)  # fmt: skip


def _osnet_spec(width: str) -> ModelSpec:
    return ModelSpec(f"osnet_x{width.replace('.', '_')}", _osnet(float(width)), "OSNet",
                     f"OSNet x{width}", 2)  # fmt: skip


register(_resnet_spec(18, "resnet18-f37072fd.pth"))
register(_resnet_spec(34, "resnet34-b627a593.pth"))
register(_resnet_spec(50, "resnet50-0676ba61.pth"))
register(_resnet_spec(101, "resnet101-63fe2227.pth"))
register(_mobilenet_v1_spec("1.0"))
register(_mobilenet_v1_spec("0.75"))
register(_mobilenet_v1_spec("0.5"))
register(_mobilenet_v1_spec("0.25"))
register(ModelSpec("mobilenet_v2_1.0", _mobilenet_v2(1.0), "MobileNet v2", "MNv2 1.0", 2,
                   "mobilenet_v2-b0353104.pth", _features_imagenet))  # fmt: skip
register(ModelSpec("mobilenet_v2_0.5", _mobilenet_v2(0.5), "MobileNet v2", "MNv2 0.5", 2))
register(_osnet_spec("1.0"))
register(_osnet_spec("0.75"))
register(_osnet_spec("0.5"))
register(_osnet_spec("0.25"))


class ReIDNet(nn.Module):
    """Backbone + global average pooling + embedding (+ BN neck) + identity classifier.

    Attributes
    ----------
    name : str
        Registry name, stored in checkpoints to catch architecture mismatches.
    embedding_dim : int
    """

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        *,
        bn_neck: bool = True,
    ) -> None:
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding_dim = feature_dim
        self.neck = nn.BatchNorm1d(feature_dim) if bn_neck else nn.Identity()
        if bn_neck:
            self.neck.bias.requires_grad_(False)  # BNNeck: no shift before the classifier
        self.classifier = nn.Linear(feature_dim, num_classes, bias=not bn_neck)
        nn.init.normal_(self.classifier.weight, std=0.001)
        if self.classifier.bias is not None:
            nn.init.zeros_(self.classifier.bias)

    def extract(self, x: Tensor) -> Tensor:
        """Test-time embedding: global-average-pooled last convolutional features."""
        return self.pool(self.backbone(x)).flatten(1)

    def forward(self, x: Tensor, *, return_embedding: bool = False):
        embedding = self.extract(x)
        logits = self.classifier(self.neck(embedding))
        return (logits, embedding) if return_embedding else logits


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: str | Path | None = None,
    bn_neck: bool = True,
    last_stride: int | None = None,
    zero_init_residual: bool = False,
) -> ReIDNet:
    """Build a re-ID model by registry name.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    num_classes : int
        Number of training identities.
    pretrained : bool
        Load ImageNet weights from the torchvision cache (never downloads).
    weights : path, optional
        Load backbone weights from this local file (a torchvision state dict).
    bn_neck : bool
        BatchNorm between embedding and classifier (Luo et al., 2019).
    last_stride : int, optional
        1 or 2; default 1 for ResNets (re-ID practice), 2 for MobileNets (as published).
    zero_init_residual : bool
        Start every residual branch at zero (the last BN scale of each ResNet block and of each
        MobileNet v2 block with a skip), Goyal et al. 2017: each block starts as the identity.
        Lets a deep network fit a small training set from scratch; no effect on MobileNet v1
        (no skips) or when weights are loaded.
    """
    spec = model_spec(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if last_stride is None:
        last_stride = spec.default_last_stride
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    backbone, dim = spec.build(last_stride)
    model = ReIDNet(name, backbone, dim, num_classes, bn_neck=bn_neck)
    if zero_init_residual:
        _zero_init_residual_branches(model.backbone)
    if pretrained or weights is not None:
        _load_imagenet(model, spec, weights)
    return model


def _zero_init_residual_branches(backbone: nn.Module) -> None:
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.resnet import BasicBlock, Bottleneck

    for module in backbone.modules():
        if isinstance(module, Bottleneck):
            last_bn = module.bn3
        elif isinstance(module, BasicBlock):
            last_bn = module.bn2
        elif isinstance(module, InvertedResidual) and module.use_res_connect:
            last_bn = [m for m in module.conv.modules() if isinstance(m, nn.BatchNorm2d)][-1]
        else:
            continue
        nn.init.zeros_(last_bn.weight)


def _load_imagenet(model: ReIDNet, spec: ModelSpec, weights: str | Path | None) -> None:
    if weights is None:
        if spec.imagenet_file is None:
            raise ValueError(
                f"no ImageNet weights are known for {spec.name!r}; pass weights=PATH to a local "
                "file"
            )
        path = Path(torch.hub.get_dir()) / "checkpoints" / spec.imagenet_file
        if not path.is_file():
            raise FileNotFoundError(
                f"ImageNet weights for {spec.name} not found at {path}; this toolkit never "
                "downloads. Copy the file there or pass weights=PATH (training from scratch "
                "needs none)"
            )
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
    state = load_tensors(path, what="weights file")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"weights file {path} is not a state dict of tensors")
    mapped = (spec.map_imagenet or _features_imagenet)(state)
    loaded = load_every_backbone_tensor(model.backbone, mapped, path, spec.name)
    log.info("loaded all %d backbone tensors of %s from %s", loaded, spec.name, path)


def load_every_backbone_tensor(
    backbone: nn.Module, mapped: dict[str, Tensor], path: Path, name: str
) -> int:
    """Load ``mapped`` into ``backbone``, requiring every tensor; returns how many were loaded.

    BatchNorm's ``num_batches_tracked`` counters are not weights (and torch fills them in
    silently), so they neither count nor are required; any other tensor missing, left over
    or of another shape is a ValueError that says how many of the backbone's tensors fit.
    """
    own = {k: v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    given = {k: v for k, v in mapped.items() if not k.endswith("num_batches_tracked")}
    fitting = [k for k in own if k in given and given[k].shape == own[k].shape]
    if len(fitting) < len(own) or len(given) > len(fitting):
        wrong = [k for k in own if k not in fitting] + [k for k in given if k not in own]
        raise ValueError(
            f"weights in {path} do not fit {name}: {len(fitting)} of its {len(own)} backbone "
            f"tensors are in the file with the right shape, {len(given) - len(fitting)} of the "
            f"file's are not its (first mismatches: {', '.join(wrong[:3])})"
        )
    backbone.load_state_dict(mapped, strict=False)
    return len(fitting)


def count_parameters(model: nn.Module, *, include_classifier: bool = False) -> int:
    """Parameters used at test time (the classifier is dropped unless asked for)."""
    total = sum(p.numel() for p in model.parameters())
    if not include_classifier and isinstance(model, ReIDNet):
        total -= sum(p.numel() for p in model.classifier.parameters())
        total -= sum(p.numel() for p in model.neck.parameters())
    return total


def model_complexity(model: ReIDNet, input_size: tuple[int, int]) -> tuple[int, float]:
    """(test-time parameters, GFLOPs of ``extract`` on one image of ``input_size``).

    FLOPs are counted by torch's FlopCounterMode (a multiply-add counts as 2 FLOPs).
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.extract(x)
    model.train(was_training)
    return count_parameters(model), counter.get_total_flops() / 1e9
