"""Real providers as documented: Inworld's and OpenAI's documented messages against what rtwidget
parses and builds, and each gap where a real provider differs from our own server, over real
sockets (``doc_provider.InworldLike`` reshapes the local server's events the documented way)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_RETRY, RawClient
from support.doc_provider import BACKCHANNEL_PCM, InworldLike

import rtwidget as rt
from rtwidget.client.inworld_auth import JwtMinter
from rtwidget.protocol import Conversation, client_events
from rtwidget.server import LocalServer

FIXTURES = Path(__file__).parent / "fixtures"
INWORLD = json.loads((FIXTURES / "inworld_documented.json").read_text())
OPENAI = json.loads((FIXTURES / "openai_documented.json").read_text())
PORTAL_KEY = "aW53b3JsZC1rZXk6c2VjcmV0"  # base64 of key:secret, as the portal shows it


@pytest.fixture
def inworld(server: LocalServer) -> Iterator[InworldLike]:
    with InworldLike(server.url) as proxy:
        yield proxy


def inworld_session(proxy: InworldLike, **config: Any) -> rt.RealtimeSession:
    endpoint = rt.resolve("inworld", url=proxy.url, api_key=PORTAL_KEY)
    return rt.RealtimeSession(endpoint=endpoint, reconnect=FAST_RETRY,
                              output_modalities=["text"], **config)


# --- documented messages ------------------------------------------------------------------------


@pytest.mark.parametrize("entry", INWORLD["server"] + OPENAI["server"],
                         ids=lambda e: e["message"]["type"])
def test_each_documented_server_message_parses(entry: dict[str, Any]) -> None:
    conv = Conversation()
    conv.apply({"type": "session.created", "session": {"id": "s"}})
    conv.apply(entry["message"])
    assert not conv.problems, (entry["source"], conv.problems)
    if entry["message"]["type"] == "error":
        info = conv.errors[-1]
        assert info.message == entry["message"]["error"]["message"]
        assert info.event_id == entry["message"]["error"]["event_id"]


def _built(entry: dict[str, Any]) -> dict[str, Any]:
    builder = entry["builder"]
    if builder == "text_message":
        return client_events.item_create(client_events.text_message(entry["text"]))
    if builder == "response_create":
        return client_events.response_create(**entry["overrides"])
    return client_events.session_update(rt.protocol.session_config(**builder))


def _same_fields(documented: Any, built: Any, where: str = "") -> None:
    """Every documented field is in the built message with the same value; the built message
    adds only an ``event_id`` and the session's ``type``."""
    if isinstance(documented, dict):
        assert isinstance(built, dict), where
        extra = set(built) - set(documented) - {"event_id"} - ({"type"} if where == ".session"
                                                              else set())
        assert not extra, f"{where}: rtwidget adds {extra}"
        for key, value in documented.items():
            assert key in built, f"{where}.{key} missing"
            _same_fields(value, built[key], f"{where}.{key}")
    else:
        assert documented == built and type(documented) in (type(built), int), where


@pytest.mark.parametrize("entry", INWORLD["client"], ids=lambda e: e["message"]["type"])
def test_client_messages_built_for_inworld_match_the_documented_ones(entry: dict[str, Any]) -> None:
    _same_fields(entry["message"], _built(entry))


def test_client_messages_built_for_openai_match_its_typed_schema() -> None:
    """Every client event rtwidget builds validates against the ``openai`` package's client
    event models (from OpenAI's OpenAPI spec), with no field those models do not know."""
    from openai.types.realtime import RealtimeClientEvent
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
    tool = {"type": "function", "name": "f", "description": "d",
            "parameters": {"type": "object", "properties": {}}}
    session = rt.protocol.session_config(
        model="gpt-realtime", instructions="Be brief.", output_modalities=["audio"],
        max_output_tokens="inf", tools=[tool], tool_choice="f", voice="marin", speed=1.1,
        input_format="pcm16", output_format="pcm16", turn_detection={"type": "server_vad",
                                                                     "idle_timeout_ms": 5000},
        transcription="gpt-4o-mini-transcribe", noise_reduction="near_field")
    rt.protocol.configuration.check_session_for("openai", session)
    built = [
        client_events.session_update(session),
        client_events.input_audio_append(b"\0\0" * 480), client_events.input_audio_commit(),
        client_events.input_audio_clear(),
        client_events.item_create(client_events.text_message("hi")),
        client_events.item_create(client_events.text_message("hello", "assistant", "item_a")),
        client_events.item_create(client_events.audio_message(b"\0\0" * 480, transcript="hi")),
        client_events.item_create(client_events.function_call_output("call_1", "{}"),
                                  previous_item_id=None),
        client_events.item_retrieve("item_a"), client_events.item_delete("item_a"),
        client_events.item_truncate("item_a", 1500), client_events.response_cancel(),
        client_events.response_create(instructions="x", output_modalities=["text"], tools=[tool],
                                      tool_choice="none", max_output_tokens=50, conversation="none",
                                      metadata={"k": "v"}, voice="marin"),
    ]
    for event in built:
        model = adapter.validate_python(event)
        assert _unknown_fields(model) == [], event["type"]


