"""Drawing for :mod:`data.synthetic`: persistent identities, per-camera nuisances, rendering.

Everything here is a pure function of a :class:`numpy.random.Generator` (and the config), so the
caller controls determinism by how it seeds the generators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # only for annotations: synthetic.py imports this module
    from data.synthetic import SyntheticConfig

# A shared garment palette (RGB): colour alone cannot identify a person. Identities draw from the
# first ``SyntheticConfig.palette_size`` entries; the order is fixed so that a given size always
# reproduces the same identities.
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
        (20, 130, 130),
        (120, 25, 45),
    ],
    dtype=np.float32,
)
HAIR = np.array(
    [(20, 15, 10), (70, 45, 25), (160, 120, 60), (120, 120, 120), (40, 25, 20)], np.float32
)
SKIN = np.array([(240, 200, 170), (210, 160, 120), (160, 110, 75), (100, 65, 45)], np.float32)
SHOES = np.array([(20, 20, 20), (235, 235, 235), (110, 70, 40), (60, 60, 120)], np.float32)
TEXTURES = ("plain", "hstripes", "vstripes", "checks", "print")


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


def draw_identity(rng: np.random.Generator, palette_size: int = 14) -> Identity:
    """Draw one person's persistent appearance.

    Parameters
    ----------
    rng : numpy.random.Generator
        The identity's own generator (its draws fully determine the identity).
    palette_size : int
        Garment, texture and bag colours come from ``PALETTE[:palette_size]``; a small shared
        palette makes colour histograms only partly discriminative.

    Returns
    -------
    Identity
    """
    palette = PALETTE[:palette_size]
    upper_i = int(rng.integers(len(palette)))
    lower_i = int(rng.integers(len(palette)))
    tex_i = int(rng.integers(len(palette) - 1))
    tex_i += tex_i >= upper_i  # a texture colour different from the garment
    return Identity(
        height=float(rng.uniform(0.78, 0.92)),
        width=float(rng.uniform(0.42, 0.62)),
        leg_ratio=float(rng.uniform(0.47, 0.58)),
        upper=palette[upper_i],
        lower=palette[lower_i],
        texture=TEXTURES[int(rng.choice(len(TEXTURES), p=[0.3, 0.2, 0.15, 0.15, 0.2]))],
        texture_colour=palette[tex_i],
        texture_period=int(rng.integers(4, 9)),
        long_sleeves=bool(rng.random() < 0.6),
        skirt=bool(rng.random() < 0.2),
        hair=HAIR[int(rng.integers(len(HAIR)))],
        long_hair=bool(rng.random() < 0.35),
        skin=SKIN[int(rng.integers(len(SKIN)))],
        shoes=SHOES[int(rng.integers(len(SHOES)))],
        bag=("none", "backpack", "left", "right")[int(rng.choice(4, p=[0.45, 0.25, 0.15, 0.15]))],
        bag_colour=palette[int(rng.integers(len(palette)))],
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
    """Draw one camera's nuisances; their spread grows with the config's knobs."""
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


@dataclass(frozen=True)
class _Pose:
    """Where one rendered person's body parts lie on the supersampled canvas (pixels)."""

    cx: float  # x of the body's axis
    side: bool  # seen from the side: narrower shoulders, a single arm
    shoulder: float  # shoulder width
    hip: float  # hip width
    head_r: float  # head radius
    head_cy: float  # y of the head's centre
    neck: float  # y of the neck (top of the torso)
    body: float  # neck-to-feet height
    waist: float  # y of the waist
    feet: float  # y of the soles
    arm_w: int  # arm thickness


def _place_person(
    ident: Identity, cam: Camera, rng: np.random.Generator, h: int, w: int, view: str
) -> _Pose:
    """Size and position the person in an ``h`` x ``w`` canvas, with per-image jitter."""
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
    return _Pose(
        cx=cx,
        side=side,
        shoulder=shoulder,
        hip=shoulder * 0.8,
        head_r=head_r,
        head_cy=head_cy,
        neck=neck,
        body=body,
        waist=neck + body * (1 - ident.leg_ratio),
        feet=top + person_h,
        arm_w=max(3, int(shoulder * 0.2)),
    )


