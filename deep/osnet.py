"""OSNet (Zhou, Yang, Cavallaro and Xiang, "Omni-Scale Feature Learning for Person
Re-Identification", ICCV 2019), written from the paper's description.

The network (paper's Table 1, channels at width 1.0; the output sizes are for 256x128)::

    conv1   7x7 conv, stride 2 (64)                 128x64
            3x3 max pool, stride 2                   64x32
    conv2   2 omni-scale bottlenecks (256)           64x32
            transition: 1x1 conv + 2x2 avg pool      32x16
    conv3   2 omni-scale bottlenecks (384)           32x16
            transition: 1x1 conv + 2x2 avg pool      16x8
    conv4   2 omni-scale bottlenecks (512)           16x8
    conv5   1x1 conv (512)                           16x8
            global average pool, fc (512)            1x1

An omni-scale bottleneck reduces the channels four-fold with a 1x1 conv, runs ``T = 4`` streams
of 1, 2, 3 and 4 stacked Lite 3x3 layers (1x1 pointwise conv, then 3x3 depthwise conv + BN +
ReLU; receptive fields 3, 5, 7 and 9), fuses them with one aggregation gate shared by every
stream (global average pool -> FC -> ReLU -> FC -> sigmoid, channel-wise weights; the streams'
gated outputs are summed), restores the channels with a 1x1 conv + BN and adds the input
(projected by a 1x1 conv + BN where the channel counts differ), then ReLU.

Widths: ``width`` scales every convolution's channels (0.75 / 0.5 / 0.25 give 48-192-288-384,
32-128-192-256 and 16-64-96-128); the fc layer stays at 512, so every width gives a 512-D
re-ID feature. fc is Linear + BN + ReLU (common practice; the table lists it as "fc").

Parameter counts: 2.17M / 1.29M / 0.63M / 0.20M at width 1.0 / 0.75 / 0.5 / 0.25, against the
paper's 2.2M / 1.3M / 0.6M / 0.2M. Convention: the paper counts the feature extractor up to and
including fc-512, without the identity classifier. No other reading fits its numbers: a 1,000-way
classifier alone adds 0.51M (more than the whole 0.25 network), a Market-1501 751-way one 0.38M;
and without fc-512 width 0.25 would have 0.13M. Mult-adds at 256x128 (torch's FlopCounterMode
FLOPs / 2) are 978.9M at width 1.0, the paper's Table 1 figure.

Inside :class:`deep.models.ReIDNet` the backbone is the whole network up to fc-512 and returns
an ``(N, 512, 1, 1)`` map; ReIDNet's global pooling is then the identity and its embedding is
OSNet's 512-D fc feature, so ``deep.models.count_parameters`` gives the paper's counts.

``last_stride``: OSNet down-samples by 16 (conv1, max pool and the two transitions' average
pools); conv5 has no stride. ``last_stride=2`` (the default) is the paper's network;
``last_stride=1`` drops the average pool of the second transition (its 1x1 conv stays), so
conv4 and conv5 run at stride 8 (a 32x16 final map for a 256x128 input).
"""

from __future__ import annotations

from torch import Tensor, nn

#: Channels at width 1.0 of conv1 and of conv2 / conv3 / conv4 (conv5 keeps conv4's channels).
STEM_CHANNELS = 64
STAGE_CHANNELS = (256, 384, 512)
BLOCKS_PER_STAGE = 2
FEATURE_DIM = 512
#: Streams per omni-scale bottleneck (stream t stacks t Lite 3x3 layers).
STREAMS = 4
#: Channel reduction inside the bottleneck and inside the aggregation gate.
BOTTLENECK_REDUCTION = 4
GATE_REDUCTION = 16


