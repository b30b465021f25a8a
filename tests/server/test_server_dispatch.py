"""The local server's dispatch: every client event it accepts reaches a handler."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import socketless_connection

from rtwidget.protocol import client_events
from rtwidget.server.validation import CLIENT_EVENTS


def test_every_client_event_the_server_accepts_has_a_handler() -> None:
    """A type that passed validation but had no handler would come back as a server_error."""
    silence = bytes(960)
    samples: dict[str, dict[str, Any]] = {
        "session.update": client_events.session_update({"instructions": "Be brief."}),
        "input_audio_buffer.append": client_events.input_audio_append(silence),
        "input_audio_buffer.commit": client_events.input_audio_commit(),
        "input_audio_buffer.clear": client_events.input_audio_clear(),
        "conversation.item.create": client_events.item_create(
            client_events.text_message("hi", item_id="i1")),
        "conversation.item.retrieve": client_events.item_retrieve("i1"),
        "conversation.item.truncate": client_events.item_truncate("i1", 0),
        "conversation.item.delete": client_events.item_delete("i1"),
        "response.create": client_events.response_create(output_modalities=["text"]),
        "response.cancel": client_events.response_cancel(),
        "output_audio_buffer.clear": {"type": "output_audio_buffer.clear"},
    }
    assert set(samples) == set(CLIENT_EVENTS)

    async def run() -> list[dict[str, Any]]:
        conn, sent = socketless_connection()
        for kind in CLIENT_EVENTS:
            await conn.receive(json.dumps({**samples[kind], "event_id": kind}))
        await conn.close()
        return sent

    sent = asyncio.run(run())
    errors = {e["error"]["event_id"]: e["error"]["code"] for e in sent if e["type"] == "error"}
    assert "server_error" not in errors.values(), errors
    answered = {"session.updated", "input_audio_buffer.cleared", "conversation.item.added",
                "conversation.item.retrieved", "conversation.item.deleted", "response.created"}
    assert answered <= {e["type"] for e in sent}
