"""Tool names the wire refuses are refused where they are given, and an initial configuration
the server refuses makes the constructor raise (the widget shows it) instead of a session that
shows a configuration nobody confirmed. Over a real local server on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import WEATHER_TOOL, eventually

import rtwidget as rt
from rtwidget import RealtimeSession
from rtwidget.client.options import NO_RECONNECT
from rtwidget.server import LocalServer
from rtwidget.tooling.registry import ToolRegistry
from rtwidget.tooling.schema import build_tool

pytestmark = pytest.mark.timeout(120)


def weather(city: str) -> str:
    """The weather."""
    return f"sunny in {city}"


BAD_NAMES = ["météo", "天气", "x" * 65, "get weather", "get.weather", "wetter!",
             "\uff46\uff55\uff4c\uff4c", "tab\tname"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_the_wire_refuses_is_refused_at_decoration_in_every_form(name: str) -> None:
    registry = ToolRegistry()
    forms: list[Callable[[], Any]] = [
        lambda: registry.register(name=name)(weather),
        lambda: registry.register(weather, name=name),
        lambda: registry.add(build_tool(weather, name=name)),
        lambda: rt.tool(name=name)(weather),
        lambda: RealtimeSession(tools=[{**WEATHER_TOOL, "name": name}], connect=False),
    ]
    for form in forms:
        with pytest.raises(rt.ToolError, match="name"):
            form()
    assert registry.names == [] and name not in rt.tools


def test_a_function_whose_own_name_the_wire_refuses_is_refused_with_a_working_suggestion(
) -> None:
    namespace: dict[str, Any] = {}
    exec("def météo_du_jour(ville: str) -> str:\n    return ville", namespace)
    with pytest.raises(rt.ToolError) as refused:
        rt.tool(namespace["météo_du_jour"])
    message = str(refused.value)
    assert "météo_du_jour" in message and "name='meteo_du_jour'" in message
    assert "64" in message
    with pytest.raises(rt.ToolError, match=r"name='x{64}'"):
        rt.tool(name="x" * 80)(weather)
    with pytest.raises(rt.ToolError, match=r"name="):
        rt.tool(lambda city: city)  # <lambda>
    assert "météo_du_jour" not in rt.tools


@pytest.mark.parametrize("name", ["a", "x" * 64, "get_weather", "get-weather-2", "A_b-9"])
def test_every_name_the_wire_accepts_is_accepted_and_offered(name: str) -> None:
    registry = ToolRegistry()
    registry.register(name=name)(weather)
    with LocalServer() as srv, RealtimeSession("local", url=srv.url, tools=registry,
                                               output_modalities=["text"]) as s:
        assert [t["name"] for t in s.config["tools"]] == [name]
        assert s.conversation.problems == []


@pytest.mark.parametrize("config", [
    {"temperature": 3.0},
    {"speed": 9.0},
    {"turn_detection": {"type": "whenever"}},
    {"extra": {"audio": {"output": {"voice": 7}}}},
    {"extra": {"type": "transcription"}},
])
def test_a_refused_initial_configuration_raises_from_the_constructor(
        config: dict[str, Any]) -> None:
    before = threading.active_count()
    with LocalServer() as srv:
        with pytest.raises(rt.ServerRejected, match="refused the session configuration"):
            RealtimeSession("local", url=srv.url, reconnect=NO_RECONNECT,
                            instructions="Be brief.", **config)
        eventually(lambda: not srv.connections, 10, "the refused connection closing")
        with RealtimeSession("local", url=srv.url, instructions="Be brief.",
                             output_modalities=["text"]) as fine:  # the server goes on
            assert fine.config["instructions"] == "Be brief."
    eventually(lambda: threading.active_count() <= before, 10, "threads ending")


def test_the_widget_shows_a_refused_initial_configuration() -> None:
    with LocalServer() as srv:
        chat = rt.chat("local", url=srv.url, temperature=3.0)
        try:
            eventually(lambda: chat.status == "closed", 30, "the widget giving up")
            assert "refused the session configuration" in chat.error
            assert "temperature" in chat.error
        finally:
            chat.close()
