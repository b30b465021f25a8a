"""Providers: the local server stands in for each provider's URL and auth scheme and records
what it receives; recorded event dialects replay into the Conversation; voices come from a
local HTTP stub of Inworld's documented List Voices response."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import rtwidget as rt
from rtwidget.protocol import Conversation
from rtwidget.server import LocalServer

FIXTURES = Path(__file__).parents[1] / "fixtures"
INWORLD_KEY = "aW53b3JsZC1wb3J0YWwta2V5OnNlY3JldA=="  # a portal key is already base64


@pytest.fixture
def guarded(engine) -> Iterator[LocalServer]:
    """A local server that only lets in the Inworld test key."""
    with LocalServer(engine=engine, token=INWORLD_KEY) as srv:
        yield srv


def test_inworld_url_basic_auth_and_a_fresh_session_id_per_connection(guarded) -> None:
    url = guarded.url.replace("/v1/realtime", "/api/v1/realtime/session")
    endpoint = rt.resolve("inworld", url=url, api_key=INWORLD_KEY)
    for _ in range(2):
        with rt.RealtimeSession(endpoint=endpoint, output_modalities=["text"],
                                model="inworld/my-router", tts_model="inworld-tts-1.5-max",
                                extra={"providerData": {"tts": {"temperature": 1.1}}}) as s:
            assert s.ask("hi") == "You said: hi"
            (conn,) = guarded.connections
            assert conn.session["model"] == "inworld/my-router"
            assert conn.session["providerData"] == {"tts": {"temperature": 1.1}}  # untouched
    first, second = guarded.handshakes[-2:]
    assert first.path == "/api/v1/realtime/session" and first.auth_scheme == "Basic"
    assert first.query["protocol"] == ["realtime"]
    assert first.query["key"] != second.query["key"]  # a fresh session id each time
    fixed = rt.resolve("inworld", url=url, api_key=INWORLD_KEY, session_key="my-session")
    assert "key=my-session" in fixed.connect_url()
    assert INWORLD_KEY not in repr(fixed) and INWORLD_KEY not in fixed.describe()


def test_openai_bearer_model_query_and_beta_header(engine) -> None:
    with LocalServer(engine=engine, token="sk-test-key") as srv:
        with pytest.warns(DeprecationWarning, match="beta"):
            endpoint = rt.resolve("openai", url=srv.url, api_key="sk-test-key",
                                  model="openai/gpt-realtime", dialect="beta")
        with rt.RealtimeSession(endpoint=endpoint, output_modalities=["text"]) as s:
            assert s.ask("ok") == "You said: ok"
        shake = srv.handshakes[-1]
        assert shake.auth_scheme == "Bearer" and shake.query["model"] == ["gpt-realtime"]
        assert shake.headers["openai-beta"] == "realtime=v1"
        assert "authorization" not in shake.headers  # the server never keeps the secret


def test_azure_endpoint_deployment_api_version_and_api_key_header(engine) -> None:
    with LocalServer(engine=engine, token="azure-key") as srv:
        base = srv.url.replace("ws://", "http://").replace("/v1/realtime", "")
        endpoint = rt.resolve("azure", url=base, api_key="azure-key", deployment="my-rt")
        assert endpoint.connect_url() == base.replace("http://", "ws://") + \
            "/openai/v1/realtime?model=my-rt"  # GA
        with pytest.warns(DeprecationWarning, match="preview"):
            preview = rt.resolve("azure", url=base, api_key="azure-key", deployment="my-rt",
                                 api_version="2025-04-01-preview")
        assert preview.connect_url().startswith(base.replace("http://", "ws://") +
                                                "/openai/realtime?")
        for ep in (endpoint, preview):
            with rt.RealtimeSession(endpoint=ep, output_modalities=["text"]) as s:
                assert s.ask("ok") == "You said: ok"
        ga, old = srv.handshakes[-2:]
        assert ga.path == "/openai/v1/realtime" and ga.query == {"model": ["my-rt"]}
        assert old.query == {"api-version": ["2025-04-01-preview"], "deployment": ["my-rt"]}
        assert "api-key" in old.header_names and "api-key" not in old.headers


def test_any_url_with_custom_headers(server: LocalServer) -> None:
    with rt.RealtimeSession(url=server.url, headers={"X-Team": "blue"},
                            output_modalities=["text"]) as s:
        s.ask("hi")
    assert server.handshakes[-1].headers["x-team"] == "blue"


def test_precedence_explicit_then_environment_then_local(monkeypatch) -> None:
    for name in ("INWORLD_API_KEY", "OPENAI_API_KEY", "RTWIDGET_URL", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert rt.resolve().provider == "local"
    monkeypatch.setenv("RTWIDGET_URL", "ws://127.0.0.1:1/v1/realtime")
    assert rt.resolve().provider == "url"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert rt.resolve().provider == "openai"
    monkeypatch.setenv("INWORLD_API_KEY", "iw-env")
    assert rt.resolve().provider == "inworld"
    assert rt.resolve("openai").provider == "openai"  # explicit wins
    assert rt.resolve("local").provider == "local"


@pytest.mark.parametrize(("fixture", "text", "unknown"), [
    ("inworld_text_turn.jsonl", "Hello there!", 2),
    ("openai_beta_text_turn.jsonl", "Hi! How can I help?", 0),
])
def test_recorded_dialects_replay_into_the_conversation(fixture: str, text: str,
                                                        unknown: int) -> None:
    conv = Conversation()
    for line in (FIXTURES / fixture).read_text().splitlines():
        conv.apply(json.loads(line))
    _user, assistant = list(conv)
    assert assistant.display_text == text and assistant.status == "completed"
    assert conv.responses[assistant.response_id].usage["total_tokens"] > 0
    assert conv.unknown_events == unknown  # Inworld's extra events are kept in the log
    assert not conv.problems


class _VoicesStub(BaseHTTPRequestHandler):
    """Inworld's documented List Voices response, in two pages."""

    requests: list[dict[str, str]] = []

    def do_GET(self) -> None:
        _VoicesStub.requests.append({"path": self.path,
                                     "auth": self.headers.get("Authorization", "")})
        if self.headers.get("Authorization") != f"Basic {INWORLD_KEY}":
            self.send_response(401)
            self.end_headers()
            return
        if "pageSize=" not in self.path:  # the documented paging is used
            self.send_response(400)
            self.end_headers()
            return
        if "pageToken=p2" in self.path:
            body = {"voices": [{"voiceId": "Clive", "langCode": "EN_US", "displayName": "Clive",
                                "description": "Calm British voice.", "tags": ["male"],
                                "source": "SYSTEM"}]}
        else:
            body = {"voices": [{"voiceId": "Dennis", "langCode": "EN_US",
                                "displayName": "Dennis", "description": "Friendly voice.",
                                "tags": ["male", "casual"], "source": "SYSTEM"}],
                    "nextPageToken": "p2"}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def voices_stub() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _VoicesStub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _VoicesStub.requests = []
    yield f"ws://127.0.0.1:{httpd.server_address[1]}/api/v1/realtime/session"
    httpd.shutdown()
    httpd.server_close()


