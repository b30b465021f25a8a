"""The JavaScript clients people use work against the local server: the ``openai`` npm
package's realtime WebSocket client (``wss://`` only, so the server serves TLS with its loopback
certificate, trusted through ``NODE_EXTRA_CA_CERTS``) and the OpenAI Agents SDK for JavaScript,
whose zod schemas check every server event. Text, audio, a tool, a cancel during audio,
truncate and delete, with no schema error (``tests/support/js_clients.mjs``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtwidget.server import LocalServer, ScriptedReplyEngine
from rtwidget.server.tls import loopback_certificate
from tests.conftest import RULES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "support" / "js_clients.mjs"
PACKAGES = ("openai", "@openai/agents-realtime", "ws")


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    absent = [p for p in PACKAGES if not (ROOT / "node_modules" / p / "package.json").exists()]
    return f"npm ci has not installed {', '.join(absent)}" if absent else None


if (why := _missing()) is not None:
    if os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
        raise RuntimeError(f"the JavaScript client tests cannot run: {why}")
    pytest.skip(why, allow_module_level=True)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, Path]]:
    cert = loopback_certificate(tmp_path_factory.mktemp("tls"))
    with LocalServer(tls=cert, engine=ScriptedReplyEngine(rules=RULES), pace=0.002) as server:
        yield server, cert.cert


@pytest.mark.parametrize("client", ["openai", "agents"])
def test_a_javascript_client_runs_a_whole_conversation(
        client: str, tls_server: tuple[LocalServer, Path]) -> None:
    server, cert = tls_server
    url = server.url.replace("127.0.0.1", "localhost")
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(cert)}
    run = subprocess.run(["node", str(SCRIPT), client, url], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    lines = run.stdout.strip().splitlines()
    assert lines, run.stderr[-3000:]
    report = json.loads(lines[-1])
    assert report["problems"] == [], run.stderr[-3000:]
    assert run.returncode == 0
    assert {"response.output_audio.done", "response.function_call_arguments.done",
            "conversation.item.truncated", "conversation.item.deleted",
            "conversation.item.input_audio_transcription.failed"} <= set(report["types"])
