"""Images in the pure protocol core: formats told from their bytes, sizes read from headers,
arrays written as PNG with zlib, data URLs checked, and the conversation keeping what an image
is (from the event sent or the server's echo) but never its bytes, in items or in the log."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from rtwidget.protocol import client_events
from rtwidget.protocol.conversation import Conversation
from rtwidget.protocol.errors import InvalidInput
from rtwidget.protocol.image_parts import (
    ImageInfo,
    data_url,
    dimensions,
    encode_png,
    image_message,
    image_part,
    read_data_url,
    sniff,
)


def saved(fmt: str, size: tuple[int, int] = (37, 23), **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "options", "mime"), [
    ("PNG", {}, "image/png"), ("JPEG", {}, "image/jpeg"),
    ("JPEG", {"progressive": True}, "image/jpeg"), ("GIF", {}, "image/gif"),
    ("WEBP", {}, "image/webp"), ("WEBP", {"lossless": True}, "image/webp"),
])
def test_the_format_and_size_come_from_the_bytes(fmt: str, options: dict, mime: str) -> None:
    data = saved(fmt, **options)
    assert sniff(data) == mime
    assert dimensions(data) == (37, 23)


def test_unknown_or_cut_bytes_have_no_format_or_size() -> None:
    assert sniff(b"%PDF-1.7") is None and dimensions(b"%PDF-1.7") is None
    assert dimensions(saved("JPEG")[:40]) is None  # the frame header was cut off
    assert dimensions(b"\x89PNG\r\n\x1a\n") is None


@pytest.mark.parametrize("pixels", [
    np.arange(12, dtype=np.uint8).reshape(3, 4) * 20,
    np.linspace(0, 1, 3 * 4 * 3).reshape(3, 4, 3),
    np.random.default_rng(3).integers(0, 255, (5, 6, 4), dtype=np.uint8),
    np.array([[True, False], [False, True]]),
    np.arange(6, dtype=np.int64).reshape(2, 3) * 50,
])
def test_an_array_is_written_as_a_png_pillow_reads_back(pixels: np.ndarray) -> None:
    png = encode_png(pixels)
    img = Image.open(io.BytesIO(png))
    back = np.asarray(img)
    want = pixels
    if pixels.dtype == np.bool_:
        want = pixels.astype(np.uint8) * 255
    elif np.issubdtype(pixels.dtype, np.floating):
        want = (pixels * 255 + 0.5).astype(np.uint8)
    assert back.shape == want.shape and (back == want).all()


@pytest.mark.parametrize(("pixels", "said"), [
    (np.zeros((2, 2, 2)), "HxW"), (np.zeros((0, 3)), "HxW"), (np.zeros(5), "HxW"),
    (np.full((2, 2), np.nan), "finite"), (np.full((2, 2), 300), "0 to 255"),
])
def test_arrays_that_are_not_images_are_refused(pixels: np.ndarray, said: str) -> None:
    with pytest.raises(InvalidInput, match=said):
        encode_png(pixels)


def test_a_part_holds_png_or_jpeg_with_a_known_detail() -> None:
    png = saved("PNG")
    part = image_part(png, detail="low")
    assert part == {"type": "input_image", "image_url": data_url(png, "image/png"),
                    "detail": "low"}
    with pytest.raises(InvalidInput, match="PNG or JPEG"):
        image_part(saved("GIF"))
    with pytest.raises(InvalidInput, match="detail"):
        image_part(png, detail="max")
    with pytest.raises(InvalidInput, match="PNG or JPEG"):
        image_part(png, mime="image/jpeg")  # what it says must be what it is


def test_a_data_url_is_read_back_checked() -> None:
    png = saved("PNG")
    info, data = read_data_url(data_url(png, "image/png"))
    assert data == png and info == ImageInfo("image/png", len(png), 37, 23)
    assert info.label == f"png 37x23, {len(png) / 1000:.1f} kB"
    with pytest.raises(InvalidInput, match="at most 10 bytes"):
        read_data_url(data_url(png, "image/png"), limit=10)
    with pytest.raises(InvalidInput, match="base64 data URL"):
        read_data_url("data:image/png," + "x")


def test_the_conversation_keeps_what_an_image_is_not_its_bytes() -> None:
    png = saved("PNG", (320, 200))
    conversation = Conversation()
    item = image_message(image_part(png), "Look", "item_1")
    event = client_events.item_create(item)
    conversation.record_sent(event, 0)
    conversation.note({"type": "rtwidget.image_thumbnail", "item_id": "item_1",
                       "thumbnail": "data:image/png;base64,AAAA"})
    echoed = dict(item, status="completed")
    conversation.apply({"type": "conversation.item.added", "item": echoed})
    kept = conversation.get("item_1")
    assert kept is not None and kept.text == "Look" and kept.thumbnail.endswith("AAAA")
    assert kept.images == [ImageInfo("image/png", len(png), 320, 200)]
    b64 = base64.b64encode(png).decode()
    assert all(b64 not in repr(entry.payload) for entry in conversation.log)
    assert b64 not in repr(kept)
    # an echo from a server alone (another client's image) is understood the same way
    other = Conversation()
    other.apply({"type": "conversation.item.done", "item": dict(echoed, id="item_2")})
    assert other.get("item_2").images == kept.images  # type: ignore[union-attr]
