"""The page↔kernel messages declared in ``rtwidget/notebook/messages.py`` are the ones the page
(``js/*.js``) sends and handles, and the ones the kernel handles: no type goes both ways, none
is sent that the other side does not know."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rtwidget as rt
from rtwidget.notebook import messages
from rtwidget.notebook.messages import KERNEL_TO_PAGE, PAGE_TO_KERNEL, UP

JS = Path(__file__).resolve().parents[2] / "js"
SEND = re.compile(r"\bmodel\.send\(")
SEND_TYPED = re.compile(r"\bmodel\.send\(\s*\{\s*type:\s*\"(\w+)\"")


def sent_by_page() -> set[str]:
    """Every type the page sends: each ``model.send(`` in ``js/*.js`` names its type as a
    literal first, so none can slip by."""
    found: set[str] = set()
    for path in sorted(JS.glob("*.js")):
        text = path.read_text()
        typed = SEND_TYPED.findall(text)
        assert len(typed) == len(SEND.findall(text)), \
            f"{path.name}: a model.send( whose message does not start with a literal type"
        found.update(typed)
    return found


def method_body(text: str, name: str) -> str:
    """The body of the method ``name(...) {`` in ``text``, by its braces."""
    start = re.search(rf"^\s+{name}\([^)]*\)\s*\{{", text, re.M)
    assert start is not None, f"no method {name}"
    depth, at = 1, start.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[at], 0)
        at += 1
    return text[start.end():at - 1]


def handled_by_page() -> set[str]:
    """Every type the page handles: the cases of the engine's ``onMessage`` (the listener of
    the model's custom messages, ``js/widget.js``)."""
    assert "own.onMessage(msg, buffers)" in (JS / "widget.js").read_text()
    body = method_body((JS / "engine.js").read_text(), "onMessage")
    return set(re.findall(r"^\s+case \"(\w+)\":", body, re.M))


def test_the_page_sends_exactly_the_messages_declared_page_to_kernel() -> None:
    assert sent_by_page() == set(PAGE_TO_KERNEL)


def test_the_page_handles_exactly_the_messages_declared_kernel_to_page() -> None:
    assert handled_by_page() == set(KERNEL_TO_PAGE)


def test_no_message_type_goes_both_ways() -> None:
    assert not set(PAGE_TO_KERNEL) & set(KERNEL_TO_PAGE)
    with pytest.raises(ValueError, match="declared twice"):
        messages._declare(messages.READY, UP, "again")


def test_every_message_says_what_it_is_and_the_constants_name_them() -> None:
    constants = {value for name, value in vars(messages).items()
                 if name.isupper() and isinstance(value, str) and name not in ("UP", "DOWN",
                                                                                "PCM")}
    assert constants == set(PAGE_TO_KERNEL) | set(KERNEL_TO_PAGE)
    for message in [*PAGE_TO_KERNEL.values(), *KERNEL_TO_PAGE.values()]:
        assert message.doc and all(message.fields.values()), message.type


def test_the_kernel_handles_every_message_the_page_sends() -> None:
    session = rt.RealtimeSession("local", url="ws://127.0.0.1:9/v1/realtime", connect=False)
    chat = rt.VoiceChat(session, connect=False)
    try:
        assert set(chat._link.handlers) == set(PAGE_TO_KERNEL)
    finally:
        chat.close()
