"""Procedural pedestrian crops in the Market-1501 layout: the toolkit's built-in dataset.

The study must run end to end without downloads, so this module draws pedestrian-like 128x64
crops and writes them exactly as Market-1501 stores its data (``bounding_box_train/``,
``query/``, ``bounding_box_test/``, names like ``0002_c1s1_000451_03.jpg``, distractors ``0000``
and junk ``-1`` in the gallery), so the very same loader code path serves real and synthetic data.

What makes it a re-ID problem rather than a colour-matching one:

* every identity has a persistent appearance: body proportions, upper and lower garments whose
  colours come from a *shared* palette (many identities share a colour pair), a garment texture
  (plain, stripes, checks, a print on the front only), sleeves, trousers or skirt, hair colour and
  length, skin tone, shoes, and a bag (backpack, or a shoulder bag on one side) or none;
* every camera has its own illumination (colour cast, gain, gamma), preferred viewpoint
  (front / back / side: the print is only visible from the front, the backpack from the back),
  background clutter, scale, blur, noise and JPEG quality; boxes jitter, some are partly occluded
  or badly cropped; arms and legs swing differently in every image.

One ``difficulty`` knob (0..1) scales all nuisances; each is also exposed on its own in
:class:`SyntheticConfig`. Generation is deterministic: every identity, camera and image draws
from its own generator seeded by ``(seed, kind, id, camera, index)``, so the same seed and config
give byte-identical files. The drawing itself lives in :mod:`data._synth_draw`.

Usage::

    python -m data.synthetic --out datasets/synthetic --seed 0 [--preset small|default|large]
    python -m data.synthetic --preset large --difficulty 0.7 --dry-run      # counts only
    python -m data.synthetic --contact-sheet docs/synthetic_contact_sheet.png
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import numbers
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from data import paths
from data._synth_draw import (
    PALETTE,
    draw_camera,
    draw_identity,
    junk_image,
    person_image,
)
from data.cli import entry_point, non_negative_int
from data.io import OutputError, atomic_path
from data.layouts import (
    SPLIT_DIRS,
    DatasetError,
    ReidDataset,
    parse_market_name,
    read_three_folders,
    register_layout,
)

log = logging.getLogger(__name__)

#: Bumped whenever the drawing changes, so cached datasets are regenerated.
GENERATOR_VERSION = 4
MANIFEST = "synthetic_manifest.json"

_KNOBS = (
    "illumination",
    "viewpoint_change",
    "occlusion",
    "bad_crop",
    "blur",
    "noise",
    "clutter",
    "min_jpeg_quality",
)
_PROBABILITIES = ("viewpoint_change", "occlusion", "bad_crop")
#: Marks generator keys of a non-zero stream. Study keys are (seed, kind, id[, camera, index])
#: with kind < 10, camera < 9 and index < 10, so a key ending in (STREAM_TAG, stream) cannot be
#: one of them.
STREAM_TAG = 0x5EED_F00D


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and difficulty knobs of the synthetic dataset.

    Nuisance knobs left at ``None`` follow ``difficulty`` (0 = clean, 1 = hard); see
    :meth:`knob` for the mapping.

    Attributes
    ----------
    num_train_ids, num_test_ids : int
        Disjoint training and test identities (test ids give the queries and the gallery).
    num_cameras : int
        Cameras (1..9, one digit in Market-1501 names).
    min_cameras_per_id, max_cameras_per_id : int
        Each identity appears in a random number of cameras in this range (at least 2, so that
        every query has a cross-camera match).
    min_images_per_camera, max_images_per_camera : int
        Images of one identity in one camera (test ids get one more: the query).
    num_distractors, num_junk : int
        Gallery-only boxes: other people (id 0000) and false detections (id -1).
    height, width : int
        Crop size in pixels.
    palette_size : int
        Garment colours are shared: identities draw from the first ``palette_size`` of 16 colours.
    difficulty : float
        0..1, scales every nuisance knob below that is left at ``None``.
    illumination : float or None
        Spread of the per-camera colour cast, gain and gamma.
    viewpoint_change : float or None
        Probability that an image is not seen from its camera's usual viewpoint.
    occlusion, bad_crop : float or None
        Probability of an occluder (pole, car, other person) / of a shifted box (head or feet cut).
    blur, noise : float or None
        Maximum Gaussian blur sigma (pixels) / maximum pixel noise std (0-255 scale) of a camera.
    clutter : float or None
        Background clutter density (expected objects per background is ``6 * clutter``).
    min_jpeg_quality : int or None
        Cameras encode with a JPEG quality between this and 95.
    stream : int
        Random stream. 0 (every study dataset) keys each generator by ``(seed, kind, id, ...)``
        exactly as before; any other value appends ``(STREAM_TAG, stream)`` to every key, so its
        identities, cameras and images are drawn independently of every stream-0 dataset
        whatever the two seeds are. The pretraining preset uses its own stream.
    """

    num_train_ids: int = 150
    num_test_ids: int = 150
    num_cameras: int = 6
    min_cameras_per_id: int = 2
    max_cameras_per_id: int = 4
    min_images_per_camera: int = 1
    max_images_per_camera: int = 3
    num_distractors: int = 200
    num_junk: int = 100
    height: int = 128
    width: int = 64
    palette_size: int = 14
    difficulty: float = 0.5
    illumination: float | None = None
    viewpoint_change: float | None = None
    occlusion: float | None = None
    bad_crop: float | None = None
    blur: float | None = None
    noise: float | None = None
    clutter: float | None = None
    min_jpeg_quality: int | None = None
    stream: int = 0

    def rng(self, seed: int, *parts: int) -> np.random.Generator:
        """The generator of one drawing step, keyed by ``(seed, *parts)`` and the stream."""
        key = [seed, *parts] if self.stream == 0 else [seed, *parts, STREAM_TAG, self.stream]
        return np.random.default_rng(key)

    def knob(self, name: str) -> float:
        """The value of a nuisance knob, derived from ``difficulty`` unless set explicitly."""
        value = getattr(self, name)
        if value is not None:
            return float(value)
        d = self.difficulty
        derived = {
            # 0.2 at the default difficulty. Retinex + XQDA is nearly blind to camera casts while
            # CNNs trained from scratch on ~1k images are not (README, "illumination sweep"):
            # this knob, more than any other, decides which pipeline wins on synthetic data.
            "illumination": 0.05 + 0.3 * d,
            "viewpoint_change": 0.1 + 0.4 * d,
            "occlusion": 0.05 + 0.25 * d,
            "bad_crop": 0.03 + 0.15 * d,
            "blur": 0.3 + 1.5 * d,
            "noise": 2.0 + 10.0 * d,
            "clutter": 0.2 + 0.8 * d,
            "min_jpeg_quality": 90 - 40 * d,
        }
        return derived[name]

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.name in _KNOBS:
                continue
            wanted = numbers.Real if field.type.startswith("float") else numbers.Integral
            if not isinstance(value, wanted) or isinstance(value, bool):
                kind = "a number" if wanted is numbers.Real else "an integer"
                raise ValueError(f"{field.name} must be {kind}, got {value!r}")
        for name in ("num_test_ids", "num_cameras", "height", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_distractors", "num_junk", "stream"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_train_ids < 2:
            raise ValueError(f"num_train_ids must be >= 2, got {self.num_train_ids}")
        if self.num_train_ids + self.num_test_ids + self.num_distractors > 9999:
            raise ValueError(
                "ids are 4-digit in Market-1501 names: num_train_ids + num_test_ids + "
                "num_distractors must be <= 9999"
            )
        if self.num_cameras > 9:
            raise ValueError(
                f"num_cameras must be <= 9 (one digit in names), got {self.num_cameras}"
            )
        if not 2 <= self.min_cameras_per_id <= self.max_cameras_per_id <= self.num_cameras:
            raise ValueError(
                "need 2 <= min_cameras_per_id <= max_cameras_per_id <= num_cameras, got "
                f"{self.min_cameras_per_id}, {self.max_cameras_per_id}, {self.num_cameras}"
            )
        if not 1 <= self.min_images_per_camera <= self.max_images_per_camera:
            raise ValueError(
                "need 1 <= min_images_per_camera <= max_images_per_camera, got "
                f"{self.min_images_per_camera}, {self.max_images_per_camera}"
            )
        most = (
            (self.num_train_ids + self.num_test_ids)
            * self.max_cameras_per_id
            * (self.max_images_per_camera + 1)
            + self.num_distractors
            + self.num_junk
        )
        if most > 999_999:
            raise ValueError(f"frame numbers are 6-digit: at most 999999 images, up to {most}")
        if self.height < 32 or self.width < 16:
            raise ValueError(
                f"height x width must be at least 32x16, got {self.height}x{self.width}"
            )
        if not 2 <= self.palette_size <= len(PALETTE):
            raise ValueError(
                f"palette_size must be in [2, {len(PALETTE)}], got {self.palette_size}"
            )
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"difficulty must be in [0, 1], got {self.difficulty}")
        for name in _KNOBS:
            value = self.knob(name)
            if name in _PROBABILITIES and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability: must be in [0, 1], got {value}")
            if name == "min_jpeg_quality" and not 10 <= value <= 95:
                raise ValueError(f"min_jpeg_quality must be in [10, 95], got {value}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")


