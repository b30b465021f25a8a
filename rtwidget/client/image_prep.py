"""Notebook objects made into images a session can send: a matplotlib figure, a PIL image, a
numpy array, a file or bytes become PNG or JPEG bytes (the two formats an ``input_image`` part
may hold), checked and measured, with a thumbnail of at most 160 px for the widget.

Pillow stays optional: a figure is saved by matplotlib (which depends on Pillow itself), a
numpy array is encoded by :func:`~rtwidget.protocol.image_parts.encode_png` (zlib only), PNG and
JPEG files are sent as they are; Pillow is imported only for a PIL image, to convert a GIF or
WebP file, to write JPEG from pixels, and to make thumbnails of files (without it a file's
thumbnail is the file itself when it is small, else none).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol.errors import ConfigError, InvalidInput
from ..protocol.image_parts import (
    MAX_IMAGE_BYTES,
    SENDABLE,
    ImageInfo,
    data_url,
    encode_png,
    info_of,
    sniff,
)

THUMBNAIL_PX = 160
"""The longer side of a thumbnail the widget shows, in pixels."""
_SMALL_ENOUGH = 48 * 1024  # a file this small is its own thumbnail when Pillow is missing


@dataclass(frozen=True)
class PreparedImage:
    """An image ready to send: its bytes (PNG or JPEG), what they are, where they came from
    (``figure``, ``pil``, ``array``, ``file``, ``bytes``) and a thumbnail data URL (or
    ``None``)."""

    data: bytes
    info: ImageInfo
    source: str
    thumbnail: str | None


def check_images_for(provider: str, dialect: str = "ga") -> None:
    """Raise :class:`ConfigError` before anything is sent to a provider whose documentation
    does not list image input: Inworld's lists ``input_text`` and ``input_audio`` only, and
    OpenAI's beta protocol had no ``input_image``."""
    if provider == "inworld":
        raise ConfigError("provider 'inworld' does not take images: its Realtime API documents "
                          "input_text and input_audio parts only (use OpenAI, Azure or the "
                          "local server for send_image)")
    if dialect == "beta":
        raise ConfigError(f"the beta Realtime protocol has no input_image parts; connect with "
                          f"the GA protocol to send images (provider {provider!r})")


def prepare_image(x: Any, *, format: str | None = None, max_bytes: int = MAX_IMAGE_BYTES,
                  thumbnail: bool = True) -> PreparedImage:
    """``x`` as PNG or JPEG bytes (see the module docstring). ``format`` (``"png"`` or
    ``"jpeg"``) is the encoding of a figure, PIL image or array (PNG by default); files and
    bytes in PNG or JPEG are sent as they are. An image over ``max_bytes`` is refused with
    :class:`InvalidInput` saying its size (nothing is shrunk behind your back)."""
    if format not in (None, "png", "jpeg", "jpg"):
        raise InvalidInput(f"format is 'png' or 'jpeg', not {format!r}")
    fmt = "jpeg" if format in ("jpeg", "jpg") else "png"
    pixels: np.ndarray | None = None
    if hasattr(x, "savefig"):
        source, data = "figure", _figure_bytes(x, fmt)
    elif type(x).__module__.startswith("PIL."):
        source, data = "pil", _pil_bytes(x, fmt)
    elif isinstance(x, np.ndarray):
        source, pixels = "array", x
        data = encode_png(x) if fmt == "png" else _pil_bytes(_pil().fromarray(_uint8(x)), fmt)
    elif isinstance(x, (str, os.PathLike)):
        source, data = "file", _file_bytes(Path(x), max_bytes)
    elif isinstance(x, (bytes, bytearray, memoryview)):
        source, data = "bytes", bytes(x)
    else:
        raise InvalidInput(f"send_image takes a matplotlib figure, a PIL image, a numpy array, "
                           f"a path or bytes, not {type(x).__name__}")
    mime = sniff(data)
    if mime is None:
        raise InvalidInput(f"the {source} given is not an image (PNG, JPEG, GIF or WebP): its "
                           f"first bytes are {data[:8]!r}")
    if mime not in SENDABLE:  # GIF, WebP: the protocol takes PNG and JPEG only
        data = _pil_bytes(_pil().open(io.BytesIO(data)), "png", why=f"to convert {mime}")
    if len(data) > max_bytes:
        raise InvalidInput(f"the image is {len(data):,} bytes; at most {max_bytes:,} are sent "
                           f"(save it smaller: fewer pixels, dpi=, or format='jpeg')")
    info = info_of(data)
    thumb = _thumbnail(data, info, pixels) if thumbnail else None
    return PreparedImage(data, info, source, thumb)


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise InvalidInput("Pillow is needed for this image (pip install pillow)") from None
    return Image


def _uint8(a: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.floating):
        return (np.clip(np.nan_to_num(a), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return a.astype(np.uint8)


def _figure_bytes(fig: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=fmt, bbox_inches="tight")
    except Exception as exc:  # a figure that cannot be drawn: the caller's, said as such
        raise InvalidInput(f"the figure could not be saved as {fmt}: "
                           f"{type(exc).__name__}: {exc}") from None
    return buffer.getvalue()


def _pil_bytes(img: Any, fmt: str, why: str = "") -> bytes:
    try:
        if fmt == "jpeg" and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        elif fmt == "png" and img.mode not in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16"):
            img = img.convert("RGBA")
        buffer = io.BytesIO()
        img.save(buffer, format=fmt.upper())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"the image could not be written as {fmt}{' ' + why if why else ''}"
                           f": {exc}") from None
    return buffer.getvalue()


def _file_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file")
        if size > 4 * max_bytes:  # not read at all: even a GIF this large would not fit
            raise InvalidInput(f"{path} is {size:,} bytes; at most {max_bytes:,} are sent")
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"no image file at {path}") from None
    except OSError as exc:
        raise InvalidInput(f"{path} cannot be read: {exc.strerror}") from None


def _thumbnail(data: bytes, info: ImageInfo, pixels: np.ndarray | None) -> str | None:
    """A data URL of the image at most :data:`THUMBNAIL_PX` on its longer side, or ``None``."""
    if pixels is not None:
        return data_url(encode_png(shrink(pixels, THUMBNAIL_PX)), "image/png")
    try:
        from PIL import Image
    except ImportError:
        return data_url(data, info.mime) if len(data) <= _SMALL_ENOUGH else None
    try:
        img = Image.open(io.BytesIO(data))
        img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        fmt = "jpeg" if info.mime == "image/jpeg" else "png"
        return data_url(_pil_bytes(img, fmt), f"image/{fmt}")
    except (OSError, ValueError, InvalidInput):
        return None


def shrink(pixels: np.ndarray, longest: int) -> np.ndarray:
    """The array scaled down (by whole steps, averaging blocks) until its longer side is at
    most ``longest``."""
    a = np.asarray(pixels)
    step = -(-max(a.shape[:2]) // longest)
    if step <= 1:
        return a
    h, w = (a.shape[0] // step) * step, (a.shape[1] // step) * step
    if h == 0 or w == 0:  # a thin strip: every step-th pixel
        return a[::step, ::step]
    if np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.nan_to_num(a[:h, :w]), 0.0, 1.0)
    else:
        a = a[:h, :w]
    blocks = a.reshape(h // step, step, w // step, step, *a.shape[2:]).astype(np.float64)
    out = blocks.mean(axis=(1, 3))
    return out if np.issubdtype(a.dtype, np.floating) else out.round().astype(a.dtype)
