"""MobileNet v1 (Howard et al., 2017), which torchvision does not ship.

A 3x3 convolution stem with stride 2, then 13 depthwise-separable blocks (3x3 depthwise conv +
BN + ReLU, 1x1 pointwise conv + BN + ReLU). The width multiplier scales every layer's channels.
With a 1000-class classifier it has about 4.2M / 2.6M / 1.3M / 0.5M parameters at width
1.0 / 0.75 / 0.5 / 0.25, as in the paper's Table 6.
"""

from __future__ import annotations

from torch import Tensor, nn

# (output channels at width 1.0, stride) of the 13 depthwise-separable blocks.
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _conv_bn(inp: int, out: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise + 1x1 pointwise convolution, each followed by BN and ReLU."""

    def __init__(self, inp: int, out: int, stride: int) -> None:
        super().__init__(_conv_bn(inp, inp, 3, stride, groups=inp), _conv_bn(inp, out, 1, 1))


class MobileNetV1(nn.Module):
    """MobileNet v1 feature extractor with an optional ImageNet-style classifier.

    Parameters
    ----------
    width : float
        Width multiplier applied to every layer (channels are rounded, at least 8).
    num_classes : int
        Classifier outputs; 0 means no classifier (feature extractor only).
    last_stride : int
        Stride of the last down-sampling block (1 keeps a larger final map for small inputs).
    """

    def __init__(self, width: float = 1.0, num_classes: int = 1000, last_stride: int = 2) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")

        def channels(c: int) -> int:
            return max(8, round(c * width))

        layers: list[nn.Module] = [_conv_bn(3, channels(32), 3, 2)]
        inp = channels(32)
        for i, (out, stride) in enumerate(BLOCKS):
            if i == 11 and stride == 2:
                stride = last_stride
            layers.append(DepthwiseSeparable(inp, channels(out), stride))
            inp = channels(out)
        self.features = nn.Sequential(*layers)
        self.out_channels = inp
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(inp, num_classes) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(x) if self.classifier is not None else x