def _draw_legs(canvas: np.ndarray, ident: Identity, pose: _Pose, rng: np.random.Generator) -> None:
    """Legs (trousers, or a skirt over bare legs) and shoes, with a stride that varies per image."""
    cx, hip, waist, feet, head_r = pose.cx, pose.hip, pose.waist, pose.feet, pose.head_r
    stride = rng.uniform(-0.18, 0.18) * pose.shoulder
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


def _draw_backpack_behind(canvas: np.ndarray, ident: Identity, pose: _Pose, view: str) -> None:
    """A backpack peeking out behind the torso, seen from the front or the side."""
    if ident.bag != "backpack" or view == "back":
        return
    cx, shoulder = pose.cx, pose.shoulder
    off = shoulder * (0.45 if pose.side else 0.0)
    cv2.rectangle(
        canvas,
        (int(cx - shoulder * 0.45 - off), int(pose.neck + pose.body * 0.05)),
        (int(cx + shoulder * 0.45 - off), int(pose.waist)),
        _c(ident.bag_colour),
        -1,
    )


def _draw_torso(canvas: np.ndarray, ident: Identity, pose: _Pose, view: str) -> None:
    """The upper garment: a trapezoid from shoulders to hips, filled with its texture."""
    cx, shoulder, hip, neck, waist = pose.cx, pose.shoulder, pose.hip, pose.neck, pose.waist
    h, w = canvas.shape[:2]
    torso_mask = np.zeros((h, w), np.uint8)
    pts = np.array(
        [
            [cx - shoulder / 2, neck],
            [cx + shoulder / 2, neck],
            [cx + hip / 2, waist + pose.body * 0.04],
            [cx - hip / 2, waist + pose.body * 0.04],
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


def _draw_arms(canvas: np.ndarray, ident: Identity, pose: _Pose, rng: np.random.Generator) -> None:
    """Sleeves in the garment colour, hands in skin tone; the swing varies per image."""
    cx, shoulder, body, neck, arm_w = pose.cx, pose.shoulder, pose.body, pose.neck, pose.arm_w
    side = pose.side
    for sign in (-1, 1) if not side else (1,):
        swing = rng.uniform(-0.25, 0.25) * body
        x_sh = cx + sign * (shoulder / 2 - arm_w / 2) * (0.2 if side else 1.0)
        x_hand = x_sh + sign * shoulder * 0.12 + swing * (0.6 if side else 0.15)
        y_hand = pose.waist + body * 0.05
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


def _draw_shoulder_bag(canvas: np.ndarray, ident: Identity, pose: _Pose, view: str) -> None:
    """A bag on the left or right hip with its strap across the torso (mirrored from the back)."""
    if ident.bag not in ("left", "right"):
        return
    cx, shoulder, body, waist, arm_w = pose.cx, pose.shoulder, pose.body, pose.waist, pose.arm_w
    sign = -1 if ident.bag == "left" else 1
    if view == "back":
        sign = -sign
    bx = cx + sign * (shoulder / 2 + arm_w * 0.4)
    cv2.line(
        canvas,
        (int(cx - sign * shoulder * 0.3), int(pose.neck)),
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


def _draw_backpack_on_back(canvas: np.ndarray, ident: Identity, pose: _Pose, view: str) -> None:
    """A backpack covering the torso, seen from the back."""
    if ident.bag != "backpack" or view != "back":
        return
    cv2.rectangle(
        canvas,
        (int(pose.cx - pose.shoulder * 0.35), int(pose.neck + pose.body * 0.08)),
        (int(pose.cx + pose.shoulder * 0.35), int(pose.waist - pose.body * 0.05)),
        _c(ident.bag_colour),
        -1,
    )


def _draw_head(canvas: np.ndarray, ident: Identity, pose: _Pose, view: str) -> None:
    """Skin face from the front/side, hair from the back; long hair falls on the shoulders."""
    cx, head_cy, head_r = pose.cx, pose.head_cy, pose.head_r
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
        return
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


def _draw_occluder(canvas: np.ndarray, rng: np.random.Generator, config: SyntheticConfig) -> None:
    """With probability ``occlusion``: a pole, a car-like block at the bottom, or a shoulder."""
    if rng.random() >= config.knob("occlusion"):
        return
    h, w = canvas.shape[:2]
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


def _bad_crop(canvas: np.ndarray, rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """With probability ``bad_crop``: the detector cut the head or the feet, or drifted sideways."""
    if rng.random() >= config.knob("bad_crop"):
        return canvas
    h, w = canvas.shape[:2]
    dy = int(rng.uniform(0.1, 0.25) * h) * int(rng.choice([-1, 1]))
    dx = int(rng.uniform(-0.2, 0.2) * w)
    return cv2.warpAffine(
        canvas, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE
    )


def render_person(
    ident: Identity, cam: Camera, rng: np.random.Generator, config: SyntheticConfig, view: str
) -> np.ndarray:
    """One RGB float32 crop (height x width) of ``ident`` as seen by ``cam``.

    Parts are painted back to front; the order of the calls is also the order of the draws
    from ``rng``, which must not change (it would change every generated image).
    """
    h, w = config.height * SUPER, config.width * SUPER
    canvas = _background(rng, cam, h, w, config.knob("clutter"))
    pose = _place_person(ident, cam, rng, h, w, view)
    _draw_legs(canvas, ident, pose, rng)
    _draw_backpack_behind(canvas, ident, pose, view)
    _draw_torso(canvas, ident, pose, view)
    _draw_arms(canvas, ident, pose, rng)
    _draw_shoulder_bag(canvas, ident, pose, view)
    _draw_backpack_on_back(canvas, ident, pose, view)
    _draw_head(canvas, ident, pose, view)
    _draw_occluder(canvas, rng, config)
    return _bad_crop(canvas, rng, config)


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


def encode_jpeg(image_rgb: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an RGB uint8 image (libjpeg through OpenCV is deterministic)."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def draw_view(rng: np.random.Generator, cam: Camera, config: SyntheticConfig) -> str:
    """The camera's usual viewpoint, or with probability ``viewpoint_change`` a random one."""
    if rng.random() < config.knob("viewpoint_change"):
        return ("front", "back", "side")[int(rng.integers(3))]
    return cam.usual_view


def person_image(
    seed: int, pid: int, ident: Identity, cam_id: int, cam: Camera, k: int, config: SyntheticConfig
) -> tuple[bytes, np.random.Generator]:
    """JPEG bytes of the ``k``-th image of identity ``pid`` in camera ``cam_id``.

    The image has its own generator seeded by ``(seed, pid, cam_id, k)``, so it does not depend
    on which other images are drawn or in which order. The generator is returned (advanced past
    the drawing) so the caller can draw the file name's sequence and box numbers from it.
    """
    rng = config.rng(seed, 2, pid, cam_id, k)
    view = draw_view(rng, cam, config)
    canvas = render_person(ident, cam, rng, config, view)
    image = apply_camera(canvas, cam, rng, config)
    quality = int(rng.uniform(cam.jpeg_quality - 5, cam.jpeg_quality + 5))
    return encode_jpeg(image, min(max(quality, 10), 98)), rng


def junk_image(
    seed: int, j: int, cams: list[Camera], config: SyntheticConfig
) -> tuple[bytes, int, np.random.Generator]:
    """A false detection (id -1): background only, or a fragment of a body at the border.

    Returns the JPEG bytes, the 0-based camera and the advanced generator (for the file name).
    """
    rng = config.rng(seed, 4, j)
    cam_id = int(rng.integers(config.num_cameras))
    cam = cams[cam_id]
    h, w = config.height * SUPER, config.width * SUPER
    canvas = _background(rng, cam, h, w, min(1.0, config.knob("clutter") + 0.5))
    if rng.random() < 0.5:
        ident = draw_identity(config.rng(seed, 5, j), config.palette_size)
        person = render_person(ident, cam, rng, config, "front")
        cut = int(rng.uniform(0.5, 0.8) * h)
        canvas[: h - cut] = person[cut:]
    return encode_jpeg(apply_camera(canvas, cam, rng, config), cam.jpeg_quality), cam_id, rng