PRESETS: dict[str, SyntheticConfig] = {
    # For tests: a couple of hundred images, generated in about a second.
    "small": SyntheticConfig(
        num_train_ids=12, num_test_ids=10, num_distractors=6, num_junk=4, max_images_per_camera=2
    ),
    "default": SyntheticConfig(),
    # Market-1501-sized identity counts (751 training ids), fewer images per identity.
    "large": SyntheticConfig(
        num_train_ids=751,
        num_test_ids=750,
        num_distractors=2000,
        num_junk=1000,
        max_images_per_camera=5,
    ),
    # Pretraining set for the CNNs (``make pretrain``): many identities, each seen by every
    # camera once, drawn from their own random stream (see ``stream``), so no identity, camera
    # or image of any study dataset recurs in it. A small test split checks the pretraining.
    "pretrain": SyntheticConfig(
        num_train_ids=2000,
        num_test_ids=100,
        min_cameras_per_id=6,
        max_cameras_per_id=6,
        min_images_per_camera=1,
        max_images_per_camera=1,
        num_distractors=0,
        num_junk=0,
        stream=1,
    ),
}


class NotSyntheticDatasetError(FileExistsError, DatasetError):
    """The folder exists and is not a synthetic dataset written by this generator.

    A :class:`~data.layouts.DatasetError` (so a ``ValueError``: command lines report it as a
    clear error) and, as before, a ``FileExistsError``.
    """


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


