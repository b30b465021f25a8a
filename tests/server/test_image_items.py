"""The local server's side of images: ``input_image`` parts checked as they arrive (raw events
over a real socket), kept, and turned into what the reply engine is told: the image's type and
size in pixels, then the user's caption, in the prompt SmolLM2 reads."""

from __future__ import annotations

import base64
from typing import Any

from conftest import RawClient
from support.ga_events import ga_problems

from rtwidget.protocol.image_parts import encode_png
from rtwidget.server.engines import ReplyContext
from rtwidget.server.item_store import ServerItem, _check_images
from rtwidget.server.reply_prompt import build_messages


def image_url(width: int = 40, height: int = 30) -> str:
    png = encode_png([[0] * width] * height)
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_item(url: str, caption: str | None = "What is this?", **part: Any) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "input_image", "image_url": url, **part}]
    if caption:
        content.append({"type": "input_text", "text": caption})
    return {"type": "message", "role": "user", "content": content}


def test_an_image_item_is_added_and_echoed_as_ga_items(raw: RawClient) -> None:
    raw.send({"type": "conversation.item.create", "item": image_item(image_url(), detail="high")})
    added = raw.until("conversation.item.added")
    done = raw.until("conversation.item.done")
    for event in (added, done):
        assert ga_problems(event) == []
        part = event["item"]["content"][0]
        assert part == {"type": "input_image", "image_url": image_url(), "detail": "high"}


def test_a_bad_detail_or_image_is_an_error_and_the_server_goes_on(raw: RawClient) -> None:
    raw.send({"type": "conversation.item.create", "event_id": "e1",
              "item": image_item(image_url(), detail="max")})
    error = raw.until("error")["error"]
    assert (error["param"], error["event_id"]) == ("item.content[0].detail", "e1")
    raw.send({"type": "conversation.item.create", "event_id": "e2",
              "item": image_item("data:image/png;base64,")})
    error = raw.until("error")["error"]
    assert error["param"] == "item.content[0].image_url" and "not an image" in error["message"]
    raw.send({"type": "conversation.item.create", "event_id": "e3",
              "item": {"type": "message", "role": "system",
                       "content": [{"type": "input_image", "image_url": image_url()}]}})
    assert "system message cannot hold" in raw.until("error")["error"]["message"]
    raw.send({"type": "conversation.item.create", "item": image_item(image_url())})
    assert raw.until("conversation.item.done")["item"]["role"] == "user"


def test_the_reply_engine_is_told_what_is_known_of_the_image() -> None:
    data = image_item(image_url(640, 480), "Is it rising?")
    images = _check_images(data)
    assert isinstance(images, list)
    turn = ServerItem(data, images=images).turn()
    assert turn.text == "[the user sent an image: PNG, 640x480] Is it rising?"
    alone = ServerItem(image_item(image_url(8, 8), None), images=_check_images(
        image_item(image_url(8, 8), None))).turn()  # type: ignore[arg-type]
    assert alone.text == "[the user sent an image: PNG, 8x8]"
    context = ReplyContext(instructions="Be brief.", history=[turn], tools=[],
                           tool_choice="auto", max_output_tokens=None)
    prompt = build_messages(context)
    assert prompt[-1] == {"role": "user",
                          "content": "[the user sent an image: PNG, 640x480] Is it rising?"}