def _unknown_fields(model: Any, where: str = "") -> list[str]:
    """Fields a pydantic model kept as extras (names its schema does not have), recursively."""
    from pydantic import BaseModel

    found: list[str] = []
    if isinstance(model, BaseModel):
        found += [f"{where}.{k}" for k in (model.model_extra or {})]
        for name in type(model).model_fields:
            found += _unknown_fields(getattr(model, name), f"{where}.{name}")
    elif isinstance(model, (list, tuple)):
        for i, value in enumerate(model):
            found += _unknown_fields(value, f"{where}[{i}]")
    return found


# --- 1. tool calls whose done event has no name --------------------------------------------------


def test_a_tool_call_without_name_on_its_done_event_still_runs(inworld: InworldLike) -> None:
    calls: list[str] = []

    def get_weather(city: str) -> dict[str, Any]:
        """Weather in a city."""
        calls.append(city)
        return {"city": city, "temp": 21}

    with inworld_session(inworld, tools=[get_weather]) as s:
        done = s.expect("response.function_call_arguments.done")
        s.ask("weather in Paris")
        assert "name" not in done.wait()  # the proxy really did strip it
        (result,) = s.tool_results.values()
    assert calls == ["Paris"]
    assert result.name == "get_weather" and result.error is None


# --- 2. only a confirmed session update is kept ------------------------------------------------


def test_a_rejected_update_is_not_kept_nor_sent_again_after_a_reconnect(
        server: LocalServer) -> None:
    with rt.RealtimeSession("local", url=server.url, reconnect=FAST_RETRY,
                            output_modalities=["text"], instructions="A") as s:
        s.update(instructions="B")
        with pytest.raises(rt.ServerError, match="temperature") as err:
            s.update(instructions="C", temperature=5.0)
        assert err.value.info.caused_by == "session.update"
        assert s.config["instructions"] == "B" and "temperature" not in s.config
        reconnected = s.expect("rtwidget.reconnected")
        assert server.close_connections(1011) == 1
        reconnected.wait()
        s.ask("hi")  # the re-sent configuration has been applied by now
        (conn,) = server.connections
        assert conn.session["instructions"] == "B"
        assert not [e for e in s.errors if e.caused_by == "session.update"
                    and e is not err.value.info and "temperature" not in e.message]


def test_updates_sent_together_each_get_their_own_answer(server: LocalServer) -> None:
    """``session.updated`` names no request: answers that arrive back to back go to the
    updates in the order they were sent."""
    with rt.RealtimeSession("local", url=server.url, output_modalities=["text"],
                            reconnect=FAST_RETRY) as s:
        async def together() -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(s.aio.update(instructions=f"v{i}")
                                               for i in range(5))))

        answers = s.call(together, timeout=60)
        assert [a["instructions"] for a in answers] == [f"v{i}" for i in range(5)]
        assert s.config["instructions"] == "v4"

        @rt.tool
        def get_weather(city: str) -> str:
            """Weather."""
            return city

        # the registry's change and this update each send a session.update, back to back
        session = s.update(tools=rt.tools)
        assert [t["name"] for t in session["tools"]] == ["get_weather"]


def test_a_rejected_tools_update_leaves_the_tools_as_they_were(server: LocalServer) -> None:
    def first(x: int) -> int:
        """First."""
        return x

    with rt.RealtimeSession("local", url=server.url, tools=[first],
                            output_modalities=["text"]) as s:
        with pytest.raises(rt.ToolError):  # a name no server accepts: refused at the call
            s.update(tools=[{"type": "function", "name": "bad name!"}])
        with pytest.raises(rt.ServerError):
            s.update(tools=[{"type": "function", "name": "fine", "parameters": "no schema"}])
        assert [d["name"] for d in s.tools.definitions()] == ["first"]
        assert [t["name"] for t in s.config["tools"]] == ["first"]


