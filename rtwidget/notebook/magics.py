"""IPython integration: ``%load_ext rtwidget`` registers ``%rtchat`` and ``%rttools``."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display

from ..tooling.registry import tools as default_tools
from .chat import chat


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%rtchat", add_help=False,
                                description="Show a voice chat bound to a new session.")
    p.add_argument("--name", default="chat", help="variable that gets the widget (chat)")
    p.add_argument("--provider", help="inworld, openai, url or local")
    p.add_argument("--url", help="any Realtime WebSocket URL")
    p.add_argument("--model", help="model id (provider/model) or inworld/<router>")
    p.add_argument("--voice", help="voice name")
    p.add_argument("--tts-model", dest="tts_model", help="TTS model, e.g. inworld-tts-1.5-max")
    p.add_argument("--instructions", help="system instructions")
    p.add_argument("--modalities", help="audio, text or audio,text")
    p.add_argument("--tools", help="comma-separated tool names, or 'none' (default: all)")
    p.add_argument("--tool-choice", dest="tool_choice", help="auto, none, required or a name")
    p.add_argument("--max-output-tokens", dest="max_output_tokens",
                   help="a number or inf")
    p.add_argument("--transcription", metavar="MODEL",
                   help="speech-to-text model for your words, or none (default: the "
                   "provider's own)")
    p.add_argument("--record", nargs="?", const=True, metavar="FOLDER",
                   help="record the session (to FOLDER, default recordings/<time>)")
    p.add_argument("-h", "--help", action="store_true")
    return p


def chat_kwargs(line: str) -> tuple[str, dict[str, Any]]:
    """Parse a ``%rtchat`` line into the variable name and :func:`rtwidget.chat` keywords."""
    args = _parser().parse_args(shlex.split(line))
    kwargs: dict[str, Any] = {}
    for key in ("provider", "url", "model", "voice", "tts_model", "instructions", "tool_choice"):
        value = getattr(args, key)
        if value:
            kwargs[key] = value
    if args.modalities:
        kwargs["output_modalities"] = [m.strip() for m in args.modalities.split(",")]
    if args.max_output_tokens:
        value = args.max_output_tokens
        kwargs["max_output_tokens"] = value if value == "inf" else int(value)
    if args.record:
        kwargs["record"] = args.record
    if args.transcription:
        kwargs["transcription"] = None if args.transcription == "none" else args.transcription
    if args.tools:
        kwargs["tools"] = False if args.tools == "none" else [
            t.strip() for t in args.tools.split(",") if t.strip()]
    return args.name, kwargs


@magics_class
class RealtimeMagics(Magics):
    """The ``%rtchat`` and ``%rttools`` magics."""

    @line_magic
    def rtchat(self, line: str) -> None:
        """%rtchat [--model M] [--voice V] [--tts-model T] [--instructions TEXT]
        [--modalities audio,text] [--provider P | --url URL] [--tools a,b | none] [--name chat]
        [--transcription MODEL | none] [--record [FOLDER]]

        Show a voice chat; the widget is stored in the variable named by --name."""
        if "-h" in line.split() or "--help" in line.split():
            print(_parser().format_help())
            return
        try:
            name, kwargs = chat_kwargs(line)
        except SystemExit:
            print(_parser().format_usage())
            return
        widget = chat(**kwargs)
        if self.shell is not None:
            self.shell.user_ns[name] = widget
        display(widget)

    @line_magic
    def rttools(self, line: str) -> Any:
        """%rttools: the tools in ``rtwidget.tools`` as a DataFrame."""
        return default_tools.frame()


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext rtwidget``."""
    ipython.register_magics(RealtimeMagics)
