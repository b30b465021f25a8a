"""A server (or a proxy in front of one) that quotes the API key back: the key is masked where
server events are decoded, so it reaches no exception, no ``session.errors``, no event log or
export, no recording and no widget trait. Over real sockets: a quoting proxy on 127.0.0.1 in
front of a real local server."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

import rtwidget as rt
from rtwidget.protocol.wire import decode_event
from rtwidget.server import LocalServer

pytestmark = pytest.mark.timeout(120)

KEY = f"sk-proj/{os.urandom(12).hex()}+q="  # a '/' so the JSON-escaped form differs


class QuotingProxy:
    """Forwards a client to the local server and quotes the key the client authenticated with
    back to it: in every ``error`` event (message, param, code, a nested object and its keys),
    in reply text, escaped as ``\\/`` by a JSON encoder that does so; on command it closes the
    connection with the key in the close reason."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.close_next = False
        self.server: Server = serve(self._handle, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/v1/realtime"

    def __enter__(self) -> QuotingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(5)

    def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        header = ws.request.headers.get("Authorization", "")
        key = header.partition(" ")[2]
        with connect(self.upstream, max_size=None) as up:
            def client_to_server() -> None:
                try:
                    for message in ws:
                        up.send(message)
                except WsClosed:
                    pass
                up.close()

            threading.Thread(target=client_to_server, daemon=True).start()
            try:
                for message in up:
                    if self.close_next:
                        self.close_next = False
                        ws.close(1011, f"upstream refused {key}")
                        return
                    ws.send(self._quote(json.loads(message), header, key))
            except WsClosed:
                pass

    @staticmethod
    def _quote(event: dict[str, Any], header: str, key: str) -> str:
        if event.get("type") == "error":
            error = event["error"]
            error["message"] = f"{error.get('message')} (you sent {header!r})"
            error["param"] = key
            error["code"] = f"bad_{key}"
            error["details"] = {key: [f"key={key}", {"nested": key}]}
        text = json.dumps(event).replace("You said", f"You [{key}] said")  # in every reply event
        return text.replace("/", "\\/")  # as PHP-style encoders write it


@pytest.fixture
def proxy() -> Iterator[QuotingProxy]:
    with LocalServer() as srv, QuotingProxy(srv.url) as quoting:
        yield quoting


def leaks(*texts: str) -> list[str]:
    return [text[:120] for text in texts if KEY in text or KEY.replace("/", "\\/") in text]


def test_a_key_quoted_in_errors_and_replies_is_masked_everywhere_it_could_land(
        proxy: QuotingProxy, tmp_path: Path) -> None:
    endpoint = rt.resolve("url", url=proxy.url, api_key=KEY)
    with rt.RealtimeSession(endpoint=endpoint, output_modalities=["text"],
                            record=tmp_path / "rec") as s:
        with pytest.raises(rt.ServerError) as refused:
            s.retrieve("item_that_is_not_there", timeout=10)
        answer = s.ask("hello there", timeout=30)
        assert "***" in answer
        s.export(tmp_path / "log.json")
        s.export(tmp_path / "log.jsonl")
        info = s.errors[-1]
        texts = [str(refused.value), refused.value.info.message, str(info), repr(info),
                 str(info.param), str(info.code), answer, s.df.to_json(date_format="iso"),
                 s.events.to_json(date_format="iso"),
                 repr(s.conversation.log), "\n".join(s.conversation.problems),
                 (tmp_path / "log.json").read_text(), (tmp_path / "log.jsonl").read_text()]
    texts += [file.read_bytes().decode("utf-8", "replace") for file in (tmp_path / "rec").iterdir()]
    assert "***" in str(refused.value) and info.param == "***"
    assert leaks(*texts) == []


def test_a_key_in_a_close_reason_is_masked_in_the_reconnect_notice(proxy: QuotingProxy) -> None:
    endpoint = rt.resolve("url", url=proxy.url, api_key=KEY)
    with rt.RealtimeSession(endpoint=endpoint, output_modalities=["text"],
                            reconnect=rt.Reconnect(base_delay=0.05, max_delay=0.2)) as s:
        reconnected = s.expect("rtwidget.reconnected", timeout=30)
        proxy.close_next = True
        s.say("hello", respond=True)
        reconnected.wait()
        notices = [json.dumps(entry.payload, default=str) for entry in s.conversation.log
                   if entry.type.startswith("rtwidget.")]
        assert any("upstream refused ***" in n for n in notices)
        assert leaks(*notices, "\n".join(s.conversation.problems)) == []


def test_the_widgets_error_trait_shows_the_servers_error_without_the_key(
        proxy: QuotingProxy) -> None:
    chat = rt.chat("url", url=proxy.url, api_key=KEY, output_modalities=["text"])
    try:
        eventually(lambda: chat.status == "connected", 30, "the widget connecting")
        with pytest.raises(rt.ServerError):
            chat.session.retrieve("item_that_is_not_there", timeout=10)
        eventually(lambda: "***" in chat.error, 10, "the error trait being set")
        assert leaks(chat.error, json.dumps(chat.get_state(), default=str)) == []
    finally:
        chat.close()


@pytest.mark.parametrize("text", [
    '{"type": "error", "error": {"message": "bad KEY"}}',
    '{"type": "x", "KEY": {"KEY": ["a KEY b", {"deep": ["KEYKEY"]}]}}',
    '{"type": "x", "note": "KEY_ESCAPED"}',
    '{"type": "x", "note": "KEY_UNICODE"}',
])
def test_decoding_masks_every_string_and_key_in_every_shape(text: str) -> None:
    rt.resolve("url", url="ws://127.0.0.1:9/v1/realtime", api_key=KEY)  # the key is known
    escaped = KEY.replace("/", "\\/")
    unicode = "".join(f"\\u{ord(c):04x}" for c in KEY)
    raw = text.replace("KEY_ESCAPED", escaped).replace("KEY_UNICODE", unicode) \
        .replace("KEY", KEY)
    event, problem = decode_event(raw)
    assert problem is None and event is not None
    assert KEY not in json.dumps(event) and "***" in json.dumps(event)
    plain = '{"type": "response.output_text.delta", "delta": "nothing secret"}'
    decoded, _ = decode_event(plain)
    assert decoded == json.loads(plain)
