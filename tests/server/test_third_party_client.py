"""The official ``openai`` package's realtime client works against the local server."""

from __future__ import annotations

import asyncio

from openai import AsyncOpenAI

from rtwidget.server import LocalServer


def test_openai_realtime_client_runs_a_text_turn() -> None:
    async def run() -> list[str]:
        server = await LocalServer().start()
        try:
            client = AsyncOpenAI(api_key="unused",
                                 websocket_base_url=f"ws://127.0.0.1:{server.port}/v1")
            seen: list[str] = []
            async with client.realtime.connect(model="gpt-realtime") as conn:
                await conn.session.update(session={"type": "realtime",
                                                   "output_modalities": ["text"]})
                await conn.conversation.item.create(item={
                    "type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "hi from openai"}]})
                await conn.response.create()
                async for event in conn:
                    seen.append(event.type)
                    if event.type == "response.done":
                        assert event.response.status == "completed"
                        assert event.response.usage is not None
                        break
            return seen
        finally:
            await server.stop()

    seen = asyncio.run(asyncio.wait_for(run(), 30))
    assert seen[0] == "session.created"
    assert "response.output_text.delta" in seen and "error" not in seen
