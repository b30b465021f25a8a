"""An image sent from the widget's chat, seen by a front end played in the kernel: its
transcript row carries a small thumbnail and a label, never the image itself."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from support.fake_browser import FakeBrowser

import rtwidget as rt
from rtwidget.server import LocalServer


def test_a_sent_image_reaches_the_page_as_a_thumbnail_row(server: LocalServer) -> None:
    chat = rt.chat("local", url=server.url)
    browser = FakeBrowser(chat)
    try:
        browser.wait(lambda: chat.status == "connected")
        browser.message({"type": "ready"})
        photo = np.random.default_rng(5).integers(0, 255, (600, 900, 3), dtype=np.uint8)
        item_id = chat.send_image(photo, "What is in this photo?")
        rows = browser.wait(lambda: [r for m, _ in browser.of_type("rows") for r in m["rows"]
                                     if r["id"] == item_id and r["image"]])
        row = rows[-1]
        assert row["text"] == "What is in this photo?" and row["role"] == "user"
        assert row["image"]["label"].startswith("png 900x600, ")
        src = row["image"]["src"]
        assert src.startswith("data:image/png;base64,")
        thumb = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert thumb.size == (150, 100)  # at most 160 px, by whole steps
        # the rows messages stay light: the thumbnail, not the 1.6 MB image
        assert max(len(repr(m)) for m, _ in browser.of_type("rows")) < 120_000
        browser.wait(lambda: chat.session.conversation.last_response() and
                     chat.session.conversation.last_response().status == "completed")
        assert chat.df["image"].iloc[0] == row["image"]["label"]
    finally:
        chat.close()
    assert browser.undeclared == []
