"""The embedded server in a supervised child process: a crash in it costs a restart and a
reconnect, never the process that started it (the notebook's kernel), and it never outlives
that process. Real processes, real signals, real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST_RETRY, eventually

import rtwidget as rt
from rtwidget.client import local_process
from rtwidget.client.local_process import LocalServerProcess, ServerExit, crash_culprit

POSIX = pytest.mark.skipif(os.name != "posix", reason="signals and process groups are POSIX")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (dead, not yet reaped by its parent) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


@pytest.fixture
def shared_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServerProcess]:
    """The process-wide local server sessions use by default, with scripted replies paced so
    that a reply lasts long enough to be crashed in the middle of."""
    server = LocalServerProcess(["--scripted", "--pace", "0.02"]).start()
    monkeypatch.setattr(local_process, "_shared", server)
    yield server
    server.stop()


@POSIX
def test_a_crash_during_a_reply_costs_a_restart_and_a_reconnect_not_the_kernel(
        shared_server: LocalServerProcess) -> None:
    with rt.RealtimeSession(reconnect=FAST_RETRY, output_modalities=["text"]) as session:
        assert session.endpoint.provider == "local" and session.endpoint.is_loopback
        assert "hello" in session.ask("Say hello").lower()
        first_pid = shared_server.pid
        assert first_pid is not None
        deltas = session.expect("response.output_text.delta")
        session.say("Tell me a long story about " + "octopuses and " * 40 + "the sea.")
        deltas.wait()  # the reply is being written now
        os.kill(first_pid, signal.SIGSEGV)

        crashed = session.wait_for("rtwidget.server_crashed", timeout=30)
        assert "SIGSEGV" in crashed["reason"]
        session.wait_for("rtwidget.reconnected", timeout=60)
        assert shared_server.pid != first_pid and _alive(shared_server.pid or 0)
        assert not _alive(first_pid)
        assert shared_server.restarts == 1 and shared_server.exits[0].signal_name == "SIGSEGV"

        df = session.df
        assert "Say hello" in df["text"].tolist()  # the earlier items are still there
        cut = df[df["status"] == "incomplete"]
        assert len(cut) == 1 and "crashed (SIGSEGV)" in str(cut["error"].iloc[0])
        assert "Paris" in session.ask("Repeat after me: Paris", timeout=30)


@POSIX
def test_the_server_never_outlives_the_process_that_started_it(tmp_path: Path) -> None:
    kernel = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from rtwidget.client.local_process import LocalServerProcess
            server = LocalServerProcess(["--scripted"]).start()
            print(server.pid, flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert kernel.stdout is not None
        server_pid = int(kernel.stdout.readline())
        assert _alive(server_pid)
        kernel.kill()  # SIGKILL: no atexit, no cleanup of any kind
        kernel.wait()
        eventually(lambda: not _alive(server_pid), timeout=10,
                   what="the server's exit after its parent was killed")
    finally:
        kernel.kill()


@POSIX
def test_an_interrupt_of_the_kernel_does_not_reach_the_server() -> None:
    server = LocalServerProcess(["--scripted"]).start()
    try:
        assert server.pid is not None
        assert os.getpgid(server.pid) != os.getpgid(0)  # SIGINT to our group passes it by
    finally:
        server.stop()
    assert not server.running


@POSIX
def test_an_engine_that_crashes_the_server_as_it_starts_is_left_out(tmp_path: Path) -> None:
    # stands in for a reply engine whose self-test dies in native code on this CPU: the
    # server crashes while starting unless it runs with scripted replies
    python = tmp_path / "python"
    python.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, signal, sys
        if "--scripted" not in sys.argv:
            os.kill(os.getpid(), signal.SIGSEGV)
        os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])
    """))
    python.chmod(0o755)
    server = LocalServerProcess(python=str(python)).start()
    try:
        assert server.running and "--scripted" in server.args
        assert len(server.exits) == 1 and server.exits[0].during_start
        assert server.exits[0].describe() == \
            "the local server crashed (SIGSEGV) while starting"
        with rt.RealtimeSession("local", url=server.url, api_key=server.endpoint().secret
                                .reveal(), output_modalities=["text"]) as session:
            assert session.ask("ping").startswith("You said")
    finally:
        server.stop()


def test_the_server_refuses_connections_without_its_token() -> None:
    server = LocalServerProcess(["--scripted"]).start()
    try:
        with pytest.raises(rt.AuthenticationError):
            rt.RealtimeSession("local", url=server.url).connect()
    finally:
        server.stop()


def test_a_crash_report_names_the_engine_it_happened_in(tmp_path: Path) -> None:
    # a real crash report: faulthandler's output for a segfault in native code called from a
    # file laid out like the server's reply engine
    engine = tmp_path / "rtwidget" / "server" / "llm.py"
    engine.parent.mkdir(parents=True)
    engine.write_text("import ctypes\n\ndef _stream():\n    ctypes.string_at(0)\n")
    crashed = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c",
         f"import runpy; runpy.run_path({str(engine)!r})['_stream']()"],
        capture_output=True, text=True)
    assert crashed.returncode == -signal.SIGSEGV
    assert crash_culprit(crashed.stderr) == ("its reply engine (llama.cpp)", "replies")
    words = ServerExit(crashed.returncode, False, *crash_culprit(crashed.stderr)).describe()
    assert words == "the local server crashed in its reply engine (llama.cpp) (SIGSEGV)"
    assert crash_culprit("Traceback (most recent call last):\n  ValueError") == (None, None)


def test_a_kill_is_told_apart_from_a_crash() -> None:
    assert ServerExit(-9, False).describe() == \
        "the local server was killed (SIGKILL: out of memory, or stopped by hand)"
    assert ServerExit(1, True, detail="OSError: no room").describe() == \
        "the local server stopped (exit status 1): OSError: no room while starting"


@POSIX
def test_the_server_process_gets_no_provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-never-for-the-server")
    monkeypatch.setenv("INWORLD_SECRET", "never-for-the-server-either")
    server = LocalServerProcess(["--scripted"]).start()
    try:
        environ = Path(f"/proc/{server.pid}/environ").read_bytes()
        assert b"never-for-the-server" not in environ
        assert b"RTWIDGET_SERVER_TOKEN=" in environ  # its own token, which is all it needs
    finally:
        server.stop()


def test_an_engine_left_out_is_not_loaded_and_says_so() -> None:
    from rtwidget.server.defaults import best_available

    found = best_available(["replies", "silero"])
    assert found.model == "local/scripted" and "local/smollm2" not in found.engines
    assert found.vad != "silero"
    assert "replies (SmolLM2 on llama.cpp): left out" in found.missing
    with pytest.raises(rt.ConfigError, match="unknown engine"):
        best_available(["the kitchen sink"])