# --- 3. errors without event_id ---------------------------------------------------------------


def test_an_error_without_event_id_answers_the_request_waiting_for_it(
        inworld: InworldLike) -> None:
    with inworld_session(inworld) as s:
        with pytest.raises(rt.ServerError, match="named no event_id") as err:  # not a timeout
            s.retrieve("item_nope", timeout=20)
        assert err.value.info.event_id is None and err.value.info.matched_by_order
        assert err.value.info.caused_by == "conversation.item.retrieve"
        assert err.value.code == "item_retrieve_invalid_item_id"


def test_errors_without_event_id_go_to_the_request_of_their_kind(inworld: InworldLike) -> None:
    """Two requests wait at once; each unnamed error goes to the one its param/code fits."""
    with inworld_session(inworld) as s:
        async def both() -> list[BaseException]:
            results = await asyncio.gather(
                s.aio.update(temperature=9.0), s.aio.delete("item_gone", timeout=20),
                return_exceptions=True)
            return [r for r in results if isinstance(r, BaseException)]

        update_error, delete_error = s.call(both, timeout=30)
    assert isinstance(update_error, rt.ServerError)
    assert update_error.info.param == "session.temperature"
    assert update_error.info.caused_by == "session.update"
    assert isinstance(delete_error, rt.ServerError)
    assert delete_error.info.caused_by == "conversation.item.delete"


# --- 4. voices, as the List Voices API documents them ------------------------------------------


class _VoicesApi(BaseHTTPRequestHandler):
    """Inworld's List Voices API as documented: ``filter``, ``pageSize``, ``pageToken``; an old
    ``langCode`` parameter is refused."""

    queries: list[dict[str, list[str]]] = []

    def do_GET(self) -> None:
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(self.path).query)
        _VoicesApi.queries.append(query)
        page = json.loads(json.dumps(INWORLD["voices"]["page"]))
        if "langCode" in query or query.get("filter") != ['lang_code = "en"'] \
                or query.get("pageSize", ["0"])[0] == "0":
            self.send_response(400)
            self.end_headers()
            return
        if query.get("pageToken") == ["1-20"]:
            page = {"voices": [dict(page["voices"][0], voiceId="Clive", displayName="Clive")],
                    "totalSize": 42}
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_voices_by_language_use_the_documented_filter_and_pages() -> None:
    _VoicesApi.queries = []
    for host in _http(_VoicesApi):
        df = rt.voices("inworld", api_key=PORTAL_KEY, language="en",
                       url=f"ws://{host}/api/v1/realtime/session")
    assert list(df["name"]) == ["Alex", "your_workspace_id__my_voice_clone_demo_20260218_223134z",
                                "Clive"]
    assert [q.get("pageToken") for q in _VoicesApi.queries] == [None, ["1-20"]]


def test_the_local_server_pages_and_filters_its_voices_the_same_way() -> None:
    from rtwidget.server.voice_list import inworld_page

    rows = [{"name": f"v{i}", "language": "en-us" if i % 2 else "fr", "description": "",
             "tags": []} for i in range(7)]
    first = inworld_page(rows, {"filter": 'lang_code = "en"', "pageSize": "2"})
    assert first is not None
    assert [v["voiceId"] for v in first["voices"]] == ["v1", "v3"] and first["totalSize"] == 3
    rest = inworld_page(rows, {"filter": 'lang_code = "en"', "pageSize": "2",
                               "pageToken": first["nextPageToken"]})
    assert rest is not None and [v["voiceId"] for v in rest["voices"]] == ["v5"]
    assert "nextPageToken" not in rest
    assert inworld_page(rows, {"filter": "voice = 1"}) is None


# --- 5. Inworld auth: Basic, JWT, minted JWT -----------------------------------------------------


def _iw1_ok(header: str, secret: str, key_id: str) -> bool:
    """Inworld's IW1-HMAC-SHA256 header checked the documented way (by the test, on its own)."""
    scheme, _, rest = header.partition(" ")
    fields = dict(part.split("=", 1) for part in rest.split(","))
    if scheme != "IW1-HMAC-SHA256" or fields.get("ApiKey") != key_id:
        return False
    key = ("IW1" + secret).encode()
    for part in (fields["DateTime"], "api-engine.inworld.ai",
                 "ai.inworld.engine.WorldEngine/GenerateToken", fields["Nonce"]):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, b"iw1_request", hashlib.sha256).hexdigest()
    stamp = dt.datetime.strptime(fields["DateTime"], "%Y%m%d%H%M%S").replace(
        tzinfo=dt.timezone.utc)
    fresh = abs((dt.datetime.now(dt.timezone.utc) - stamp).total_seconds()) < 300
    return hmac.compare_digest(expected, fields["Signature"]) and fresh


