"""Images sent to the agent: every kind of input over real sockets to the local server, the
event as the ``openai`` package's GA models have it, broken and oversized images refused with a
clear error while the session goes on, providers that take no images refused before anything
is sent, the DataFrame's row, and a recorded session with an image loaded and replayed."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from conftest import eventually
from openai.types.realtime import ConversationItemCreateEvent
from PIL import Image
from support.ga_events import ga_problems

import rtwidget as rt
from rtwidget.client.image_prep import prepare_image, shrink
from rtwidget.client.providers import resolve
from rtwidget.client.session import AsyncRealtimeSession
from rtwidget.protocol.image_parts import MAX_IMAGE_BYTES, read_data_url
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RULES = [Rule(r"\[the user sent an image: (\w+), (\d+)x(\d+)\] ?(.*)",
              say="A {0} of {1} by {2} pixels. You asked: {3}")]


@pytest.fixture(scope="module")
def image_server() -> Iterator[LocalServer]:
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES)) as srv:
        yield srv


@pytest.fixture
def session(image_server: LocalServer) -> Iterator[rt.RealtimeSession]:
    with rt.RealtimeSession("local", url=image_server.url, output_modalities=["text"]) as s:
        yield s


def pil_image(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def encoded(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def figure() -> Any:
    fig, ax = plt.subplots(figsize=(4, 3), dpi=50)
    ax.plot([1, 3, 2])
    return fig


def reply_to(session: rt.RealtimeSession, image: Any, text: str | None, **kw: Any
             ) -> tuple[str, str]:
    done = session.expect("response.done", timeout=20)
    item_id = session.send_image(image, text, **kw)
    response = done.wait()["response"]
    return item_id, session.aio.reply_text(session.conversation.responses[response["id"]])


@pytest.mark.parametrize("kind", ["figure", "pil", "array", "path", "bytes", "gif"])
def test_each_kind_of_image_reaches_the_server_and_its_reply_knows_its_size(
        session: rt.RealtimeSession, kind: str, tmp_path: Path) -> None:
    fig = figure() if kind == "figure" else None
    inputs = {"figure": fig, "pil": pil_image(), "array": np.random.rand(48, 64, 3),
              "path": tmp_path / "chart.jpg", "bytes": encoded(pil_image(), "JPEG"),
              "gif": encoded(pil_image(mode="P"), "GIF")}
    (tmp_path / "chart.jpg").write_bytes(encoded(pil_image(), "PNG"))  # named .jpg, holds PNG
    expected = {"figure": ("PNG", fig.canvas.get_width_height() if fig else None),
                "pil": ("PNG", (64, 48)), "array": ("PNG", (64, 48)), "path": ("PNG", (64, 48)),
                "bytes": ("JPEG", (64, 48)), "gif": ("PNG", (64, 48))}[kind]
    item_id, reply = reply_to(session, inputs[kind], "What is it?")
    item = session.conversation.get(item_id)
    assert item is not None and len(item.images) == 1
    info = item.images[0]
    fmt, size = expected
    assert info.kind == fmt.lower()
    if kind != "figure":  # a figure is saved with bbox_inches="tight": its size is its own
        assert (info.width, info.height) == size
    assert reply == f"A {fmt} of {info.width} by {info.height} pixels. You asked: What is it?"
    # what the server holds is the image sent, byte for byte
    held = session.retrieve(item_id)["content"][0]
    assert read_data_url(held["image_url"])[0] == info
    if fig is not None:
        plt.close(fig)


def test_the_event_sent_is_a_ga_conversation_item_create(
        image_server: LocalServer, tmp_path: Path) -> None:
    with rt.RealtimeSession("local", url=image_server.url, record=tmp_path / "rec",
                            output_modalities=["text"]) as s:
        item_id, _ = reply_to(s, pil_image(), "Describe it.", detail="low")
        logged = next(e.payload for e in s.conversation.log
                      if e.direction == "out" and e.type == "conversation.item.create")
    # the event as it went on the wire (the recording keeps it whole)
    lines = [json.loads(line) for line in (tmp_path / "rec" / "events.jsonl").open()]
    event = next(x["event"] for x in lines if x["event"]["type"] == "conversation.item.create")
    model = ConversationItemCreateEvent.model_validate(event, strict=True)
    image, text = model.item.content
    assert (image.type, image.detail, text.type, text.text) == (
        "input_image", "low", "input_text", "Describe it.")
    assert model.item.id == item_id and model.item.role == "user"
    info, data = read_data_url(image.image_url)
    assert data == prepare_image(pil_image()).data and (info.width, info.height) == (64, 48)
    # the session's log keeps a summary, not the image
    assert logged["item"]["content"][0]["image_url"] == f"<image: image/png, {len(data)} bytes>"


def test_the_servers_echo_validates_against_the_ga_models(image_server: LocalServer) -> None:
    seen: list[dict[str, Any]] = []
    with rt.RealtimeSession("local", url=image_server.url, output_modalities=["text"]) as s:
        s.on("*", seen.append)
        reply_to(s, np.zeros((8, 8), np.uint8), "Black?")
    items = [e for e in seen if e["type"].startswith("conversation.item.")]
    assert items and all(ga_problems(e) == [] for e in items), [ga_problems(e) for e in items]
    assert items[0]["item"]["content"][0]["image_url"].startswith("data:image/png;base64,")


def test_broken_images_get_a_clear_error_and_the_session_goes_on(
        session: rt.RealtimeSession) -> None:
    good = base64.b64encode(encoded(pil_image(), "PNG")).decode()
    cases = {
        "data:image/png;base64,bm90IGFuIGltYWdl": "holds bytes that are not an image",
        "data:image/png;base64,%%%%": "not valid base64",
        "https://example.com/cat.png": "must be a data URL",
        f"data:image/gif;base64,{good}": "PNG and JPEG are supported",
        f"data:image/jpeg;base64,{good}": "says image/jpeg but holds image/png",
    }
    for url, said in cases.items():
        event = {"type": "conversation.item.create", "event_id": f"evt_bad_{len(said)}",
                 "item": {"type": "message", "role": "user",
                          "content": [{"type": "input_image", "image_url": url}]}}
        before = len(session.errors)
        session.send(event)
        error = eventually(lambda b=before: session.errors[b:], what="an error event")[0]
        assert error.param == "item.content[0].image_url" and said in error.message
        assert error.caused_by == "conversation.item.create"
    assert session.ask("still there?") == "You said: still there?"
    assert all(i.type == "message" and not i.images for i in session.conversation)


def test_images_that_cannot_be_sent_are_refused_before_anything_goes_out(
        session: rt.RealtimeSession, tmp_path: Path) -> None:
    sent_before = sum(1 for e in session.conversation.log if e.direction == "out")
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(rt.InvalidInput, match="not an image"):
        session.send_image(tmp_path / "notes.txt")
    with pytest.raises(rt.InvalidInput, match="no image file"):
        session.send_image(tmp_path / "missing.png")
    with pytest.raises(rt.InvalidInput, match="HxW"):
        session.send_image(np.zeros((4, 4, 2)))
    with pytest.raises(rt.InvalidInput, match="send_image takes"):
        session.send_image({"not": "an image"})
    noise = np.random.default_rng(1).integers(0, 255, (1800, 1800, 3), dtype=np.uint8)
    with pytest.raises(rt.InvalidInput, match=r"bytes; at most 8,388,608 are sent"):
        session.send_image(noise)  # about 9.7 MB as PNG: noise does not compress
    assert sum(1 for e in session.conversation.log if e.direction == "out") == sent_before
    assert session.ask("and now?") == "You said: and now?"


def test_the_server_refuses_an_image_over_its_limit_and_goes_on(
        image_server: LocalServer) -> None:
    big = b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES)
    url = "data:image/png;base64," + base64.b64encode(big).decode()
    with rt.RealtimeSession("local", url=image_server.url, output_modalities=["text"]) as s:
        s.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_image", "image_url": url}]}})
        error = eventually(lambda: s.errors, what="an error event")[0]
        assert "at most 8388608 bytes" in error.message
        assert s.ask("hello?") == "You said: hello?"


@pytest.mark.parametrize("provider", ["inworld", "openai-beta"])
def test_a_provider_without_images_is_refused_locally(provider: str) -> None:
    if provider == "inworld":
        endpoint = resolve("inworld", api_key="a-key")
    else:
        with pytest.warns(DeprecationWarning):
            endpoint = resolve("openai", api_key="sk-a-key", dialect="beta")
    session = AsyncRealtimeSession(endpoint)  # never connected: nothing could be sent anyway
    with pytest.raises(rt.ConfigError, match=r"inworld|beta"):
        asyncio.run(session.send_image(pil_image(), "look"))
    assert [e for e in session.conversation.log if e.direction == "out"] == []


def test_openai_and_azure_take_images() -> None:
    for endpoint in (resolve("openai", api_key="sk-a-key"),
                     resolve("azure", api_key="a-key", url="https://x.openai.azure.com")):
        session = AsyncRealtimeSession(endpoint)
        image = prepare_image(pil_image())

        async def queue(s: AsyncRealtimeSession = session, i: Any = image) -> str:
            return await s.send_image(i, "look", respond=False)

        assert asyncio.run(queue()).startswith("item_")


def test_the_dataframe_has_a_row_for_the_image_with_its_caption(
        session: rt.RealtimeSession) -> None:
    reply_to(session, np.zeros((480, 640, 3), np.uint8), "A dark chart")
    user = session.df[session.df["role"] == "user"].iloc[-1]
    assert user["text"] == "A dark chart"
    assert user["image"].startswith("png 640x480, ") and user["image"].endswith(" kB")
    assert session.df[session.df["role"] == "assistant"]["image"].isna().all()
    # the conversation keeps what the image is, never its bytes
    item = session.conversation.get(user["item_id"])
    assert item is not None and item.thumbnail is not None
    assert item.thumbnail.startswith("data:image/png;base64,")
    thumb = Image.open(io.BytesIO(base64.b64decode(item.thumbnail.split(",", 1)[1])))
    assert max(thumb.size) <= 160
    assert "base64" not in json.dumps([e.payload for e in session.conversation.log
                                      if e.type.startswith("conversation.item")])


def test_a_thumbnail_is_made_by_whole_steps() -> None:
    assert shrink(np.zeros((480, 640, 3), np.uint8), 160).shape == (120, 160, 3)
    assert shrink(np.ones((10, 1000)), 160).shape[1] <= 160
    assert shrink(np.zeros((20, 30)), 160).shape == (20, 30)


def test_a_recorded_session_with_an_image_loads_and_replays(
        image_server: LocalServer, tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    with rt.RealtimeSession("local", url=image_server.url, record=folder,
                            output_modalities=["text"]) as s:
        reply_to(s, np.full((30, 40, 3), 0.5), "Grey?")
        live = s.df
    rec = rt.load_recording(folder)
    assert list(rec.df["image"].fillna("")) == list(live["image"].fillna(""))
    assert list(rec.df["text"]) == list(live["text"])
    assert rec.conversation.get(live["item_id"][0]).thumbnail is not None
    with rt.RealtimeSession("local", url=image_server.url, output_modalities=["text"]) as s2:
        run = rec.replay(s2, speed=float("inf"))
        assert run.problems == []
        assert list(run.df["text"]) == ["Grey?", "A PNG of 40 by 30 pixels. You asked: Grey?"]
        assert run.df["image"][0] == live["image"][0]
        assert run.diff(only_changed=True).empty
