"""An API key goes to the server in a header and nowhere else: not in reprs, logs (even at DEBUG,
where the websockets library prints every header), exceptions, the event log, the DataFrame,
widget state, exports, or a saved notebook."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import rtwidget as rt
from rtwidget import AuthenticationError, RealtimeSession
from rtwidget.protocol.redact import mask_url
from rtwidget.server import LocalServer

KEY = "sk-test-" + os.urandom(12).hex()


def test_a_whole_session_at_debug_level_logs_no_key(caplog: pytest.LogCaptureFixture,
                                                     tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    with LocalServer(token=KEY) as srv:
        with RealtimeSession("local", url=srv.url, api_key=KEY,
                             output_modalities=["text"]) as s:
            assert s.ask("hello") == "You said: hello"
            reconnected = s.expect("rtwidget.reconnected", timeout=30)
            srv.close_connections(1011)
            reconnected.wait()
            s.ask("again")
            seen = [repr(s), repr(s.endpoint), s.endpoint.describe(),
                    s.events.to_json(date_format="iso"), s.df.to_json(date_format="iso"),
                    repr(list(s.conversation.log)), repr(s.conversation.problems),
                    repr(s.conversation.errors)]
            exported = s.export(tmp_path / "talk.jsonl").read_text()
        with pytest.raises(AuthenticationError) as refused:
            RealtimeSession("local", url=srv.url, api_key=KEY + "-wrong")
    assert "Authorization" in caplog.text  # the headers were logged: masked
    for text in [caplog.text, *seen, exported, str(refused.value), repr(refused.value)]:
        assert KEY not in text


def test_credentials_in_urls_are_masked_wherever_the_url_is_shown(
        caplog: pytest.LogCaptureFixture) -> None:
    assert mask_url(f"wss://host/v1/realtime?model=m&api_key={KEY}&token=t") == \
        "wss://host/v1/realtime?model=m&api_key=***&token=***"
    assert mask_url(f"wss://user:{KEY}@host/x") == "wss://host/x"
    caplog.set_level(logging.DEBUG)
    with LocalServer(token=KEY) as srv:
        url = f"{srv.url}?token={KEY}"  # the local server also takes its token in the query
        with RealtimeSession("local", url=url, output_modalities=["text"]) as s:
            s.ask("hi")
            chat = rt.VoiceChat(s, connect=False)
            shown = [s.endpoint.describe(), repr(s), json.dumps(chat.get_state(),
                                                                default=str)]
            chat.close()
    for text in [caplog.text, *shown]:
        assert KEY not in text


def test_ask_key_reads_a_hidden_prompt_into_the_environment(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or KEY)
    monkeypatch.delenv("INWORLD_API_KEY", raising=False)
    rt.ask_key("inworld")
    assert os.environ["INWORLD_API_KEY"] == KEY
    assert KEY not in prompts[0]
    endpoint = rt.resolve()
    assert endpoint.provider == "inworld" and KEY not in repr(endpoint)
    monkeypatch.setattr("getpass.getpass", lambda prompt: "  ")
    with pytest.raises(ValueError, match="no key"):
        rt.ask_key("openai")
    with pytest.raises(ValueError, match="inworld"):
        rt.ask_key("nobody")


@pytest.mark.timeout(180)
def test_a_saved_notebook_holds_no_key(tmp_path: Path) -> None:
    """A notebook that does everything a careless user might — DEBUG logging, printing the
    session, showing the widget, the DataFrames, a failed connection — saved with its
    outputs."""
    cells = [
        """import logging, os
logging.basicConfig(level=logging.DEBUG)
import rtwidget as rt
from rtwidget.server import LocalServer
server = LocalServer(token=os.environ["RT_TEST_KEY"]).start_in_thread()""",
        """chat = rt.chat(url=server.url, api_key=os.environ["RT_TEST_KEY"],
                  output_modalities=["text"], record="rec")
chat""",
        "print(chat.ask('hello there'))\nprint(chat.session, chat.session.endpoint)",
        "chat.df",
        "chat.events",
        "chat.session.conversation.log[-1]",
        """try:
    rt.RealtimeSession(url=server.url, api_key=os.environ["RT_TEST_KEY"] + "x")
except Exception as exc:
    print(repr(exc))""",
        "rt.RealtimeSession(url=server.url, api_key=os.environ['RT_TEST_KEY'][:-1])",
        "chat.close()",
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    os.environ["RT_TEST_KEY"] = KEY
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["RT_TEST_KEY"]
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    text = path.read_text()
    assert "Authorization" in text  # the DEBUG log reached the outputs, masked
    assert "AuthenticationError" in text  # and so did the failure
    assert "hello there" in text
    for file in [path, *(tmp_path / "rec").iterdir()]:
        assert KEY.encode() not in file.read_bytes(), file.name
