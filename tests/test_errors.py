"""Every exception a user can catch is a RealtimeError, and still the stdlib error it was."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pandas as pd
import pytest

import rtwidget as rt
from rtwidget.data.frame import export
from rtwidget.protocol import configuration, session_config, to_pcm16
from rtwidget.server import CombinedSynthesizer, LocalServer

# Exceptions that never reach a user, so they need not be RealtimeErrors.
INTERNAL = {
    "rtwidget.server.output.TokenLimit": "the local server's signal that a reply reached "
                                         "max_output_tokens; its response runner catches it",
}


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of the package, by qualified name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(rt.__path__, "rtwidget."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found[f"{info.name}.{cls.__qualname__}"] = cls
    return found


def test_every_exception_the_package_defines_is_a_realtime_error() -> None:
    classes = _exception_classes()
    assert "rtwidget.protocol.errors.RealtimeError" in classes  # the walk saw the package
    assert len(classes) > 10
    outside = sorted(name for name, cls in classes.items()
                     if not issubclass(cls, rt.RealtimeError) and name not in INTERNAL)
    assert outside == [], f"not RealtimeErrors: {outside}"


def test_the_internal_list_names_only_classes_that_exist_and_need_it() -> None:
    classes = _exception_classes()
    for name in INTERNAL:
        assert name in classes, f"{name} is gone: drop it from INTERNAL"
        assert not issubclass(classes[name], rt.RealtimeError), f"{name} needs no exemption"


@pytest.mark.parametrize(("error", "old"), [
    (rt.InvalidInput, ValueError),
    (rt.ConfigError, ValueError),
    (rt.AudioFormatError, ValueError),
    (rt.RecordingError, ValueError),
    (rt.RecordingExists, FileExistsError),
    (rt.WaitTimeout, TimeoutError),
    (rt.UsageError, RuntimeError),
    (rt.NotFound, KeyError),
    (rt.NotFound, IndexError),
    (rt.EngineError, RuntimeError),
    (rt.EngineUnavailable, RuntimeError),
])
def test_an_error_is_still_the_stdlib_error_older_code_catches(
        error: type[Exception], old: type[Exception]) -> None:
    assert issubclass(error, rt.RealtimeError) and issubclass(error, old)
    assert error.__name__ in rt.__all__ and getattr(rt, error.__name__) is error


def test_not_found_reads_as_its_message() -> None:
    assert str(rt.NotFound("no tool 'x' in this registry")) == "no tool 'x' in this registry"


def test_bad_input_to_pure_calls_raises_realtime_errors(tmp_path: Path) -> None:
    with pytest.raises(rt.ConfigError, match="max_output_tokens must be a positive int"):
        session_config(max_output_tokens=0)
    with pytest.raises(rt.ConfigError, match=r"threshold must be in \[0, 1\]"):
        configuration.turn_detection(threshold=2)
    with pytest.raises(rt.ConfigError, match="unknown provider"):
        rt.resolve("no-such-provider")
    with pytest.raises(rt.AudioFormatError, match="even number of bytes"):
        to_pcm16(b"abc")
    with pytest.raises(rt.RecordingError, match=r"no meta\.json"):
        rt.load_recording(tmp_path)
    with pytest.raises(rt.NotFound, match="no tool 'missing'"):
        rt.ToolRegistry().unregister("missing")
    with pytest.raises(rt.ToolError, match="timeout must be positive"):
        rt.build_tool(lambda: None, name="t", timeout=-1)
    with pytest.raises(rt.InvalidInput, match=r"export to \.parquet"):
        export(pd.DataFrame(), tmp_path / "conversation.csv")
    with pytest.raises(rt.ConfigError, match="needs at least one engine"):
        CombinedSynthesizer()
    with pytest.raises(rt.ConfigError, match="exposes the server"):
        LocalServer(host="0.0.0.0")
    with pytest.raises(rt.UsageError, match="start_in_thread"):
        LocalServer().close_connections()


def test_bad_calls_on_a_live_session_raise_realtime_errors_and_it_goes_on(
        server: LocalServer) -> None:
    with rt.RealtimeSession("local", url=server.url, output_modalities=["text"]) as s:
        with pytest.raises(rt.WaitTimeout):
            s.wait_for("no.such.event", timeout=0.2)
        with pytest.raises(rt.InvalidInput, match="cannot be sent as JSON"):
            s.send({"type": "response.create", "response": {"metadata": {"at": object()}}})
        done = s.expect("response.done")
        s.say("hello")
        done.wait()
        with pytest.raises(rt.UsageError, match="already waited for"):
            done.wait()
        assert s.ask("still there?", timeout=10) == "You said: still there?"
