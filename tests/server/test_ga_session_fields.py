"""The local server takes OpenAI's GA session fields as the hosted API does: checked, kept and
echoed in ``session.updated`` (strictly GA-shaped); and a session keeps them across
reconnects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rtwidget import RealtimeSession
from rtwidget.server import LocalServer
from tests.conftest import FAST_RETRY, eventually
from tests.support.ga_events import ga_problems

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" /
                      "openai_ga_session_fields.json").read_text())["fields"]
ALL = {k: v for entry in FIXTURE for k, v in entry["session"].items()}


def test_the_server_echoes_every_ga_field(raw: Any) -> None:
    raw.send({"type": "session.update", "session": {"type": "realtime", **ALL}})
    updated = raw.until("session.updated")
    assert ga_problems(updated) == []
    for key, value in ALL.items():
        assert updated["session"][key] == value


@pytest.mark.parametrize(("field", "value"), [
    ("truncation", {"type": "retention_ratio", "retention_ratio": 2}),
    ("reasoning", {"effort": "max"}), ("include", ["everything"]),
    ("tracing", {"name": "x"}), ("prompt", {"version": "1"}),
])
def test_the_server_refuses_a_malformed_ga_field(raw: Any, field: str, value: Any) -> None:
    raw.send({"type": "session.update", "event_id": "evt_ga",
              "session": {"type": "realtime", field: value}})
    error = raw.until("error")["error"]
    assert (error["code"], error["param"], error["event_id"]) == (
        "invalid_value", f"session.{field}", "evt_ga")


def test_a_session_keeps_its_ga_fields_across_reconnects(server: LocalServer) -> None:
    with RealtimeSession("local", url=server.url, reconnect=FAST_RETRY,
                         output_modalities=["text"], reasoning="low", truncation=0.8,
                         post_instructions=5000, parallel_tool_calls=False,
                         prompt={"id": "pmpt_123", "variables": {"city": "Paris"}}) as session:
        def settings() -> dict[str, Any]:
            conns = list(server.connections)
            assert len(conns) == 1
            return conns[0].session

        first = eventually(lambda: settings().get("reasoning") and settings())
        assert first["truncation"]["token_limits"] == {"post_instructions": 5000}
        server.close_connections(1012)
        again = eventually(lambda: settings() is not first and settings().get("prompt")
                           and settings(), what="the session re-sent after the reconnect")
        assert again["reasoning"] == {"effort": "low"} and again["parallel_tool_calls"] is False
        assert again["prompt"] == {"id": "pmpt_123", "variables": {"city": "Paris"}}
        assert session.config["truncation"]["retention_ratio"] == 0.8
