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
  or badly cropped.

One ``difficulty`` knob (0..1) scales all nuisances; each is also exposed on its own in
:class:`SyntheticConfig`. Generation is deterministic: every identity, camera and image draws
from its own generator seeded by ``(seed, kind, id, camera, index)``, so the same seed and config
give byte-identical files.

Usage::

    python -m data.synthetic --out datasets/synthetic --seed 0 [--preset small|default|large]
    python -m data.synthetic --contact-sheet docs/synthetic_contact_sheet.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: Bumped whenever the drawing changes, so cached datasets are regenerated.
GENERATOR_VERSION = 3
MANIFEST = "synthetic_manifest.json"

# A shared garment palette (RGB): colour alone cannot identify a person.
PALETTE = np.array(
    [
        (200, 30, 35),
        (30, 60, 160),
        (35, 120, 50),
        (230, 200, 40),
        (240, 240, 235),
        (25, 25, 28),
        (120, 120, 125),
        (110, 70, 40),
        (230, 120, 30),
        (120, 50, 140),
        (100, 170, 220),
        (230, 150, 170),
        (60, 90, 60),
        (190, 170, 130),
    ],
    dtype=np.float32,
)
HAIR = np.array(
    [(20, 15, 10), (70, 45, 25), (160, 120, 60), (120, 120, 120), (40, 25, 20)], np.float32
)
SKIN = np.array([(240, 200, 170), (210, 160, 120), (160, 110, 75), (100, 65, 45)], np.float32)
SHOES = np.array([(20, 20, 20), (235, 235, 235), (110, 70, 40), (60, 60, 120)], np.float32)
TEXTURES = ("plain", "hstripes", "vstripes", "checks", "print")


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and difficulty knobs of the synthetic dataset.

    Nuisance knobs left at ``None`` follow ``difficulty`` (0 = clean, 1 = hard).
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
    difficulty: float = 0.5
    illumination: float | None = None  # colour cast / gain / gamma spread between cameras
    viewpoint_change: float | None = None  # probability a view differs from the camera's usual one
    occlusion: float | None = None  # probability of an occluder
    bad_crop: float | None = None  # probability of a badly cropped box
    blur: float | None = None  # maximum Gaussian blur sigma (pixels)
    noise: float | None = None  # maximum pixel noise std (0-255 scale)
    clutter: float | None = None  # background clutter density
    min_jpeg_quality: int | None = None

    def knob(self, name: str) -> float:
        """The value of a nuisance knob, derived from ``difficulty`` unless set explicitly."""
        value = getattr(self, name)
        if value is not None:
            return float(value)
        d = self.difficulty
        derived = {
            "illumination": 0.15 + 0.5 * d,
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
        positive = ["num_train_ids", "num_test_ids", "num_cameras", "height", "width"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ["num_distractors", "num_junk"]:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_train_ids < 2:
            raise ValueError(f"num_train_ids must be >= 2, got {self.num_train_ids}")
        if self.num_train_ids + self.num_test_ids + self.num_distractors > 9999:
            raise ValueError("ids are 4-digit in Market-1501 names: at most 9999 identities")
        if not 2 <= self.min_cameras_per_id <= self.max_cameras_per_id <= self.num_cameras:
            raise ValueError(
                "need 2 <= min_cameras_per_id <= max_cameras_per_id <= num_cameras, got "
                f"{self.min_cameras_per_id}, {self.max_cameras_per_id}, {self.num_cameras}"
            )
        if self.num_cameras > 9:
            raise ValueError(
                f"num_cameras must be <= 9 (one digit in names), got {self.num_cameras}"
            )
        if not 1 <= self.min_images_per_camera <= self.max_images_per_camera:
            raise ValueError("need 1 <= min_images_per_camera <= max_images_per_camera")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"difficulty must be in [0, 1], got {self.difficulty}")
        if self.height < 32 or self.width < 16:
            raise ValueError(f"image size must be at least 32x16, got {self.height}x{self.width}")


PRESETS: dict[str, SyntheticConfig] = {
    "small": SyntheticConfig(
        num_train_ids=12, num_test_ids=10, num_distractors=6, num_junk=4, max_images_per_camera=2
    ),
    "default": SyntheticConfig(),
    "large": SyntheticConfig(
        num_train_ids=751,
        num_test_ids=750,
        num_distractors=2000,
        num_junk=1000,
        max_images_per_camera=5,
    ),
}


# ---------------------------------------------------------------------------------------------
# Appearance
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """The persistent look of one person."""

    height: float  # fraction of the box height the person spans
    width: float  # shoulder width as a fraction of the box width
    leg_ratio: float  # legs / (legs + torso)
    upper: np.ndarray
    lower: np.ndarray
    texture: str
    texture_colour: np.ndarray
    texture_period: int
    long_sleeves: bool
    skirt: bool
    hair: np.ndarray
    long_hair: bool
    skin: np.ndarray
    shoes: np.ndarray
    bag: str  # "none", "backpack", "left", "right"
    bag_colour: np.ndarray


def draw_identity(rng: np.random.Generator) -> Identity:
    upper_i = int(rng.integers(len(PALETTE)))
    lower_i = int(rng.integers(len(PALETTE)))
    tex_i = int(rng.integers(len(PALETTE) - 1))
    tex_i += tex_i >= upper_i  # a texture colour different from the garment
    return Identity(
        height=float(rng.uniform(0.78, 0.92)),
        width=float(rng.uniform(0.42, 0.62)),
        leg_ratio=float(rng.uniform(0.47, 0.58)),
        upper=PALETTE[upper_i],
        lower=PALETTE[lower_i],
        texture=TEXTURES[int(rng.choice(len(TEXTURES), p=[0.3, 0.2, 0.15, 0.15, 0.2]))],
        texture_colour=PALETTE[tex_i],
        texture_period=int(rng.integers(4, 9)),
        long_sleeves=bool(rng.random() < 0.6),
        skirt=bool(rng.random() < 0.2),
        hair=HAIR[int(rng.integers(len(HAIR)))],
        long_hair=bool(rng.random() < 0.35),
        skin=SKIN[int(rng.integers(len(SKIN)))],
        shoes=SHOES[int(rng.integers(len(SHOES)))],
        bag=("none", "backpack", "left", "right")[int(rng.choice(4, p=[0.45, 0.25, 0.15, 0.15]))],
        bag_colour=PALETTE[int(rng.integers(len(PALETTE)))],
    )


@dataclass(frozen=True)
class Camera:
    """How one camera sees everybody."""

    gain: np.ndarray  # per-channel colour cast
    gamma: float
    brightness: float
    usual_view: str  # "front", "back", "side"
    background: np.ndarray
    scale: float
    blur: float
    noise: float
    jpeg_quality: int


def draw_camera(rng: np.random.Generator, config: SyntheticConfig) -> Camera:
    illum = config.knob("illumination")
    return Camera(
        gain=np.clip(1.0 + rng.normal(0.0, 0.35 * illum, 3), 0.55, 1.5).astype(np.float32),
        gamma=float(np.exp(rng.normal(0.0, 0.35 * illum))),
        brightness=float(np.exp(rng.normal(0.0, 0.3 * illum))),
        usual_view=("front", "back", "side")[int(rng.integers(3))],
        # Urban, mostly desaturated scenes: a grey level plus a weak tint.
        background=(rng.uniform(60, 190) + rng.normal(0, 25, 3)).clip(20, 235).astype(np.float32),
        scale=float(rng.uniform(0.88, 1.0)),
        blur=float(rng.uniform(0.0, config.knob("blur"))),
        noise=float(rng.uniform(0.3, 1.0) * config.knob("noise")),
        jpeg_quality=int(rng.uniform(config.knob("min_jpeg_quality"), 95)),
    )


# ---------------------------------------------------------------------------------------------
# Drawing (at 2x resolution, then area-downsampled for anti-aliasing)
# ---------------------------------------------------------------------------------------------
SUPER = 2


def _c(colour: np.ndarray) -> tuple[float, float, float]:
    return (float(colour[0]), float(colour[1]), float(colour[2]))


def _background(
    rng: np.random.Generator, cam: Camera, h: int, w: int, clutter: float
) -> np.ndarray:
    base = cam.background * rng.uniform(0.85, 1.15, 3)
    ramp = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), h, dtype=np.float32)
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:] = base[None, None, :] * ramp[:, None, None]
    # Ground: a floor band with its own tone.
    floor = int(h * rng.uniform(0.7, 0.85))
    canvas[floor:] *= rng.uniform(0.7, 1.1)
    for _ in range(int(rng.poisson(6 * clutter))):
        colour = rng.uniform(20, 235, 3)
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(
                canvas,
                (x0, y0),
                (x0 + int(rng.integers(6, w // 2)), y0 + int(rng.integers(6, h // 3))),
                _c(colour),
                -1,
            )
        elif kind == 1:
            cv2.line(
                canvas,
                (x0, 0),
                (x0 + int(rng.integers(-10, 10)), h),
                _c(colour),
                int(rng.integers(2, 8)),
            )
        else:
            cv2.circle(canvas, (x0, y0), int(rng.integers(4, 18)), _c(colour), -1)
    return canvas


def _texture(
    ident: Identity, mask: np.ndarray, view: str, box: tuple[int, int, int, int], canvas: np.ndarray
) -> None:
    """Fill the garment mask with the identity's texture (the print only from the front)."""
    x0, y0, x1, y1 = box
    period = ident.texture_period * SUPER
    ys, xs = np.mgrid[0 : canvas.shape[0], 0 : canvas.shape[1]]
    if ident.texture == "hstripes":
        pattern = ((ys - y0) // period) % 2 == 1
    elif ident.texture == "vstripes":
        pattern = ((xs - x0) // period) % 2 == 1
    elif ident.texture == "checks":
        pattern = (((ys - y0) // period) + ((xs - x0) // period)) % 2 == 1
    elif ident.texture == "print" and view == "front":
        cx, cy = (x0 + x1) // 2, y0 + (y1 - y0) * 2 // 5
        r = max(2, (x1 - x0) // 5)
        pattern = (np.abs(xs - cx) < r) & (np.abs(ys - cy) < r)
    else:
        return
    canvas[mask & pattern] = ident.texture_colour


def render_person(
    ident: Identity, cam: Camera, rng: np.random.Generator, config: SyntheticConfig, view: str
) -> np.ndarray:
    """One RGB float32 crop (height x width) of ``ident`` as seen by ``cam``."""
    h, w = config.height * SUPER, config.width * SUPER
    canvas = _background(rng, cam, h, w, config.knob("clutter"))
    scale = cam.scale * rng.uniform(0.94, 1.04)
    person_h = ident.height * h * scale
    top = (h - person_h) / 2 + rng.normal(0, 0.03 * h)
    cx = w / 2 + rng.normal(0, 0.04 * w)
    side = view == "side"
    shoulder = ident.width * w * scale * (0.62 if side else 1.0)
    head_r = person_h * 0.075
    head_cy = top + head_r
    neck = head_cy + head_r
    body = person_h - 2 * head_r
    waist = neck + body * (1 - ident.leg_ratio)
    feet = top + person_h
    hip = shoulder * 0.8

    # Legs (trousers or skirt + bare legs), with a stride that varies per image.
    stride = rng.uniform(-0.18, 0.18) * shoulder
    leg_w = max(3, int(hip * 0.36))
    for sign in (-1, 1):
        x_top = cx + sign * hip * 0.25
        x_bot = x_top + sign * stride
        leg_colour = ident.skin if ident.skirt else ident.lower
        cv2.line(
            canvas,
            (int(x_top), int(waist)),
            (int(x_bot), int(feet - head_r * 0.5)),
            _c(leg_colour),
            leg_w,
        )
        cv2.ellipse(
            canvas,
            (int(x_bot + sign * leg_w * 0.3), int(feet - head_r * 0.35)),
            (int(leg_w * 0.8), int(head_r * 0.4)),
            0,
            0,
            360,
            _c(ident.shoes),
            -1,
        )
    if ident.skirt:
        skirt_bottom = waist + (feet - waist) * 0.5
        pts = np.array(
            [
                [cx - hip / 2, waist],
                [cx + hip / 2, waist],
                [cx + hip * 0.75, skirt_bottom],
                [cx - hip * 0.75, skirt_bottom],
            ],
            np.int32,
        )
        cv2.fillPoly(canvas, [pts], _c(ident.lower))

    # Backpack behind the torso when seen from the front / side.
    if ident.bag == "backpack" and view != "back":
        off = shoulder * (0.45 if side else 0.0)
        cv2.rectangle(
            canvas,
            (int(cx - shoulder * 0.45 - off), int(neck + body * 0.05)),
            (int(cx + shoulder * 0.45 - off), int(waist)),
            _c(ident.bag_colour),
            -1,
        )

    # Torso with texture.
    torso_mask = np.zeros((h, w), np.uint8)
    pts = np.array(
        [
            [cx - shoulder / 2, neck],
            [cx + shoulder / 2, neck],
            [cx + hip / 2, waist + body * 0.04],
            [cx - hip / 2, waist + body * 0.04],
        ],
        np.int32,
    )
    cv2.fillPoly(torso_mask, [pts], 1)
    mask = torso_mask.astype(bool)
    canvas[mask] = ident.upper
    _texture(
        ident,
        mask,
        view,
        (int(cx - shoulder / 2), int(neck), int(cx + shoulder / 2), int(waist)),
        canvas,
    )

    # Arms: sleeves in the garment colour, hands in skin tone; swing varies per image.
    arm_w = max(3, int(shoulder * 0.2))
    for sign in (-1, 1) if not side else (1,):
        swing = rng.uniform(-0.25, 0.25) * body
        x_sh = cx + sign * (shoulder / 2 - arm_w / 2) * (0.2 if side else 1.0)
        x_hand = x_sh + sign * shoulder * 0.12 + swing * (0.6 if side else 0.15)
        y_hand = waist + body * 0.05
        elbow = ((x_sh + x_hand) / 2, (neck + y_hand) / 2)
        sleeve_end = (x_hand, y_hand) if ident.long_sleeves else elbow
        cv2.line(
            canvas,
            (int(x_sh), int(neck + arm_w / 2)),
            (int(sleeve_end[0]), int(sleeve_end[1])),
            _c(ident.upper),
            arm_w,
        )
        if not ident.long_sleeves:
            cv2.line(
                canvas,
                (int(elbow[0]), int(elbow[1])),
                (int(x_hand), int(y_hand)),
                _c(ident.skin),
                max(2, arm_w - 2),
            )
        cv2.circle(canvas, (int(x_hand), int(y_hand)), max(2, arm_w // 2), _c(ident.skin), -1)

    # Shoulder bag and its strap; backpack on the back view.
    if ident.bag in ("left", "right"):
        sign = -1 if ident.bag == "left" else 1
        if view == "back":
            sign = -sign
        bx = cx + sign * (shoulder / 2 + arm_w * 0.4)
        cv2.line(
            canvas,
            (int(cx - sign * shoulder * 0.3), int(neck)),
            (int(bx), int(waist - body * 0.05)),
            _c(ident.bag_colour * 0.7),
            max(2, arm_w // 3),
        )
        cv2.rectangle(
            canvas,
            (int(bx - arm_w), int(waist - body * 0.1)),
            (int(bx + arm_w), int(waist + body * 0.12)),
            _c(ident.bag_colour),
            -1,
        )
    if ident.bag == "backpack" and view == "back":
        cv2.rectangle(
            canvas,
            (int(cx - shoulder * 0.35), int(neck + body * 0.08)),
            (int(cx + shoulder * 0.35), int(waist - body * 0.05)),
            _c(ident.bag_colour),
            -1,
        )

    # Head: skin face from the front/side, hair from the back; long hair falls on the shoulders.
    cv2.ellipse(
        canvas,
        (int(cx), int(head_cy)),
        (int(head_r * 0.85), int(head_r)),
        0,
        0,
        360,
        _c(ident.skin),
        -1,
    )
    hair_h = head_r * (2.6 if ident.long_hair else 1.0)
    if view == "back":
        cv2.ellipse(
            canvas,
            (int(cx), int(head_cy + (hair_h - head_r) / 2)),
            (int(head_r * 0.95), int(hair_h / 2 + head_r / 2)),
            0,
            0,
            360,
            _c(ident.hair),
            -1,
        )
    else:
        cv2.ellipse(
            canvas,
            (int(cx), int(head_cy - head_r * 0.2)),
            (int(head_r * 0.95), int(head_r * 0.9)),
            0,
            180,
            360,
            _c(ident.hair),
            -1,
        )
        if ident.long_hair:
            for sign in (-1, 1):
                cv2.line(
                    canvas,
                    (int(cx + sign * head_r * 0.8), int(head_cy)),
                    (int(cx + sign * head_r * 0.9), int(head_cy + hair_h * 0.7)),
                    _c(ident.hair),
                    max(2, int(head_r * 0.35)),
                )

    # Occluders: a pole, a car-like block at the bottom, or another pedestrian's shoulder.
    if rng.random() < config.knob("occlusion"):
        colour = _c(rng.uniform(20, 235, 3))
        kind = rng.integers(3)
        if kind == 0:
            x = int(rng.uniform(0.1, 0.9) * w)
            cv2.rectangle(canvas, (x, 0), (x + int(rng.uniform(0.08, 0.18) * w), h), colour, -1)
        elif kind == 1:
            y = int(rng.uniform(0.6, 0.8) * h)
            cv2.rectangle(canvas, (0, y), (w, h), colour, -1)
        else:
            x = int(rng.choice([-0.1, 0.9]) * w)
            cv2.ellipse(
                canvas, (x, int(h * 0.55)), (int(w * 0.25), int(h * 0.35)), 0, 0, 360, colour, -1
            )

    # Badly cropped boxes: the detector cut the head or the feet, or drifted sideways.
    if rng.random() < config.knob("bad_crop"):
        dy = int(rng.uniform(0.1, 0.25) * h) * int(rng.choice([-1, 1]))
        dx = int(rng.uniform(-0.2, 0.2) * w)
        canvas = cv2.warpAffine(
            canvas, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE
        )
    return canvas


def apply_camera(
    canvas: np.ndarray, cam: Camera, rng: np.random.Generator, config: SyntheticConfig
) -> np.ndarray:
    """Illumination, blur, noise and downsampling to the final uint8 crop."""
    image = canvas / 255.0
    image = image * cam.gain[None, None, :] * cam.brightness * rng.uniform(0.9, 1.1)
    image = np.clip(image, 0.0, 1.0) ** cam.gamma
    image = cv2.resize(image * 255.0, (config.width, config.height), interpolation=cv2.INTER_AREA)
    sigma = cam.blur * rng.uniform(0.5, 1.0)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image = image + rng.normal(0.0, cam.noise, image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _encode(image_rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------
def _view(rng: np.random.Generator, cam: Camera, config: SyntheticConfig) -> str:
    if rng.random() < config.knob("viewpoint_change"):
        return ("front", "back", "side")[int(rng.integers(3))]
    return cam.usual_view


def _name(pid: int, cam: int, frame: int, rng: np.random.Generator) -> str:
    pid_part = "-1" if pid == -1 else f"{pid:04d}"
    sequence, box = int(rng.integers(1, 7)), int(rng.integers(1, 9))
    return f"{pid_part}_c{cam + 1}s{sequence}_{frame:06d}_{box:02d}.jpg"


def _person_image(
    seed: int, pid: int, ident: Identity, cam_id: int, cam: Camera, k: int, config: SyntheticConfig
) -> tuple[bytes, np.random.Generator]:
    rng = np.random.default_rng([seed, 2, pid, cam_id, k])
    view = _view(rng, cam, config)
    canvas = render_person(ident, cam, rng, config, view)
    image = apply_camera(canvas, cam, rng, config)
    quality = int(rng.uniform(cam.jpeg_quality - 5, cam.jpeg_quality + 5))
    return _encode(image, min(max(quality, 10), 98)), rng


def _junk_image(
    seed: int, j: int, cams: list[Camera], config: SyntheticConfig
) -> tuple[bytes, int, np.random.Generator]:
    """A false detection: background only, or a fragment of a body at the border."""
    rng = np.random.default_rng([seed, 4, j])
    cam_id = int(rng.integers(config.num_cameras))
    cam = cams[cam_id]
    h, w = config.height * SUPER, config.width * SUPER
    canvas = _background(rng, cam, h, w, min(1.0, config.knob("clutter") + 0.5))
    if rng.random() < 0.5:
        ident = draw_identity(np.random.default_rng([seed, 5, j]))
        person = render_person(ident, cam, rng, config, "front")
        cut = int(rng.uniform(0.5, 0.8) * h)
        canvas[: h - cut] = person[cut:]
    return _encode(apply_camera(canvas, cam, rng, config), cam.jpeg_quality), cam_id, rng


def generate(out_dir: Path | str, *, seed: int = 0, config: SyntheticConfig | None = None) -> Path:
    """Write the synthetic dataset to ``out_dir`` (replaced atomically) and return it.

    The folder is written next to ``out_dir`` under a temporary name and renamed when complete,
    with a manifest (config, seed, counts, generator version) written last.
    """
    config = config or SyntheticConfig()
    config.validate()
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        counts = _write_all(tmp, seed, config)
        manifest = {
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "config": dataclasses.asdict(config),
            "counts": counts,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
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


def _write_all(root: Path, seed: int, config: SyntheticConfig) -> dict[str, int]:
    folders = {s: root / s for s in ("bounding_box_train", "query", "bounding_box_test")}
    for folder in folders.values():
        folder.mkdir()
    cams = [
        draw_camera(np.random.default_rng([seed, 3, c]), config) for c in range(config.num_cameras)
    ]
    counts = {
        "train_images": 0,
        "train_ids": config.num_train_ids,
        "query": 0,
        "gallery": 0,
        "test_ids": config.num_test_ids,
        "distractors": 0,
        "junk": 0,
    }
    frame = 0
    # Ids 1..num_train for training, then test ids; distractors get id 0000 in names.
    total_people = config.num_train_ids + config.num_test_ids
    for pid in range(1, total_people + 1):
        id_rng = np.random.default_rng([seed, 1, pid])
        ident = draw_identity(id_rng)
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
                data, rng = _person_image(seed, pid, ident, cam_id, cams[cam_id], k, config)
                frame += 1
                if is_train:
                    folder, key = folders["bounding_box_train"], "train_images"
                elif k == 0:
                    folder, key = folders["query"], "query"
                else:
                    folder, key = folders["bounding_box_test"], "gallery"
                (folder / _name(pid, cam_id, frame, rng)).write_bytes(data)
                counts[key] += 1
    for d in range(config.num_distractors):
        # Other people who never appear as queries: id 0000, one image each.
        pid = total_people + 1 + d
        ident = draw_identity(np.random.default_rng([seed, 1, pid]))
        cam_id = int(np.random.default_rng([seed, 6, pid]).integers(config.num_cameras))
        data, rng = _person_image(seed, pid, ident, cam_id, cams[cam_id], 0, config)
        frame += 1
        (folders["bounding_box_test"] / _name(0, cam_id, frame, rng)).write_bytes(data)
        counts["distractors"] += 1
        counts["gallery"] += 1
    for j in range(config.num_junk):
        data, cam_id, rng = _junk_image(seed, j, cams, config)
        frame += 1
        (folders["bounding_box_test"] / _name(-1, cam_id, frame, rng)).write_bytes(data)
        counts["junk"] += 1
        counts["gallery"] += 1
    return counts


def read_manifest(root: Path | str) -> dict | None:
    """The manifest of a generated folder, or None if it is missing or unreadable."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def ensure_synthetic(
    root: Path | str | None = None, *, seed: int = 0, config: SyntheticConfig | None = None
) -> Path:
    """Generate the dataset at ``root`` unless a complete one with the same settings is there."""
    from data.paths import DATASETS_DIR

    root = Path(root) if root is not None else DATASETS_DIR / "synthetic"
    config = config or SyntheticConfig()
    manifest = read_manifest(root)
    wanted = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "config": dataclasses.asdict(config),
    }
    if manifest is not None and all(manifest.get(k) == v for k, v in wanted.items()):
        return root
    if root.exists() and manifest is None and any(root.iterdir()):
        log.warning("%s exists without a complete synthetic manifest: regenerating it", root)
    print(f"generating the synthetic dataset into {root} (seed {seed}) ...", file=sys.stderr)
    return generate(root, seed=seed, config=config)


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
    """A PNG grid: one row per identity, its images across cameras (labelled c1..c6)."""
    config = config or SyntheticConfig()
    cams = [
        draw_camera(np.random.default_rng([seed, 3, c]), config) for c in range(config.num_cameras)
    ]
    h, w, pad = config.height, config.width, 4
    label_h = 14
    cols = config.num_cameras * per_camera
    sheet = np.full((num_ids * (h + label_h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for row, pid in enumerate(range(1, num_ids + 1)):
        ident = draw_identity(np.random.default_rng([seed, 1, pid]))
        for cam_id in range(config.num_cameras):
            for k in range(per_camera):
                data, _ = _person_image(seed, pid, ident, cam_id, cams[cam_id], k, config)
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
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette keeps the committed PNG small (about 150 kB instead of 800 kB).
    from PIL import Image  # pillow comes with matplotlib

    palette = Image.fromarray(sheet).quantize(colors=256, dither=Image.Dither.NONE)
    palette.save(out_png, optimize=True)
    return out_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="output folder (default: datasets/synthetic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="default", help=f"one of {sorted(PRESETS)}")
    for field in dataclasses.fields(SyntheticConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = (
            float
            if field.name
            in {
                "difficulty",
                "illumination",
                "viewpoint_change",
                "occlusion",
                "bad_crop",
                "blur",
                "noise",
                "clutter",
            }
            else int
        )
        parser.add_argument(flag, type=kind, default=None, help=f"override {field.name}")
    parser.add_argument("--contact-sheet", type=Path, help="write a contact sheet PNG and exit")
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.preset not in PRESETS:
        parser.error(f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(SyntheticConfig)
        if getattr(args, f.name) is not None
    }
    config = dataclasses.replace(PRESETS[args.preset], **overrides)
    try:
        config.validate()
    except ValueError as err:
        parser.error(str(err))
    if args.contact_sheet:
        sheet = contact_sheet(args.contact_sheet, seed=args.seed, config=config)
        print(f"contact sheet written to {sheet}")
        return 0
    from data.paths import DATASETS_DIR

    out = args.out or DATASETS_DIR / "synthetic"
    start = time.perf_counter()
    if args.force:
        generate(out, seed=args.seed, config=config)
    else:
        ensure_synthetic(out, seed=args.seed, config=config)
    counts = read_manifest(out)["counts"]
    print(f"synthetic dataset ready at {out} ({time.perf_counter() - start:.1f} s): {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
