"""Pixel work of the emulator: the "muscle surge" MP4, prompt images and sample portraits.

This is the only emulator module that imports PyAV, Pillow and numpy. The server imports it
lazily, so ``import segmind_emulator`` and the CLI's ``--help`` stay fast
and do not need the ``emulator`` extra. Every function here is pure and blocking: the server
runs them in a thread pool (PyAV, libx264 and Pillow release the GIL while they work), so the
event loop keeps answering polls while a video encodes.

Outputs are deterministic for equal inputs (same image bytes, parameters and seed), which is
what makes the server's render cache sound.
"""

from __future__ import annotations

import hashlib
import io
import math
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from segmind_emulator import api_facts

FPS = 24
#: Decoding refuses images larger than this many pixels: a hostile URL must not eat the RAM.
MAX_INPUT_PIXELS = 40_000_000
#: Widest output frame; a panorama at 1080p would otherwise make a huge, slow video.
MAX_WIDTH = 3840

#: Procedural sample portraits served under ``/_emulator/samples/<name>.png``: (width, height).
SAMPLES: dict[str, tuple[int, int]] = {
    "athlete-1": (512, 768),
    "athlete-2": (768, 512),
    "athlete-3": (600, 600),
    "athlete-4": (576, 1024),
}


class ImageDecodeError(ValueError):
    """The input bytes are not an image Pillow can read; the job becomes FAILED with this text."""


@dataclass(frozen=True)
class VideoInfo:
    """What the encoder produced; reported to clients in the result ``metrics``."""

    width: int
    height: int
    frames: int
    fps: int
    duration: float


def decode_image(data: bytes) -> Image.Image:
    """Open and fully decode ``data`` as RGB, or raise :class:`ImageDecodeError` saying why.

    ``load()`` is forced here because Pillow opens lazily: a truncated file would otherwise pass
    this check and fail later inside the encoder, after the job already looked healthy.
    """
    if not data:
        raise ImageDecodeError("the input image is empty (0 bytes)")
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_INPUT_PIXELS:
            raise ImageDecodeError(f"the input image is too large ({img.width}x{img.height} pixels)")
        img.load()
        img = ImageOps.exif_transpose(img)
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        raise ImageDecodeError(f"the input image could not be decoded ({type(exc).__name__}: {exc})") from None
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def output_size(image_width: int, image_height: int, quality: str) -> tuple[int, int]:
    """Frame size for a quality: its height, and the image's aspect ratio at an even width (yuv420p)."""
    height = api_facts.QUALITY_HEIGHT[quality]
    width = round(height * image_width / image_height / 2.0) * 2
    return max(2, min(MAX_WIDTH, width)), height


def _seed_for(image_digest: str, seed: int | None) -> int:
    # No seed given: derive one from the image, so the same request still renders the same video.
    return seed if seed is not None else int(image_digest[:8], 16) % api_facts.SEED_MAX + 1


def _stylise(img: Image.Image, style: str | None) -> Image.Image:
    """A cheap, recognisable look per style; applied once to the base frame, not per frame."""
    if style is None:
        return img
    if style == "anime":
        img = ImageEnhance.Color(ImageOps.posterize(img, 4)).enhance(1.5)
        return img.filter(ImageFilter.SMOOTH_MORE)
    if style == "3d_animation":
        img = img.filter(ImageFilter.GaussianBlur(1.2))
        return ImageEnhance.Brightness(ImageEnhance.Color(img).enhance(1.3)).enhance(1.08)
    if style == "clay":
        img = ImageOps.posterize(img.filter(ImageFilter.GaussianBlur(2)), 3)
        return Image.blend(img, Image.new("RGB", img.size, (196, 140, 98)), 0.25)
    if style == "comic":
        edges = ImageOps.invert(img.convert("L").filter(ImageFilter.FIND_EDGES)).point(lambda v: 0 if v < 200 else 255)
        flat = ImageEnhance.Contrast(ImageOps.posterize(img, 3)).enhance(1.4)
        return Image.composite(flat, Image.new("RGB", img.size, (0, 0, 0)), edges)
    if style == "cyberpunk":
        arr = np.asarray(img, dtype=np.float32)
        arr = arr * np.array([1.15, 0.8, 1.25], dtype=np.float32) + np.array([20, 0, 35], dtype=np.float32)
        return ImageEnhance.Contrast(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))).enhance(1.25)
    return img


