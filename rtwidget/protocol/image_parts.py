"""Images as the Realtime protocol carries them: an ``input_image`` content part whose
``image_url`` is a base64 data URL of a PNG or a JPEG (the two formats OpenAI's GA reference
lists), with an optional ``detail``.

Pure: the format is told from the bytes (never from a name), the size in pixels is read from the
file's header (PNG, JPEG, GIF, WebP) without decoding the picture, and a numpy array is encoded as
PNG with :mod:`zlib` alone. :class:`ImageInfo` is what the conversation keeps of an image (its
type, bytes and size, not the bytes themselves).
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidInput

MAX_IMAGE_BYTES = 8 * 1024 * 1024
"""The largest image sent (its bytes, before base64): as a data URL it is about 10.7 MiB, under
the 15 MiB a Realtime event may be and the 16 MiB a recording's line may be."""

SENDABLE = ("image/png", "image/jpeg")
"""The formats an ``input_image`` part may hold (OpenAI's GA reference: PNG and JPEG)."""

DETAILS = ("auto", "low", "high")

_HEADER_B64 = 87_384  # base64 characters read to find the size: 64 KiB of the file


@dataclass(frozen=True)
class ImageInfo:
    """What is known of one image without keeping it: its type, bytes and size in pixels."""

    mime: str
    bytes: int
    width: int | None = None
    height: int | None = None
    detail: str | None = None

    @property
    def kind(self) -> str:
        """``png``, ``jpeg``, ``gif``, ``webp``."""
        return self.mime.split("/")[-1]

    @property
    def label(self) -> str:
        """``"png 640x480, 23 kB"`` (the DataFrame's ``image`` column, the widget's caption)."""
        size = f" {self.width}x{self.height}" if self.width and self.height else ""
        kb = self.bytes / 1000
        amount = f"{kb:.0f} kB" if kb >= 10 else f"{kb:.1f} kB"
        return f"{self.kind}{size}, {amount}"

    def describe(self) -> str:
        """How a reply engine that cannot see it is told of it: ``[the user sent an image: PNG,
        640x480]``."""
        size = f", {self.width}x{self.height}" if self.width and self.height else ""
        return f"[the user sent an image: {self.kind.upper()}{size}]"


def sniff(data: bytes) -> str | None:
    """The image type of ``data`` from its first bytes (``image/png`` ...), or ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def dimensions(data: bytes, mime: str | None = None) -> tuple[int, int] | None:
    """Width and height from the image's header, or ``None`` if they cannot be read there."""
    mime = mime or sniff(data)
    try:
        if mime == "image/png" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if mime == "image/gif":
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if mime == "image/jpeg":
            return _jpeg_size(data)
        if mime == "image/webp":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    for _ in range(10_000):  # segments before the frame header: bounded
        while i < len(data) and data[i] == 0xFF:
            i += 1
        if i + 3 > len(data):
            return None
        marker = data[i]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 1
            continue
        length = struct.unpack(">H", data[i + 1:i + 3])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 4:i + 8])
            return int(w), int(h)
        i += 1 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return int(w & 0x3FFF), int(h & 0x3FFF)
    if chunk == b"VP8L":
        b = data[21:25]
        w = 1 + (((b[1] & 0x3F) << 8) | b[0])
        h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return w, h
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    return None


def info_of(data: bytes, detail: str | None = None) -> ImageInfo:
    """The :class:`ImageInfo` of an image's bytes (type ``application/octet-stream`` when it
    is not an image this module knows)."""
    mime = sniff(data) or "application/octet-stream"
    width, height = dimensions(data, mime) or (None, None)
    return ImageInfo(mime, len(data), width, height, detail)


def data_url(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...``."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def image_part(data: bytes, mime: str | None = None, detail: str | None = None
               ) -> dict[str, Any]:
    """An ``input_image`` content part; ``mime`` is checked against the bytes."""
    found = sniff(data)
    if found not in SENDABLE or (mime is not None and mime != found):
        raise InvalidInput(f"an input_image part holds PNG or JPEG bytes; these are "
                           f"{found or 'not an image'}")
    if detail is not None and detail not in DETAILS:
        raise InvalidInput(f"detail must be one of {', '.join(DETAILS)}, not {detail!r}")
    part: dict[str, Any] = {"type": "input_image", "image_url": data_url(data, found)}
    if detail is not None:
        part["detail"] = detail
    return part