# ---------------------------------------------------------------------------------------------
# Planning: which images exist, in which split (cheap: no drawing)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedImage:
    """One image of the dataset before it is drawn.

    Attributes
    ----------
    split : str
        ``"train"``, ``"query"`` or ``"gallery"``.
    kind : str
        ``"person"`` (train or test identity), ``"distractor"`` (id 0000) or ``"junk"`` (id -1).
    number : int
        The identity number that seeds the drawing (person ids are 1..num_train_ids for training,
        then the test ids; distractors continue after them), or the junk box number.
    camera : int
        0-based camera, or -1 for junk (drawn together with the image).
    k : int
        Index of the image among this identity's images in this camera (0 is the query).
    """

    split: str
    kind: str
    number: int
    camera: int
    k: int

    @property
    def pid(self) -> int:
        """The id written in the file name."""
        return {"person": self.number, "distractor": 0, "junk": -1}[self.kind]


def plan(config: SyntheticConfig, seed: int = 0) -> list[PlannedImage]:
    """Every image of the dataset, in file-writing order (the order sets the frame numbers).

    Parameters
    ----------
    config : SyntheticConfig
    seed : int

    Returns
    -------
    list of PlannedImage
    """
    items: list[PlannedImage] = []
    total_people = config.num_train_ids + config.num_test_ids
    for pid in range(1, total_people + 1):
        id_rng = config.rng(seed, 1, pid)
        draw_identity(id_rng, config.palette_size)  # the identity's first draws: keep in step
        n_cams = int(id_rng.integers(config.min_cameras_per_id, config.max_cameras_per_id + 1))
        cam_ids = sorted(
            int(c) for c in id_rng.choice(config.num_cameras, size=n_cams, replace=False)
        )
        is_train = pid <= config.num_train_ids
        for cam_id in cam_ids:
            n_images = int(
                id_rng.integers(config.min_images_per_camera, config.max_images_per_camera + 1)
            )
            if not is_train:
                n_images += 1  # one more for the query, so the gallery keeps as many as training
            for k in range(n_images):
                split = "train" if is_train else ("query" if k == 0 else "gallery")
                items.append(PlannedImage(split, "person", pid, cam_id, k))
    for d in range(config.num_distractors):
        # Other people who never appear as queries: id 0000, one image each.
        pid = total_people + 1 + d
        cam_id = int(config.rng(seed, 6, pid).integers(config.num_cameras))
        items.append(PlannedImage("gallery", "distractor", pid, cam_id, 0))
    items.extend(PlannedImage("gallery", "junk", j, -1, 0) for j in range(config.num_junk))
    return items


