"""A tool call's row as the page sees it (a front end played in the kernel): a running call
shows its progress and is cancelled by the page's ✕ (``cancel_tool``); an MCP tool's approval
request shows who asks for what, and the page's Approve (``mcp_approval``) lets the call run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from support.fake_browser import FakeBrowser

import rtwidget as rt
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine
from tests.support.mcp_server import serving_http

RULES = [Rule(r"slow", calls=[("slow", {})]),
         Rule(r"weather in (?P<city>\w+)", calls=[("weather", {"city": "{city}"})])]


@pytest.fixture
def tool_server() -> Iterator[LocalServer]:
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES)) as srv:
        yield srv


def rows_of(browser: FakeBrowser, test: Any) -> list[dict[str, Any]]:
    return [r for m, _ in browser.of_type("rows") for r in m["rows"] if test(r)]


def test_a_running_call_shows_progress_and_the_pages_cross_cancels_it(tool_server) -> None:
    async def slow(ctx: rt.CallContext) -> str:
        """Slow."""
        ctx.progress("warming up", 0.25)
        await asyncio.sleep(30)
        return "never"

    chat = rt.chat("local", url=tool_server.url, tools=[rt.build_tool(slow)],
                   output_modalities=["text"], filler_after=None)
    browser = FakeBrowser(chat)
    try:
        browser.wait(lambda: chat.status == "connected")
        browser.message({"type": "ready"})
        chat.say("slow please")
        running = browser.wait(lambda: rows_of(browser, lambda r: r["tool"] and
                                               r["tool"]["progress"] == "warming up"))
        tool = running[-1]["tool"]
        assert tool["status"] == "running" and tool["fraction"] == 0.25
        browser.message({"type": "cancel_tool", "call_id": tool["call_id"]})
        browser.wait(lambda: rows_of(browser, lambda r: r["tool"] and
                                     r["tool"]["status"] == "cancelled"))
        reply = browser.wait(lambda: rows_of(browser, lambda r: r["role"] == "assistant" and
                                             r["kind"] == "message" and r["status"] ==
                                             "completed"))
        assert "slow was cancelled by the user" in reply[-1]["text"]
        assert chat.df["tool_status"].dropna().tolist() == ["cancelled"]
    finally:
        chat.close()
    assert browser.undeclared == []


def test_the_pages_approve_lets_an_mcp_call_run(tool_server) -> None:
    with serving_http() as url:
        approve_through_the_page(tool_server, url)


def approve_through_the_page(tool_server: LocalServer, url: str) -> None:
    mcp = {"type": "mcp", "server_label": "tests", "server_url": url,
           "require_approval": "always"}
    chat = rt.chat("local", url=tool_server.url, tools=[mcp], output_modalities=["text"])
    browser = FakeBrowser(chat)
    try:
        browser.wait(lambda: chat.status == "connected")
        browser.message({"type": "ready"})
        browser.wait(lambda: any(i.type == "mcp_list_tools" and i.status == "completed"
                                 for i in chat.session.conversation), timeout=30)
        chat.say("What is the weather in Oslo?")
        asked = browser.wait(lambda: rows_of(browser, lambda r: r["approval"]), timeout=30)
        approval = asked[-1]["approval"]
        assert (approval["server"], approval["name"], approval["answer"]) == (
            "tests", "weather", None)
        browser.message({"type": "mcp_approval", "request_id": approval["request_id"],
                         "approve": True})
        reply = browser.wait(lambda: rows_of(browser, lambda r: r["role"] == "assistant" and
                                             "Oslo" in (r["text"] or "") and r["status"] ==
                                             "completed"), timeout=30)
        assert reply[-1]["text"] == "The tool returned Sunny and 21 degrees in Oslo."
        df = chat.df
        assert df.loc[df["type"] == "mcp_approval_response", "text"].tolist() == ["approved"]
    finally:
        chat.close()
    assert browser.undeclared == []