class _TokenApi(BaseHTTPRequestHandler):
    minted = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not _iw1_ok(self.headers.get("Authorization", ""), "s3cret", "key-id") \
                or body != {"key": "key-id", "resources": ["workspaces/default-workspace"]}:
            self.send_response(401)
            self.end_headers()
            return
        _TokenApi.minted += 1
        data = json.dumps(INWORLD["jwt"]["answer"]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_a_jwt_minted_from_key_and_secret_goes_as_bearer(server: LocalServer) -> None:
    token = INWORLD["jwt"]["answer"]["token"]
    with InworldLike(server.url, authorized=lambda h: h == f"Bearer {token}") as proxy:
        for host in _http(_TokenApi):
            endpoint = rt.resolve("inworld", url=proxy.url, key_id="key-id", key_secret="s3cret")
            assert endpoint.token_source is not None
            endpoint.token_source.url = f"http://{host}/auth/v1/tokens/token:generate"  # type: ignore[attr-defined]
            for _ in range(2):
                with rt.RealtimeSession(endpoint=endpoint, output_modalities=["text"]) as s:
                    assert s.ask("hi") == "You said: hi"
            bad = JwtMinter("key-id", "wrong", url=endpoint.token_source.url)  # type: ignore[attr-defined]
            with pytest.raises(rt.AuthenticationError, match="mint"):
                bad()
    assert _TokenApi.minted == 1  # reused until it nears expiry
    assert "s3cret" not in repr(endpoint) and "s3cret" not in repr(endpoint.token_source)


def test_a_given_jwt_goes_as_bearer_and_a_pasted_basic_prefix_is_removed(
        server: LocalServer) -> None:
    token = INWORLD["jwt"]["answer"]["token"]
    seen: list[str] = []
    with InworldLike(server.url, authorized=lambda h: seen.append(h) or True) as proxy:
        for key in (token, f"Basic {PORTAL_KEY}", f"  {PORTAL_KEY}\n"):
            with rt.RealtimeSession(endpoint=rt.resolve("inworld", url=proxy.url, api_key=key),
                                    output_modalities=["text"]) as s:
                s.ask("hi")
        with rt.RealtimeSession(endpoint=rt.resolve("inworld", url=proxy.url, jwt=token),
                                output_modalities=["text"]) as s:
            s.ask("hi")
    assert seen == [f"Bearer {token}", f"Basic {PORTAL_KEY}", f"Basic {PORTAL_KEY}",
                    f"Bearer {token}"]
    with pytest.raises(ValueError, match="key_secret"):
        rt.resolve("inworld", key_id="only-the-id")


# --- 6. OpenAI GA: only what it accepts -------------------------------------------------------


def test_openai_gets_a_local_error_for_fields_ga_rejects(server: LocalServer) -> None:
    endpoint = rt.resolve("openai", url=server.url, api_key="sk-test")
    for bad, match in (({"temperature": 0.7}, "temperature"),
                       ({"output_modalities": ["audio", "text"]}, "audio or in text"),
                       ({"tts_model": "inworld-tts-1.5-max"}, "tts_model"),
                       ({"provider_data": {"tts": {}}}, "providerData")):
        with pytest.raises(ValueError, match=match):
            rt.RealtimeSession(endpoint=endpoint, connect=False, **bad).close()
    with rt.RealtimeSession(endpoint=endpoint, output_modalities=["text"]) as s:
        with pytest.raises(ValueError, match="temperature"):
            s.update(temperature=0.5)
        with pytest.raises(ValueError, match="audio or in text"):
            s.create_response(output_modalities=["text", "audio"])
        assert s.ask("still here") == "You said: still here"
    sent = [e.payload for e in s.conversation.log if e.direction == "out"]
    assert sent and not any("temperature" in json.dumps(e) for e in sent)
    # Inworld takes them
    rt.RealtimeSession(endpoint=rt.resolve("inworld", url=server.url, api_key="k"),
                       connect=False, temperature=0.7, output_modalities=["audio", "text"],
                       tts_model="inworld-tts-1.5-max").close()


def test_beta_dialect_and_azure_preview_are_deprecated_and_azure_defaults_to_ga() -> None:
    with pytest.warns(DeprecationWarning, match="retired"):
        rt.resolve("openai", api_key="sk", dialect="beta")
    azure = rt.resolve("azure", url="https://res.openai.azure.com", api_key="k",
                       deployment="my-rt")
    assert azure.connect_url() == "wss://res.openai.azure.com/openai/v1/realtime?model=my-rt"
    with pytest.warns(DeprecationWarning, match="preview"):
        rt.resolve("azure", url="https://res.openai.azure.com", api_key="k",
                   deployment="my-rt", api_version="2025-04-01-preview")


# --- 7. providerData and back-channel audio ----------------------------------------------------


def test_provider_data_is_a_typed_option_sent_as_inworld_documents_it(
        inworld: InworldLike, server: LocalServer) -> None:
    backchannel: rt.protocol.configuration.Backchannel = {"enabled": True, "max_per_turn": 2}
    with inworld_session(inworld, provider_data={"backchannel": backchannel}) as s:
        s.update(provider_data={"memory": {"enabled": True}})
        (conn,) = server.connections
        assert conn.session["providerData"] == {"backchannel": backchannel,
                                                "memory": {"enabled": True}}
        with pytest.raises(ValueError, match="no branch 'speed'"):
            s.update(provider_data={"speed": 2})


def test_the_widget_plays_back_channel_audio_without_counting_it_as_a_reply(
        server: LocalServer) -> None:
    from support.fake_browser import FakeBrowser

    with InworldLike(server.url, backchannel=True) as proxy:
        chat = rt.chat(endpoint=rt.resolve("inworld", url=proxy.url, api_key=PORTAL_KEY))
        try:
            browser = FakeBrowser(chat)
            browser.wait(lambda: chat.status == "connected")
            browser.message({"type": "ready"})
            browser.message({"type": "mic_audio", "seq": 1}, [b"\0\0" * 960])
            sent = browser.wait(lambda: len(browser.of_type("backchannel")) == 2 and
                                browser.of_type("backchannel"))
            assert b"".join(buffers[0] for _, buffers in sent) == BACKCHANNEL_PCM
            assert chat.stats["backchannel_out"] == 2 and chat.stats["audio_out"] == 0
            assert not browser.of_type("reply_audio") and len(chat.df) == 0
        finally:
            chat.close()


# --- 8 and 9. the local server as third-party clients see it ------------------------------------


def _all_server_events(server: LocalServer) -> list[dict[str, Any]]:
    """A session that makes the local server emit every kind of event it has."""
    client = RawClient(server.url)
    try:
        send = client.send
        send({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["audio"], "tools": [
                {"type": "function", "name": "get_weather", "parameters": {
                    "type": "object", "properties": {"city": {"type": "string"}}}}],
            "audio": {"input": {"transcription": {"model": "any"}, "turn_detection": {
                "type": "server_vad", "idle_timeout_ms": 300}}}}})
        client.until("session.updated")
        send(client_events.item_create(client_events.text_message("weather in Paris")))
        send(client_events.response_create())
        client.until("response.done")
        send(client_events.item_create(client_events.text_message("hello there")))
        send(client_events.response_create())
        done = client.until("response.done")
        item_id = done["response"]["output"][0]["id"]
        send(client_events.item_retrieve(item_id))
        client.until("conversation.item.retrieved")
        send(client_events.item_truncate(item_id, 10))
        client.until("conversation.item.truncated")
        send(client_events.item_delete(item_id))
        client.until("conversation.item.deleted")
        for _ in range(30):  # quiet seconds until the idle timeout (after the reply "played")
            send(client_events.input_audio_append(b"\0\0" * 24000))
            if any(e["type"] == "input_audio_buffer.timeout_triggered"
                   for e in client.drain()):
                break
        else:
            raise AssertionError("the idle timeout never fired")
        kinds = [e["type"] for e in client.seen]
        if "response.done" not in kinds[kinds.index("input_audio_buffer.timeout_triggered"):]:
            client.until("response.done")
        send(client_events.input_audio_append(b"\0\0" * 2400))
        send(client_events.input_audio_clear())
        client.until("input_audio_buffer.cleared")
        send(client_events.session_update({"type": "realtime", "output_modalities": ["text"]}))
        send(client_events.item_create(client_events.text_message("long story")))
        send(client_events.response_create())
        client.until("response.output_text.delta")
        send(client_events.response_cancel())
        client.until("response.done")
        send(client_events.item_retrieve("item_missing"))
        client.until("error")
        return client.seen
    finally:
        client.close()