def _counts(config: SyntheticConfig, items: list[PlannedImage]) -> dict[str, int]:
    def count(split: str | None = None, kind: str | None = None) -> int:
        return sum(
            (split is None or it.split == split) and (kind is None or it.kind == kind)
            for it in items
        )

    return {
        "train_images": count("train"),
        "train_ids": config.num_train_ids,
        "query": count("query"),
        "gallery": count("gallery"),
        "test_ids": config.num_test_ids,
        "distractors": count(kind="distractor"),
        "junk": count(kind="junk"),
    }


def count_images(config: SyntheticConfig | None = None, seed: int = 0) -> dict[str, int]:
    """Image counts of the dataset ``generate`` would write, without drawing anything.

    Returns
    -------
    dict
        ``train_images``, ``train_ids``, ``query``, ``gallery`` (distractors and junk included),
        ``test_ids``, ``distractors``, ``junk``.
    """
    config = config or SyntheticConfig()
    config.validate()
    _check_seed(seed)
    return _counts(config, plan(config, seed))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _name(pid: int, cam: int, frame: int, rng: np.random.Generator) -> str:
    pid_part = "-1" if pid == -1 else f"{pid:04d}"
    sequence, box = int(rng.integers(1, 7)), int(rng.integers(1, 9))
    return f"{pid_part}_c{cam + 1}s{sequence}_{frame:06d}_{box:02d}.jpg"


def _write_all(root: Path, seed: int, config: SyntheticConfig) -> dict[str, int]:
    folders = {split: root / name for split, name in SPLIT_DIRS.items()}
    for folder in folders.values():
        folder.mkdir()
    cams = [draw_camera(config.rng(seed, 3, c), config) for c in range(config.num_cameras)]
    items = plan(config, seed)
    ident, ident_number = None, None
    for frame, item in enumerate(items, start=1):
        if item.kind == "junk":
            data, cam_id, rng = junk_image(seed, item.number, cams, config)
        else:
            if item.number != ident_number:  # items of one identity are consecutive
                rng_id = config.rng(seed, 1, item.number)
                ident, ident_number = draw_identity(rng_id, config.palette_size), item.number
            cam_id = item.camera
            data, rng = person_image(seed, item.number, ident, cam_id, cams[cam_id], item.k, config)
        (folders[item.split] / _name(item.pid, cam_id, frame, rng)).write_bytes(data)
    return _counts(config, items)


def _is_default(seed: int, config: SyntheticConfig) -> bool:
    return seed == 0 and config == SyntheticConfig()


@contextlib.contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    """Serialise generators (and checks) of one folder across processes: parallel jobs of a
    study may all ask for the dataset at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, generation is still atomic
        yield
        return
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _writing(out_dir: Path) -> Iterator[None]:
    """Filesystem errors while writing ``out_dir`` (a read-only folder, a full disk) as one
    :class:`OutputError` naming it."""
    try:
        yield
    except (OutputError, FileExistsError):  # FileExistsError: NotSyntheticDatasetError
        raise
    except OSError as err:
        raise OutputError(f"cannot write {out_dir}: {err.strerror or err}") from err


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to delete a folder that this generator did not write.

    Raises
    ------
    NotSyntheticDatasetError
        ``out_dir`` is a file, or a non-empty folder without the generator's manifest.
    """
    if not out_dir.exists():
        return
    advice = (
        "Choose another folder (--data-root for --dataset synthetic, --out for "
        "python -m data.synthetic), or remove it yourself if it may be replaced."
    )
    if not out_dir.is_dir():
        raise NotSyntheticDatasetError(
            f"{out_dir} exists and is not a folder, so it is not a synthetic dataset made by "
            f"this generator; refusing to replace it. {advice}"
        )
    if (out_dir / MANIFEST).is_file():
        return  # ours (possibly an older version or other settings)
    found = []
    for path in out_dir.rglob("*"):
        if path.is_file():
            found.append(path)
            if len(found) > 3:
                break
    if found:
        shown = ", ".join(str(p.relative_to(out_dir)) for p in found[:3])
        hint = ""
        if all((out_dir / d).is_dir() for d in SPLIT_DIRS.values()):
            hint = (
                " It looks like a dataset in the Market-1501 layout: to use it as it is, pass "
                "--dataset market1501 (or dukemtmcreid, generic) with --data-root "
                f"{out_dir}."
            )
        raise NotSyntheticDatasetError(
            f"{out_dir} exists and is not a synthetic dataset made by this generator (it has no "
            f"{MANIFEST}; files such as {shown}); refusing to delete or overwrite it. "
            f"{advice}{hint}"
        )


