"""pytest helpers: regression tests for your tools from recorded sessions.

Installed as a pytest plugin with rtwidget, it gives two fixtures:

- ``rt_server``: a local Realtime server on 127.0.0.1 for the test session, with the best
  offline engines installed (override this fixture in your ``conftest.py`` to use another
  server, e.g. ``LocalServer(engine=ScriptedReplyEngine(rules=...))`` for exact replies);
- ``rt_replay``: a function ``rt_replay(recording, *, speed=math.inf, tools=None, **config)``
  that replays a recording (a :class:`~rtwidget.Recording` or its folder) against ``rt_server``
  and returns the :class:`~rtwidget.Replay`: its ``df``, ``conversation`` and ``diff()``.

>>> def test_weather_tool_still_answers(rt_replay):          # doctest: +SKIP
...     run = rt_replay("recordings/weather-question")
...     calls = run.df.query("type == 'function_call'")
...     assert list(calls["tool_name"]) == ["get_weather"]
...     assert not run.diff(only_changed=True).query("aspect == 'tool calls'").size
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .recording.reader import Recording
    from .recording.replay import Replay
    from .server import LocalServer


def replay_recording(recording: Recording | str | Path, server: LocalServer, *,
                     speed: float = math.inf, tools: Any = None, **config: Any) -> Replay:
    """Replay ``recording`` against ``server`` (a running :class:`~rtwidget.LocalServer`) with
    the current ``tools`` (default: :data:`rtwidget.tools`) and the recorded configuration
    changed by ``config``; returns the :class:`~rtwidget.Replay`, its session still open."""
    from .recording.reader import Recording, load_recording

    loaded = recording if isinstance(recording, Recording) else load_recording(recording)
    return loaded.replay(provider="local", url=server.url, speed=speed, tools=tools, **config)


@pytest.fixture(scope="session")
def rt_server() -> Iterator[LocalServer]:
    """A local Realtime server (the ``fast`` profile's offline engines: PocketSphinx, Flite,
    the quickest to load) on 127.0.0.1 for the whole test session."""
    from .server import offline_server

    server = offline_server(profile="fast").start_in_thread()
    try:
        yield server
    finally:
        server.stop_in_thread()


@pytest.fixture
def rt_replay(rt_server: LocalServer) -> Iterator[Callable[..., Replay]]:
    """``rt_replay(recording, *, speed=math.inf, tools=None, **config)`` → a finished
    :class:`~rtwidget.Replay` against ``rt_server``; its session is closed after the test."""
    runs: list[Replay] = []

    def run(recording: Recording | str | Path, **options: Any) -> Replay:
        result = replay_recording(recording, rt_server, **options)
        runs.append(result)
        return result

    yield run
    for result in runs:
        result.close()
