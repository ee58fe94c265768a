"""Template: a new CNN in the model registry.

Copy this file into the package (e.g. ``deep/model_tiny_vgg.py``, imported from
``deep/__init__.py``) and rename the model. A registered model gets the common re-ID head
(global average pooling, embedding, optional BN neck, identity classifier), training
(``python -m deep.train --model tiny_vgg``), distillation (``--students tiny_vgg``), ONNX export,
every inference engine, and its own family and label in the tables and the plot.

The builder takes the last stride (1 keeps the final stage at a finer resolution, as re-ID
recipes do for ResNets) and returns ``(backbone, feature_dim)``: a module mapping
(n, 3, H, W) images to an (n, feature_dim, h, w) map.
"""

from __future__ import annotations

from torch import nn

from deep.models import ModelSpec, register

MODEL_NAME = "tiny_vgg"


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def build_tiny_vgg(last_stride: int = 2) -> tuple[nn.Module, int]:
    """Four conv blocks, 16-32-64-128 channels; overall stride 8 * last_stride."""
    backbone = nn.Sequential(
        _conv_block(3, 16, 2),
        _conv_block(16, 32, 2),
        _conv_block(32, 64, 2),
        _conv_block(64, 128, last_stride),
    )
    return backbone, 128


register(
    ModelSpec(
        name=MODEL_NAME,
        build=build_tiny_vgg,
        family="Tiny VGG",  # groups the model's sizes on the plot (one colour per family)
        short_name="TinyVGG",  # label in tables and on the plot
        default_last_stride=2,
        # imagenet_file / map_imagenet: a torchvision-cache file name and a key mapping, if an
        # ImageNet-trained version of this backbone exists (see deep/models.py for examples).
    )
)