def _generate_locked(out_dir: Path, seed: int, config: SyntheticConfig) -> Path:
    _check_replaceable(out_dir)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is an ordinary folder
        counts = _write_all(tmp, seed, config)
        manifest = {
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "config": dataclasses.asdict(config),
            "default_settings": _is_default(seed, config),
            "counts": counts,
        }
        # The manifest is written last: a folder with a manifest is complete.
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out_dir.exists():
            # Move the old folder aside first, so readers never see a half-deleted dataset.
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old)
            try:
                os.replace(tmp, out_dir)
            except OSError:
                os.replace(old, out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "synthetic dataset written to %s in %.1f s: %s",
        out_dir,
        time.perf_counter() - start,
        counts,
    )
    return out_dir


def generate(out_dir: Path | str, *, seed: int = 0, config: SyntheticConfig | None = None) -> Path:
    """Write the synthetic dataset to ``out_dir`` (replacing an older one) and return it.

    The images are written to a temporary folder next to ``out_dir``, the manifest (generator
    version, seed, config, counts) last, and the folder is then renamed into place.

    Parameters
    ----------
    out_dir : path
        Output folder. An existing folder is replaced only if it is empty or holds a dataset
        written by this generator (it has a manifest).
    seed : int
        Non-negative seed; the same seed and config give byte-identical files.
    config : SyntheticConfig, optional
        Sizes and difficulty (default: ``SyntheticConfig()``).

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    ValueError
        Bad seed or config (the message names the field).
    NotSyntheticDatasetError
        (a ValueError and a FileExistsError) ``out_dir`` exists and was not written by this
        generator.
    OutputError
        ``out_dir`` cannot be written (a read-only folder, a full disk); nothing is left there.
    """
    config = config or SyntheticConfig()
    _check_seed(seed)
    config.validate()
    out_dir = Path(out_dir)
    with _writing(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with _folder_lock(out_dir):
            return _generate_locked(out_dir, int(seed), config)


def read_manifest(root: Path | str) -> dict | None:
    """The manifest of a generated folder, or None if it is missing or unreadable."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _config_from_manifest(manifest: dict) -> SyntheticConfig | None:
    names = {f.name for f in dataclasses.fields(SyntheticConfig)}
    saved = manifest.get("config")
    if not isinstance(saved, dict):
        return None
    try:
        config = SyntheticConfig(**{k: v for k, v in saved.items() if k in names})
        config.validate()
    except (TypeError, ValueError):
        return None
    return config


def _is_complete(root: Path, manifest: dict) -> bool:
    """All files the manifest counts are there (someone may have deleted or added images)."""
    counts = manifest.get("counts") or {}
    expected = {
        "train": counts.get("train_images"),
        "query": counts.get("query"),
        "gallery": counts.get("gallery"),
    }
    for split, name in SPLIT_DIRS.items():
        try:
            with os.scandir(root / name) as entries:
                found = sum(entry.name.endswith(".jpg") for entry in entries)
        except OSError:
            return False
        if found != expected[split]:
            return False
    return True


def _matches(manifest: dict | None, seed: int, config: SyntheticConfig) -> bool:
    if manifest is None or manifest.get("generator_version") != GENERATOR_VERSION:
        return False
    if manifest.get("seed") != seed:
        return False
    saved = manifest.get("config")
    if not isinstance(saved, dict):
        return False
    # A field added after the folder was written takes its default, which reproduces the old
    # drawing (drawing changes bump GENERATOR_VERSION instead).
    return all(
        saved.get(f.name, f.default) == getattr(config, f.name)
        for f in dataclasses.fields(SyntheticConfig)
    )


def ensure_synthetic(
    root: Path | str | None = None,
    *,
    seed: int | None = None,
    config: SyntheticConfig | None = None,
) -> Path:
    """Return ``root`` holding a complete synthetic dataset, generating it only if needed.

    Parameters
    ----------
    root : path, optional
        Dataset folder (default ``datasets/synthetic`` under the repository, see
        :mod:`data.paths`).
    seed, config : optional
        The wanted settings. A folder is reused when its manifest shows the current generator
        version, these settings and all its images. When both are left out, a dataset that was
        generated on purpose with other settings (``python -m data.synthetic --difficulty 0.7
        --out DIR``) is reused as it is (regenerated with its own settings if the generator
        changed); otherwise the default settings (seed 0, ``SyntheticConfig()``) are wanted.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    NotSyntheticDatasetError
        (a ValueError and a FileExistsError) ``root`` exists and is neither empty nor written
        by this generator (a Market-1501 folder, say); nothing is written next to it.
    """
    if root is None:
        root = paths.datasets_dir() / "synthetic"
    root = Path(root)
    if seed is not None:
        _check_seed(seed)
    if config is not None:
        config.validate()

    def wanted(manifest: dict | None) -> tuple[int, SyntheticConfig]:
        # Settings chosen on purpose (not the defaults) are kept when none are asked for.
        custom = manifest is not None and not manifest.get("default_settings", True)
        if seed is None and config is None and custom:
            saved_config = _config_from_manifest(manifest)
            saved_seed = manifest.get("seed")
            if saved_config is not None and isinstance(saved_seed, int) and saved_seed >= 0:
                return saved_seed, saved_config
        return (0 if seed is None else int(seed)), (config or SyntheticConfig())

    def up_to_date() -> tuple[bool, int, SyntheticConfig]:
        manifest = read_manifest(root)
        want_seed, want_config = wanted(manifest)
        ok = _matches(manifest, want_seed, want_config) and _is_complete(root, manifest)
        return ok, want_seed, want_config

    if up_to_date()[0]:
        return root
    # Someone else's folder: say so before taking the lock (which writes a file next to it).
    _check_replaceable(root)
    with _writing(root):
        root.parent.mkdir(parents=True, exist_ok=True)
        with _folder_lock(root):
            ok, want_seed, want_config = up_to_date()  # another process may have just written it
            if ok:
                return root
            if root.exists():
                log.warning("%s is incomplete or has other settings: regenerating it", root)
            print(
                f"generating the synthetic dataset into {root} (seed {want_seed}) ...",
                file=sys.stderr,
            )
            return _generate_locked(root, want_seed, want_config)


# ---------------------------------------------------------------------------------------------
# Contact sheet
# ---------------------------------------------------------------------------------------------
def contact_sheet(
    out_png: Path | str,
    *,
    seed: int = 0,
    config: SyntheticConfig | None = None,
    num_ids: int = 8,
    per_camera: int = 1,
) -> Path:
    """A PNG grid: one row per identity, its images in every camera (labelled c1..c6).

    Parameters
    ----------
    out_png : path
        Written atomically; a 256-colour PNG keeps it small enough to commit.
    seed, config
        As for :func:`generate`; identities 1..num_ids are drawn.
    num_ids, per_camera : int
        Rows, and images per camera in each row.

    Returns
    -------
    pathlib.Path
    """
    config = config or SyntheticConfig()
    _check_seed(seed)
    config.validate()
    if num_ids < 1 or per_camera < 1:
        raise ValueError(f"num_ids and per_camera must be >= 1, got {num_ids}, {per_camera}")
    cams = [draw_camera(config.rng(seed, 3, c), config) for c in range(config.num_cameras)]
    h, w, pad = config.height, config.width, 4
    label_h = 14
    cols = config.num_cameras * per_camera
    sheet = np.full((num_ids * (h + label_h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for row, pid in enumerate(range(1, num_ids + 1)):
        ident = draw_identity(config.rng(seed, 1, pid), config.palette_size)
        for cam_id in range(config.num_cameras):
            for k in range(per_camera):
                data, _ = person_image(seed, pid, ident, cam_id, cams[cam_id], k, config)
                img = cv2.cvtColor(
                    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
                )
                y = pad + row * (h + label_h + pad) + label_h
                x = pad + (cam_id * per_camera + k) * (w + pad)
                sheet[y : y + h, x : x + w] = img
                cv2.putText(
                    sheet,
                    f"id{pid} c{cam_id + 1}",
                    (x, y - 3),
                    cv2.FONT_HERSHEY_PLAIN,
                    0.75,
                    (0, 0, 0),
                    1,
                    cv2.LINE_AA,
                )
    out_png = Path(out_png)  # its folder is created by atomic_path (an OutputError if it cannot)
    from PIL import Image  # pillow comes with matplotlib

    # A 256-colour palette keeps the committed PNG small (about 150 kB instead of 800 kB).
    palette = Image.fromarray(sheet).quantize(colors=256, dither=Image.Dither.NONE)
    with atomic_path(out_png, suffix=".tmp") as tmp:
        palette.save(tmp, format="PNG", optimize=True)
    return out_png


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _naming_flags(message: str) -> str:
    """A :meth:`SyntheticConfig.validate` message led by the flags of the fields it names."""
    flags = [
        "--" + f.name.replace("_", "-")
        for f in dataclasses.fields(SyntheticConfig)
        if re.search(rf"\b{f.name}\b", message)
    ]
    return f"{', '.join(flags)}: {message}" if flags else message


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``python -m data.synthetic``: write (or check) the dataset, count it, or draw a sheet."""
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, help="output folder (default: datasets/synthetic)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="random seed, >= 0 (default 0)"
    )
    parser.add_argument("--preset", default="default", help=f"one of {sorted(PRESETS)}")
    for field in dataclasses.fields(SyntheticConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = float if field.type.startswith("float") else int
        parser.add_argument(flag, type=kind, default=None, help=f"override {field.name}")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the image counts, write nothing"
    )
    parser.add_argument("--contact-sheet", type=Path, help="write a contact sheet PNG and exit")
    parser.add_argument(
        "--force", action="store_true", help="regenerate even if the folder is up to date"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.preset not in PRESETS:
        parser.error(f"--preset: unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(SyntheticConfig)
        if getattr(args, f.name) is not None
    }
    config = dataclasses.replace(PRESETS[args.preset], **overrides)
    try:
        _check_seed(args.seed)
        config.validate()
    except ValueError as err:
        parser.error(_naming_flags(str(err)))
    if args.dry_run:
        print(json.dumps(count_images(config, args.seed), indent=2))
        return 0
    if args.contact_sheet:
        sheet = contact_sheet(args.contact_sheet, seed=args.seed, config=config)
        print(f"contact sheet written to {sheet}")
        return 0
    if args.out is None:
        args.out = paths.datasets_dir() / "synthetic"
    start = time.perf_counter()
    try:
        if args.force:
            generate(args.out, seed=args.seed, config=config)
        else:
            ensure_synthetic(args.out, seed=args.seed, config=config)
    except FileExistsError as err:
        parser.error(str(err))
    counts = read_manifest(args.out)["counts"]
    print(f"synthetic dataset ready at {args.out} ({time.perf_counter() - start:.1f} s): {counts}")
    return 0


# ---------------------------------------------------------------------------------------------
# The synthetic layouts: generated on first use, then read by the Market-1501 code path
# ---------------------------------------------------------------------------------------------
@register_layout("synthetic", default_root=lambda: paths.datasets_dir() / "synthetic")
def _load_synthetic(root: Path) -> ReidDataset:
    ensure_synthetic(root)
    return read_three_folders("synthetic", root, parse_market_name)


@register_layout(
    "synthetic_pretrain", default_root=lambda: paths.datasets_dir() / "synthetic_pretrain"
)
def _load_synthetic_pretrain(root: Path) -> ReidDataset:
    # The CNNs' pretraining set (``make pretrain``): the "pretrain" preset, generated on first use,
    # with identities drawn from their own random stream (disjoint from every study dataset).
    ensure_synthetic(root, seed=0, config=PRESETS["pretrain"])
    return read_three_folders("synthetic_pretrain", root, parse_market_name)


if __name__ == "__main__":
    sys.exit(main())
