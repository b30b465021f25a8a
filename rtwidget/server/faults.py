"""When an engine of the local server cannot do its part: which engine it was, what it said,
and what fixes it, as the ``error`` event (and the failed ``response.done``) the client sees.

An engine that raises mid-response is wrapped in :class:`EngineFailed` where it is called (the
synthesizer in :mod:`.output`, the reply engine in :mod:`.responses`, the transcriber in
:mod:`.item_store`), so the message names the part and the engine, never just the exception.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from ..protocol.errors import EngineError, EngineUnavailable

_NAMES = {
    "FliteSynthesizer": "Flite", "EspeakSynthesizer": "eSpeak NG", "ToneSynthesizer": "tones",
    "PocketsphinxTranscriber": "PocketSphinx", "ScriptedReplyEngine": "scripted replies",
    "LlamaReplyEngine": "llama.cpp", "ChatCompletionsReplyEngine": "chat completions",
}


def engine_name(engine: Any) -> str:
    """A short name for people: ``Flite``, ``PocketSphinx``, ``llama.cpp (SmolLM2...)``, or
    the engine's class name for engines plugged in by the user."""
    cls = type(engine).__name__
    name = _NAMES.get(cls, cls)
    url, detail = getattr(engine, "url", None), getattr(engine, "name", None)
    if isinstance(url, str) and url:
        return f"{name} at {url}"
    return f"{name} ({detail})" if isinstance(detail, str) and detail else name


def what_it_said(exc: BaseException) -> str:
    """The failure in a sentence: a missing package with its install command, a command's exit
    status with the last lines it wrote, or the exception's type and message."""
    if isinstance(exc, EngineError):  # the engines' own errors say what happened
        return str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.partition(".")[0]
        return (f"the Python module '{exc.name}' is not installed; install the package that "
                f"provides it (often pip install {top}; pip install 'rtwidget[local]' has the "
                "offline engines)")
    if isinstance(exc, (subprocess.CalledProcessError, subprocess.TimeoutExpired)):
        command = exc.cmd[0] if isinstance(exc.cmd, (list, tuple)) and exc.cmd else exc.cmd
        command = os.path.basename(str(command))
        if isinstance(exc, subprocess.TimeoutExpired):
            return f"the command {command} did not finish within {exc.timeout:g} s"
        said = exc.stderr or exc.output or b""
        text = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        tail = ": " + " / ".join(lines[-3:])[:300] if lines else " and wrote nothing"
        return f"the command {command} exited with status {exc.returncode}{tail}"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename} was not found ({exc.strerror or exc})"
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class EngineFailed(EngineError):
    """An engine raised while serving a request: ``part`` (``text to speech``, ``replies``,
    ``speech to text``), the engine's name, and the exception (``cause``)."""

    def __init__(self, part: str, engine: str, cause: BaseException) -> None:
        self.part = part
        self.engine = engine
        self.cause = cause
        self.missing = isinstance(cause, (EngineUnavailable, ModuleNotFoundError))
        verb = "cannot run" if self.missing else "failed"
        super().__init__(f"{part.capitalize()} ({engine}) {verb}: {what_it_said(cause)}")

    @property
    def code(self) -> str:
        """``engine_unavailable`` (something to install) or ``engine_failed``."""
        return "engine_unavailable" if self.missing else "engine_failed"

    def error(self) -> dict[str, Any]:
        """The ``error`` of a failed response's ``status_details`` (``type``, ``code``,
        ``message``); the ``error`` event's adds ``param`` and ``event_id``."""
        return {"type": "server_error", "code": self.code, "message": str(self)}


def fault(part: str, engine: Any, exc: BaseException) -> EngineFailed:
    """``exc`` as an :class:`EngineFailed` of ``engine`` doing ``part`` (an
    :class:`EngineFailed` already is one)."""
    if isinstance(exc, EngineFailed):
        return exc
    return EngineFailed(part, engine_name(engine), exc)


def internal_error(exc: BaseException) -> dict[str, Any]:
    """The ``error`` object for a failure of the server's own code (not an engine's)."""
    return {"type": "server_error", "code": "server_error",
            "message": f"The local server failed: {what_it_said(exc)} (its log has the "
                       "details)"}
