"""A reply engine that forwards to any OpenAI-compatible chat-completions endpoint (Ollama,
a llama.cpp server, vLLM...), streaming text and tool calls back into the Realtime session."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ..protocol.errors import EngineError
from .engines import HistoryTurn, ReplyChunk, ReplyContext, TextDelta, ToolCall, require
from .reply_prompt import DEFAULT_INSTRUCTIONS


def _message(turn: HistoryTurn) -> dict[str, Any]:
    if turn.type == "function_call":
        return {"role": "assistant", "content": None, "tool_calls": [{
            "id": turn.call_id, "type": "function",
            "function": {"name": turn.name, "arguments": turn.arguments or "{}"}}]}
    if turn.type == "function_call_output":
        return {"role": "tool", "tool_call_id": turn.call_id, "content": turn.output or ""}
    role = turn.role if turn.role in ("user", "assistant", "system") else "user"
    text = turn.text or (f"({turn.audio_ms / 1000:.1f} s of audio)" if turn.audio_ms else "")
    return {"role": role, "content": text}


def chat_request(context: ReplyContext, model: str) -> dict[str, Any]:
    """The chat-completions request for one response: instructions, history, tools."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "temperature": context.temperature,
        "messages": [{"role": "system", "content": context.instructions or
                      DEFAULT_INSTRUCTIONS}] + [_message(t) for t in context.history],
    }
    if context.max_output_tokens:
        body["max_tokens"] = context.max_output_tokens
    tools = [t for t in context.tools if t.get("name") in set(context.tool_names())]
    if tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t["name"], "description": t.get("description", ""),
            "parameters": t.get("parameters") or {"type": "object", "properties": {}}}}
            for t in tools]
        choice = context.tool_choice
        body["tool_choice"] = ({"type": "function", "function": {"name": choice["name"]}}
                               if isinstance(choice, dict) else choice)
    return body


class ChatCompletionsReplyEngine:
    """Replies from ``{base_url}/chat/completions`` (``base_url`` like
    ``http://127.0.0.1:11434/v1``). ``model`` names the remote model; ``api_key``, if any, is
    sent as a Bearer token. Errors from the endpoint end the response as ``failed`` with the
    endpoint's message."""

    def __init__(self, base_url: str, model: str = "default", api_key: str | None = None,
                 timeout: float = 120.0) -> None:
        self.httpx = require("httpx", "httpx")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<ChatCompletionsReplyEngine {self.url} model={self.model}>"

    async def reply(self, context: ReplyContext) -> AsyncIterator[ReplyChunk]:
        calls: dict[int, dict[str, str]] = {}
        async with self.httpx.AsyncClient(timeout=self.timeout) as client, client.stream(
            "POST", self.url, json=chat_request(context, self.model), headers=self._headers
        ) as response:
            if response.status_code >= 400:
                detail = (await response.aread()).decode(errors="replace")[:300]
                raise EngineError(f"{self.url} answered HTTP {response.status_code}: {detail}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        yield TextDelta(delta["content"])
                    for call in delta.get("tool_calls") or []:
                        slot = calls.setdefault(int(call.get("index", 0)),
                                                {"name": "", "arguments": ""})
                        function = call.get("function") or {}
                        slot["name"] += function.get("name") or ""
                        slot["arguments"] += function.get("arguments") or ""
        for _, call in sorted(calls.items()):
            yield ToolCall(call["name"], call["arguments"] or "{}")