def _drain(self: RawClient) -> list[dict[str, Any]]:
    """Events that have already arrived (waiting at most 0.2 s for the first)."""
    out: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            out.append(self.next(timeout=0.2 if not out else 0.01))
    return out


RawClient.drain = _drain  # type: ignore[attr-defined]


def test_every_local_server_event_validates_against_the_openai_models(
        server: LocalServer) -> None:
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    seen = _all_server_events(server)
    kinds = {e["type"] for e in seen}
    assert {"response.content_part.added", "response.output_audio.delta",
            "response.function_call_arguments.done", "input_audio_buffer.timeout_triggered",
            "conversation.item.truncated", "error"} <= kinds
    # the session's id and object (which GA servers send too) and the two Inworld fields the
    # local server also takes are the only names the models do not have
    allowed = {".session.id", ".session.object", ".session.temperature",
               ".session.audio.output.model"}
    failures = []
    for event in seen:
        try:
            unknown = set(_unknown_fields(adapter.validate_python(event))) - allowed
        except Exception as exc:  # collect them all, then fail with the list
            failures.append(f"{event['type']}: {str(exc)[:300]}")
        else:
            failures += [f"{event['type']}: unknown field {name}" for name in unknown]
    assert not failures, "\n".join(failures)
    parts = [e["part"]["type"] for e in seen if e["type"].startswith("response.content_part")]
    assert set(parts) == {"audio", "text"}