def image_message(part: dict[str, Any], text: str | None = None,
                  item_id: str | None = None) -> dict[str, Any]:
    """A user message item with an image part and, when given, the user's text after it."""
    content = [part] + ([{"type": "input_text", "text": str(text)}] if text else [])
    item: dict[str, Any] = {"type": "message", "role": "user", "content": content}
    if item_id:
        item["id"] = item_id
    return item


def read_data_url(url: Any, limit: int = MAX_IMAGE_BYTES) -> tuple[ImageInfo, bytes]:
    """The image in a data URL, checked as a server checks it: a base64 data URL of a PNG or
    JPEG whose bytes are what it says, at most ``limit`` bytes. Raises :class:`InvalidInput`
    saying what is wrong."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise InvalidInput("image_url must be a data URL (data:image/png;base64,...)")
    head, comma, body = url.partition(",")
    if not comma or not head.endswith(";base64"):
        raise InvalidInput("image_url must be a base64 data URL (data:image/png;base64,...)")
    declared = head[5:-7].lower()
    if declared not in SENDABLE:
        raise InvalidInput(f"image_url holds {declared or 'no type'}; PNG and JPEG are "
                           "supported")
    if len(body) * 3 // 4 > limit + 2:
        raise InvalidInput(f"the image is {len(body) * 3 // 4} bytes; at most {limit} bytes "
                           "are taken")
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("image_url is not valid base64") from None
    found = sniff(data)
    if found != declared:
        raise InvalidInput(f"image_url says {declared} but holds "
                           f"{found or 'bytes that are not an image'}")
    return info_of(data), data


def info_of_part(part: Any) -> ImageInfo | None:
    """What an ``input_image`` part holds, read cheaply (only the file's header is decoded), or
    ``None`` when it holds no data URL (a part summarised in a log)."""
    if not isinstance(part, dict) or part.get("type") != "input_image":
        return None
    url = part.get("image_url")
    detail = part.get("detail") if isinstance(part.get("detail"), str) else None
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    head, _, body = url.partition(",")
    size = len(body) * 3 // 4 - body[-2:].count("=")
    try:
        header = base64.b64decode(body[:_HEADER_B64], validate=False)
    except (binascii.Error, ValueError):
        header = b""
    mime = sniff(header) or head[5:].split(";")[0] or "application/octet-stream"
    width, height = dimensions(header, mime) or (None, None)
    return ImageInfo(mime, size, width, height, detail)


def summarise_part(part: dict[str, Any]) -> dict[str, Any]:
    """The part with its data URL replaced by ``<image: image/png, N bytes>`` (for logs)."""
    info = info_of_part(part)
    if info is None:
        return part
    return dict(part, image_url=f"<image: {info.mime}, {info.bytes} bytes>")


def encode_png(pixels: Any) -> bytes:
    """A numpy array as PNG bytes, with :mod:`zlib` only: ``HxW`` (grey), ``HxWx3`` (RGB) or
    ``HxWx4`` (RGBA), ``uint8``, or floats from 0 to 1 (clipped)."""
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise InvalidInput(f"an image array is HxW, HxWx3 or HxWx4; got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InvalidInput("an image array of floats must hold finite values (0 to 1)")
        a = (np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise InvalidInput(f"an image array of {a.dtype} must hold values 0 to 255 "
                               "(or pass floats from 0 to 1)")
        a = a.astype(np.uint8)
    height, width = a.shape[:2]
    colour = {1: 0, 3: 2, 4: 6}[1 if a.ndim == 2 else a.shape[2]]  # grey, RGB, RGBA
    rows = np.ascontiguousarray(a).reshape(height, -1)
    raw = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