def test_inworld_voices_are_listed_across_pages(voices_stub: str) -> None:
    df = rt.voices("inworld", api_key=INWORLD_KEY, url=voices_stub)
    assert list(df["name"]) == ["Dennis", "Clive"]
    assert list(df.columns) == ["name", "display_name", "language", "description", "tags"]
    assert df.iloc[0]["tags"] == ["male", "casual"]
    assert _VoicesStub.requests[0]["path"] == "/voices/v1/voices?pageSize=100"


def test_voices_are_cached_per_session(voices_stub: str, guarded: LocalServer) -> None:
    session = rt.RealtimeSession(endpoint=rt.resolve("inworld", url=voices_stub,
                                                     api_key=INWORLD_KEY), connect=False)
    try:
        session.voices()
        session.voices()
        assert len(_VoicesStub.requests) == 2  # two pages, fetched once
    finally:
        session.close()


def test_voices_errors_are_clear(voices_stub: str, monkeypatch) -> None:
    monkeypatch.delenv("INWORLD_API_KEY", raising=False)
    with pytest.raises(rt.AuthenticationError, match="INWORLD_API_KEY"):
        rt.voices("inworld", url=voices_stub)
    with pytest.raises(rt.AuthenticationError, match="refused the key"):
        rt.voices("inworld", url=voices_stub, api_key="wrong")
    with pytest.raises(rt.RealtimeError, match="could not reach"):
        rt.voices("inworld", api_key=INWORLD_KEY, url="ws://127.0.0.1:9/api/v1/realtime/session")


def test_the_local_server_answers_the_voices_call_offline(server: LocalServer) -> None:
    df = rt.voices("local", url=server.url)
    assert list(df["name"]) == ["tone"]
    assert rt.voices("openai")["name"].str.len().gt(0).all()
