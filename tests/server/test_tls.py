"""TLS on loopback: the local server serves ``wss://`` with a certificate it makes once."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.sync.client import connect

from rtwidget.server import LocalServer
from rtwidget.server.tls import loopback_certificate


def test_a_client_that_trusts_the_certificate_talks_over_wss(tmp_path: Path) -> None:
    cert = loopback_certificate(tmp_path)
    assert stat.S_IMODE(os.stat(cert.key).st_mode) == 0o600
    assert loopback_certificate(tmp_path).cert.read_bytes() == cert.cert.read_bytes()  # kept
    with LocalServer(tls=cert) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        for host in ("127.0.0.1", "localhost"):
            url = server.url.replace("127.0.0.1", host)
            with connect(url, ssl=cert.client_context()) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        with pytest.raises(ssl.SSLCertVerificationError):  # not trusted: refused
            connect(server.url, ssl=ssl.create_default_context(), open_timeout=10)


def test_the_command_line_serves_tls_and_prints_the_certificate(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "rtwidget.server", "--scripted", "--tls",
                             "--port", "0"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "wss://127.0.0.1:" in lines[0]
    path = tmp_path / "rtwidget" / "tls" / "localhost.pem"
    assert lines[1].strip() == f"TLS certificate: {path}" and path.exists()
    assert f"NODE_EXTRA_CA_CERTS={path}" in lines[2]