def test_idle_timeout_fires_after_a_reply_and_starts_another(server: LocalServer) -> None:
    client = RawClient(server.url)
    try:
        client.send({"type": "session.update", "session": {
            "output_modalities": ["text"],
            "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                   "idle_timeout_ms": 500}}}}})
        client.until("session.updated")
        client.send(client_events.input_audio_append(b"\0\0" * 24 * 600))
        # nothing before a reply
        client.send(client_events.item_create(client_events.text_message("hi")))
        client.send(client_events.response_create())
        client.until("response.done")
        client.send(client_events.input_audio_append(b"\0\0" * 24 * 400))  # not yet
        client.send(client_events.input_audio_append(b"\0\0" * 24 * 200))
        fired = client.until("input_audio_buffer.timeout_triggered")
        assert fired["audio_end_ms"] - fired["audio_start_ms"] == 600
        assert fired["audio_start_ms"] == 600
        committed = client.until("input_audio_buffer.committed")
        assert committed["item_id"] == fired["item_id"]
        client.until("response.created")
        client.until("response.done")
        before = [e["type"] for e in client.seen].count("input_audio_buffer.timeout_triggered")
        assert before == 1
    finally:
        client.close()


def test_the_openai_agents_realtime_runner_uses_a_tool_on_the_local_server(
        server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    from agents import function_tool
    from agents.realtime import RealtimeAgent, RealtimeRunner

    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    async def run() -> list[str]:
        agent = RealtimeAgent(name="helper", instructions="Be brief.", tools=[get_weather])
        runner = RealtimeRunner(agent, config={"model_settings": {
            "model_name": "gpt-realtime", "modalities": ["text"]}})
        seen: list[str] = []
        session = await runner.run(model_config={
            "url": server.url, "api_key": "unused"})
        async with session:
            await session.send_message("weather in Paris")
            answered = 0
            async for event in session:
                seen.append(event.type)
                if event.type == "error":
                    raise AssertionError(f"the SDK reported an error: {event}")
                if event.type == "raw_model_event" and \
                        getattr(event.data, "type", "") == "error":
                    raise AssertionError(f"the SDK reported an error: {event.data}")
                if event.type == "agent_end":
                    answered += 1
                    if calls and answered >= 2:
                        break
        return seen

    seen = asyncio.run(asyncio.wait_for(run(), 60))
    assert calls == ["Paris"]
    assert "tool_end" in seen
    problems = [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")
                and r.name.startswith(("openai.agents", "agents"))]
    assert not problems, [r.getMessage()[:300] for r in problems]


def test_back_channel_pcm_is_decoded_and_bad_audio_is_dropped() -> None:
    from rtwidget.notebook.transport import backchannel_pcm

    good = {"delta": base64.b64encode(b"\1\0\2\0").decode()}
    assert backchannel_pcm(good) == b"\1\0\2\0"
    assert backchannel_pcm({"delta": "not base64!"}) == b""
    assert backchannel_pcm({}) == b""