#: Per-channel push of the warm "flush" at full pump (R, G, B): a blood-rush tint.
_FLUSH = (34.0, 4.0, -18.0)


def _surge_lut(pump: float) -> list[int]:
    """Contrast, brightness and the warm flush as one 3x256 table.

    A ``point()`` lookup costs one pass over the pixels, far cheaper than float maths or blends.
    """
    contrast = 1.0 + 0.3 * pump
    table: list[int] = []
    for shift in _FLUSH:
        offset = 128 + 6.0 * pump + shift * min(1.0, pump)
        table.extend(max(0, min(255, round((v - 128) * contrast + offset))) for v in range(256))
    return table


def render_video(
    image_bytes: bytes,
    *,
    duration: int,
    quality: str,
    motion_mode: str,
    seed: int | None,
    style: str | None,
    dest: Path,
) -> VideoInfo:
    """Encode the surge clip for one input and write it atomically to ``dest``.

    The effect: the subject "pumps" in beats (zoom plus a horizontal widening, i.e. the figure
    bulks up), with contrast, saturation and a warm flush rising on each beat, under an envelope
    that grows over the clip. ``motion_mode=fast`` beats twice as often and harder. The seed moves
    the beat phase and the bulge centre, so different seeds give visibly different clips.
    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    base = decode_image(image_bytes)
    width, height = output_size(base.width, base.height, quality)
    digest = hashlib.sha256(image_bytes).hexdigest()
    rng = np.random.default_rng(_seed_for(digest, seed))
    fast = motion_mode == "fast"
    beats_per_second = 2.0 if fast else 1.0
    strength = 1.6 if fast else 1.0
    phase = float(rng.uniform(0, 2 * math.pi))
    centre_x = 0.5 + float(rng.uniform(-0.04, 0.04))
    centre_y = 0.45 + float(rng.uniform(-0.04, 0.04))

    # Work at 110 % of the output size, so zoomed crops are downscales (sharp) not upscales.
    work_w, work_h = int(width * 1.1), int(height * 1.1)
    base = _stylise(base.resize((work_w, work_h), Image.Resampling.BILINEAR), style)
    frames = duration * FPS

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{rng.integers(1 << 30)}.tmp")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = Fraction(1, FPS)
            stream.codec_context.options = {"preset": "ultrafast", "crf": "26", "tune": "fastdecode"}
            stream.codec_context.thread_count = 2
            for index in range(frames):
                t = index / FPS
                envelope = 0.25 + 0.75 * min(1.0, t / (duration * 0.6))
                beat = 0.5 - 0.5 * math.cos(2 * math.pi * beats_per_second * t + phase)
                pump = strength * envelope * beat
                video_frame = _surge_frame(base, pump, centre_x, centre_y, width, height)
                video_frame.pts = index
                container.mux(stream.encode(video_frame))
            container.mux(stream.encode(None))
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return VideoInfo(width=width, height=height, frames=frames, fps=FPS, duration=frames / FPS)


def _surge_frame(base: Image.Image, pump: float, cx: float, cy: float, width: int, height: int) -> av.VideoFrame:
    """One frame: crop (zoom + widening around the chest), colour table, saturation, then scale.

    The crop is a cheap integer copy and the scaling to the output size is done by libswscale
    together with the yuv420p conversion the encoder needs anyway: Pillow's affine/box resampling
    cost three to five times more per frame, and the difference is invisible at these factors.
    """
    zoom = 1.0 + 0.07 * pump
    widen = 1.0 + 0.05 * pump
    bw, bh = base.size
    crop_w, crop_h = bw / 1.1 / zoom / widen, bh / 1.1 / zoom
    left = int(min(max(0.0, cx * bw - crop_w / 2), bw - crop_w))
    top = int(min(max(0.0, cy * bh - crop_h / 2), bh - crop_h))
    img = base.crop((left, top, left + int(crop_w), top + int(crop_h))).point(_surge_lut(pump))
    img = ImageEnhance.Color(img).enhance(1.0 + 0.45 * pump)
    return av.VideoFrame.from_image(img).reformat(
        width=width, height=height, format="yuv420p", interpolation="BILINEAR"
    )


# --- still images ----------------------------------------------------------------------------------
def _palette(text: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    top = (40 + digest[0] % 120, 40 + digest[1] % 120, 80 + digest[2] % 150)
    bottom = (150 + digest[3] % 100, 80 + digest[4] % 120, 40 + digest[5] % 100)
    return top, bottom


def _gradient(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    arr = np.array(top, dtype=np.float32) * (1 - ramp) + np.array(bottom, dtype=np.float32) * ramp
    return Image.fromarray(np.repeat(arr, width, axis=1).astype(np.uint8))


def _draw_figure(draw: ImageDraw.ImageDraw, width: int, height: int, skin: tuple[int, int, int]) -> None:
    """A flexing stick-and-blob athlete: enough structure that zoom and widening are visible."""
    cx, s = width / 2, min(width, height * 0.75) / 512
    head_y = height * 0.22
    draw.ellipse((cx - 45 * s, head_y - 55 * s, cx + 45 * s, head_y + 45 * s), fill=skin)
    torso_top, torso_bottom = head_y + 50 * s, head_y + 300 * s
    draw.polygon(
        [
            (cx - 110 * s, torso_top),
            (cx + 110 * s, torso_top),
            (cx + 60 * s, torso_bottom),
            (cx - 60 * s, torso_bottom),
        ],
        fill=skin,
    )
    for side in (-1, 1):
        shoulder = (cx + side * 105 * s, torso_top + 15 * s)
        elbow = (cx + side * 200 * s, torso_top + 40 * s)
        fist = (cx + side * 190 * s, torso_top - 90 * s)
        draw.line([shoulder, elbow, fist], fill=skin, width=int(42 * s) or 1, joint="curve")
        draw.ellipse((elbow[0] - 48 * s, elbow[1] - 75 * s, elbow[0] + 30 * s, elbow[1] - 5 * s), fill=skin)
        draw.ellipse((fist[0] - 28 * s, fist[1] - 28 * s, fist[0] + 28 * s, fist[1] + 28 * s), fill=skin)
        draw.line(
            [(cx + side * 40 * s, torso_bottom), (cx + side * 70 * s, height * 0.97)], fill=skin, width=int(50 * s) or 1
        )
    # Abdominal lines and pecs, drawn darker: texture for the encoder and the eye.
    shade = tuple(int(c * 0.7) for c in skin)
    draw.line([(cx, torso_top + 30 * s), (cx, torso_bottom - 10 * s)], fill=shade, width=max(1, int(4 * s)))
    for row in range(3):
        y = torso_top + (130 + row * 45) * s
        draw.line([(cx - 40 * s, y), (cx + 40 * s, y)], fill=shade, width=max(1, int(4 * s)))


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


def render_sample(name: str) -> bytes:
    """One of :data:`SAMPLES` as PNG bytes; a different palette per name, same bytes every call."""
    width, height = SAMPLES[name]
    top, bottom = _palette(name)
    img = _gradient(width, height, top, bottom)
    draw = ImageDraw.Draw(img)
    skin = (200 + len(name) % 40, 150 + sum(map(ord, name)) % 50, 120)
    _draw_figure(draw, width, height, skin)
    draw.text((10, 10), name, fill=(255, 255, 255), font=ImageFont.load_default())
    return _png(img)


def render_prompt_image(prompt: str, width: int = 512, height: int = 768) -> bytes:
    """A PNG for an image model's ``prompt``: colours and figure from the prompt, the text drawn on it.

    Lets a DAG chain "generate a portrait" into muscle-surge without a real image model.
    """
    top, bottom = _palette(prompt)
    img = _gradient(width, height, top, bottom)
    draw = ImageDraw.Draw(img)
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    _draw_figure(draw, width, height, (180 + digest[6] % 60, 130 + digest[7] % 60, 100 + digest[8] % 50))
    font = ImageFont.load_default()
    lines = textwrap.wrap(prompt, width=60)[:6]
    draw.rectangle((0, height - 16 * len(lines) - 12, width, height), fill=(0, 0, 0))
    for row, line in enumerate(lines):
        draw.text((8, height - 16 * (len(lines) - row) - 4), line, fill=(255, 255, 255), font=font)
    return _png(img)