def conv_bn(
    inp: int, out: int, kernel: int, stride: int = 1, *, relu: bool = True
) -> nn.Sequential:
    """Convolution (no bias) + BN (+ ReLU), padded to keep the map size at stride 1."""
    layers: list[nn.Module] = [
        nn.Conv2d(inp, out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class LiteConv3x3(nn.Sequential):
    """Lite 3x3: 1x1 pointwise conv, then 3x3 depthwise conv + BN + ReLU."""

    def __init__(self, inp: int, out: int) -> None:
        super().__init__(
            nn.Conv2d(inp, out, 1, bias=False),
            nn.Conv2d(out, out, 3, padding=1, groups=out, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
        )


class AggregationGate(nn.Module):
    """Unified aggregation gate: channel-wise weights in (0, 1) from the globally pooled input.

    Parameters
    ----------
    channels : int
        Channels of the gated stream.
    reduction : int
        Hidden width is ``channels // reduction`` (at least 1).
    """

    def __init__(self, channels: int, reduction: int = GATE_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.weights = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),  # FC on the pooled vector
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class OmniScaleBottleneck(nn.Module):
    """Residual bottleneck with ``streams`` multi-scale streams fused by one shared gate.

    Parameters
    ----------
    inp, out : int
        Input and output channels; the streams run at ``out // BOTTLENECK_REDUCTION``.
    streams : int
        Number of streams ``T``; stream ``t`` (1-based) stacks ``t`` Lite 3x3 layers.
    """

    def __init__(self, inp: int, out: int, streams: int = STREAMS) -> None:
        super().__init__()
        mid = out // BOTTLENECK_REDUCTION
        self.reduce = conv_bn(inp, mid, 1)
        self.streams = nn.ModuleList(
            nn.Sequential(*(LiteConv3x3(mid, mid) for _ in range(depth)))
            for depth in range(1, streams + 1)
        )
        self.gate = AggregationGate(mid)
        self.restore = conv_bn(mid, out, 1, relu=False)
        self.shortcut = nn.Identity() if inp == out else conv_bn(inp, out, 1, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.reduce(x)
        fused = self.gate(self.streams[0](reduced))
        for stream in self.streams[1:]:
            fused = fused + self.gate(stream(reduced))
        return self.relu(self.restore(fused) + self.shortcut(x))


class Transition(nn.Sequential):
    """1x1 conv + BN + ReLU, then 2x2 average pooling with stride 2 (or none: ``stride=1``)."""

    def __init__(self, channels: int, stride: int = 2) -> None:
        pool = nn.AvgPool2d(2, stride=2) if stride == 2 else nn.Identity()
        super().__init__(conv_bn(channels, channels, 1), pool)


class FeatureFC(nn.Module):
    """Global average pooling and the fc-512 layer (Linear + BN + ReLU, as a 1x1 conv).

    Returns an ``(N, dim, 1, 1)`` map so that the re-ID head's pooling leaves it unchanged.
    """

    def __init__(self, inp: int, dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = conv_bn(inp, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(x))


class OSNet(nn.Module):
    """OSNet feature extractor: image -> ``(N, 512, 1, 1)`` re-ID feature map.

    Parameters
    ----------
    width : float
        Width multiplier of every convolution's channels (1.0, 0.75, 0.5, 0.25 in the paper);
        the fc layer stays at ``FEATURE_DIM``.
    last_stride : int
        2: the paper's network (stride 16). 1: no pooling in the second transition (stride 8).

    Attributes
    ----------
    out_channels : int
        The feature dimension (``FEATURE_DIM``).
    """

    def __init__(self, width: float = 1.0, last_stride: int = 2) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")

        def channels(c: int) -> int:
            return max(BOTTLENECK_REDUCTION, round(c * width))

        stem = channels(STEM_CHANNELS)
        layers: list[nn.Module] = [conv_bn(3, stem, 7, 2), nn.MaxPool2d(3, 2, padding=1)]
        inp = stem
        for i, c in enumerate(STAGE_CHANNELS):
            out = channels(c)
            for b in range(BLOCKS_PER_STAGE):
                layers.append(OmniScaleBottleneck(inp if b == 0 else out, out))
            if i < len(STAGE_CHANNELS) - 1:
                layers.append(Transition(out, stride=last_stride if i == 1 else 2))
            inp = out
        layers.append(conv_bn(inp, inp, 1))  # conv5
        layers.append(FeatureFC(inp))
        self.features = nn.Sequential(*layers)
        self.out_channels = FEATURE_DIM
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def _init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions (fan out, ReLU), zero biases; BN weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
