"""The embedded local server in a child process of its own, supervised.

Native engines (llama.cpp, onnxruntime, PocketSphinx, Flite) can crash in ways Python cannot
catch. Run inside the kernel, such a crash takes the user's notebook down with every variable
in it; run here, it costs a restart and a reconnect, and the sessions restore their history.
The engines' CPU work also stays off the kernel's interpreter lock, so the widget's comm thread
and the session loop never wait for a reply being written.

One server serves every session of the process (:func:`local_server`). It listens on
127.0.0.1 with a token made for this launch, which sessions send and nothing else knows. It
never outlives the process that started it: it exits when its standard input closes, which the
operating system does when this process ends in any way, SIGKILL included.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..protocol.errors import RealtimeError, ServerRejected
from .providers import ENV_KEYS, Endpoint, resolve

log = logging.getLogger("rtwidget.local")

START_TIMEOUT = 120.0  # loading the engines: a second or two, more on a cold disk
CRASH_WINDOW = 120.0  # crashes closer together than this count as a crash loop
MAX_QUICK_CRASHES = 3  # ...and after this many the engine to blame is left out
LOG_TAIL = 64 * 1024
CRASH_SIGNALS = frozenset({"SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"})

# where a crash's traceback points → what to call the engine, and its name for ``--without``
_CULPRITS: dict[str, tuple[str, str | None]] = {
    "llm": ("its reply engine (llama.cpp)", "replies"),
    "chat_api": ("its reply engine (a chat-completions endpoint)", None),
    "speech:synthesize": ("its voice (text to speech)", "flite"),
    "speech:transcribe": ("its ears (speech to text)", "speech to text"),
    "speech:stream": ("its ears (speech to text)", "speech to text"),
    "speech:feed": ("its ears (speech to text)", "speech to text"),
    "vad": ("its voice activity detector", "silero"),
    "whisper_ears": ("its ears (Whisper speech to text)", "whisper"),
    "piper_voice": ("its voice (Piper text to speech)", "piper"),
}


@dataclass(frozen=True)
class ServerExit:
    """How a local server process ended, read from its exit status and its crash report."""

    returncode: int | None
    during_start: bool
    culprit: str | None = None  # the engine the crash report points at, in words
    engine: str | None = None  # its name for ``--without``
    detail: str = ""
    at: float = field(default_factory=time.time)

    @property
    def signal_name(self) -> str | None:
        """``SIGSEGV`` and the like when a signal ended the process."""
        if self.returncode is None or self.returncode >= 0:
            return None
        with contextlib.suppress(ValueError):
            return signal.Signals(-self.returncode).name
        return f"signal {-self.returncode}"

    def facts(self) -> dict[str, Any]:
        """What the conversation's log keeps of it."""
        return {"cause": self.describe(), "returncode": self.returncode,
                "signal": self.signal_name, "engine": self.engine}

    def describe(self) -> str:
        """What happened, in plain words, for the widget and the conversation's log."""
        how = self.signal_name or (f"exit status {self.returncode}"
                                   if self.returncode is not None else "no answer")
        if self.signal_name == "SIGKILL" and self.culprit is None:
            what = "was killed (SIGKILL: out of memory, or stopped by hand)"
        elif self.culprit:
            what = f"crashed in {self.culprit} ({how})"
        elif self.signal_name in CRASH_SIGNALS:
            what = f"crashed ({how})"
        elif self.detail:
            what = f"stopped ({how}): {self.detail}"
        else:
            what = f"stopped ({how})"
        when = " while starting" if self.during_start else ""
        return f"the local server {what}{when}"


def crash_culprit(report: str) -> tuple[str | None, str | None]:
    """The engine a crash report (Python's ``faulthandler`` output) points at: the innermost
    frame of the crashing thread inside ``rtwidget/server/``, as (words, ``--without`` name)."""
    start = report.rfind("Fatal Python error")
    if start < 0:
        return None, None
    block = report[start:]
    current = re.search(r"^(?:Current thread|Thread) 0x[0-9a-f]+ [^\n]*\n((?:  File [^\n]*\n)+)",
                        block, re.MULTILINE)
    if current is None:
        return None, None
    for module, function in re.findall(
            r'File "[^"]*rtwidget[/\\]server[/\\](\w+)\.py", line \d+ in (\w+)', current[1]):
        found = _CULPRITS.get(f"{module}:{function}") or _CULPRITS.get(module)
        if found is not None:
            return found
    return None, None


def _read_tail(path: Path) -> str:
    with contextlib.suppress(OSError), path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - LOG_TAIL))
        return f.read().decode("utf-8", "replace")
    return ""


class LocalServerProcess:
    """The local Realtime server (``python -m rtwidget.server``) in a supervised child process.

    :meth:`start` launches it and returns once it serves; a server that dies (a crash in a
    native engine, out of memory, a kill) is started again at once. Sessions find the current
    address with :meth:`endpoint` before every connection attempt, and reconnect with their
    history; :meth:`explain` tells them, in plain words, why the connection went. An engine
    that crashes the server while it starts, or :data:`MAX_QUICK_CRASHES` times in a row, is
    left out of the next start (the reply engine falls back to scripted replies), and the
    server's ``missing`` list says so.

    ``args`` go to ``python -m rtwidget.server`` (for example ``["--scripted"]``).
    """

    def __init__(self, args: list[str] | None = None, *, start_timeout: float = START_TIMEOUT,
                 python: str = sys.executable) -> None:
        self.args = list(args or [])
        self.profile = (self.args[self.args.index("--profile") + 1]
                        if "--profile" in self.args[:-1] else "natural")
        self.start_timeout = start_timeout
        self.python = python
        self.exits: list[ServerExit] = []
        self.restarts = 0
        self.url = ""
        self.description = ""
        self.missing: list[str] = []
        self.pid: int | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="rtwidget-server-", suffix=".log")[1])
        self._token = secrets.token_urlsafe(24)
        self._without: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = False
        self._failure: ServerRejected | None = None
        self._listeners: list[Callable[[ServerExit], None]] = []

    def __repr__(self) -> str:
        state = "running" if self.running else ("failed" if self._failure else "stopped")
        return (f"<LocalServerProcess {self.url or '(not started)'} {state}, pid {self.pid}, "
                f"{self.restarts} restart(s)>")

    @property
    def running(self) -> bool:
        """Whether the server process is up and serving."""
        proc = self._proc
        return self._ready.is_set() and proc is not None and proc.poll() is None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalServerProcess:
        """Launch the server and wait until it serves (or raise why it cannot)."""
        with self._lock:
            if self._proc is not None or self._stopping:
                return self
            self._launch_until_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the server serves (it may be restarting), or raise why it cannot."""
        if not self._ready.wait(self.start_timeout if timeout is None else timeout):
            raise ServerRejected("the local server did not come back within "
                                 f"{self.start_timeout:g} s; its log: {self.log_path}")
        if self._failure is not None:
            raise self._failure

    def endpoint(self, timeout: float | None = None) -> Endpoint:
        """The address and token of the server as it runs now (waits while it restarts)."""
        self.wait_ready(timeout)
        return resolve("local", url=self.url, api_key=self._token)

    def stop(self) -> None:
        """Stop the server and its supervision (it is not started again)."""
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the server's signal to exit
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        self._ready.clear()

    def on_restart(self, callback: Callable[[ServerExit], None]) -> Callable[[], None]:
        """Call ``callback(exit)`` (on the supervisor's thread) whenever the server was started
        again after it died; returns a function that stops the calls."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def explain(self, wait: float = 1.0) -> ServerExit | None:
        """Why the server's connections just dropped, if its process died: the exit, once the
        supervisor has seen it (``wait`` seconds at most), else ``None``."""
        proc = self._proc
        deadline = time.monotonic() + wait
        while proc is not None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc is None or proc.poll() is None:
            return None
        return self._exit_of(proc, during_start=False)

    # --- supervision ---------------------------------------------------------------------------

    def _command(self) -> list[str]:
        without = [arg for name in self._without for arg in ("--without", name)]
        return [self.python, "-m", "rtwidget.server", "--supervised", "--port", "0",
                *self.args, *without]

    def _launch_until_ready(self) -> None:
        """Start processes until one serves, leaving out an engine that crashes it while it
        starts; raise (and remember) the failure when nothing more can be left out."""
        while not self._stopping:
            proc = self._spawn()
            info = self._read_ready(proc)
            if info is not None:
                self.url, self.pid = str(info.get("url", "")), proc.pid
                self.description = str(info.get("description", ""))
                self.missing = [str(m) for m in info.get("missing", [])]
                self._proc, self._failure = proc, None
                self._ready.set()
                threading.Thread(target=self._watch, args=(proc,), daemon=True,
                                 name="rtwidget-local-supervisor").start()
                return
            ended = self._exit_of(proc, during_start=True)
            self.exits.append(ended)
            log.warning("%s; its log: %s", ended.describe(), self.log_path)
            if not self._leave_out(ended):
                self._failure = ServerRejected(
                    f"{ended.describe()}, and starting it again would repeat that; its log: "
                    f"{self.log_path}")
                self._ready.set()  # waiters get the failure instead of waiting
                raise self._failure

    def _leave_out(self, ended: ServerExit) -> bool:
        """Leave the engine to blame out of the next start; ``False`` when there is none."""
        if ended.engine and ended.engine not in self._without:
            self._without.append(ended.engine)
            return True
        if "--scripted" not in self.args and ended.signal_name is not None:
            self.args.append("--scripted")  # native code crashed, and nobody knows which
            return True
        return False

    def _spawn(self) -> subprocess.Popen[bytes]:
        # the server needs no provider's key: they stay in this process
        env = {name: value for name, value in os.environ.items()
               if name not in ENV_KEYS.values() and name not in ("INWORLD_KEY", "INWORLD_SECRET")}
        env.update(RTWIDGET_SERVER_TOKEN=self._token, PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log_file:
            log_file.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(self._command()[1:])}\n"
                           .encode())
            log_file.flush()
            # a session of its own: an interrupt (SIGINT to the kernel's process group) is
            # for the user's cell, not for the server
            return subprocess.Popen(self._command(), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log_file, env=env,
                                    start_new_session=True)

    def _read_ready(self, proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
        """The server's ready line, or ``None`` if it died or gave none in time (then it is
        stopped)."""
        lines: queue.Queue[bytes] = queue.Queue()
        stdout: IO[bytes] | None = proc.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=self.start_timeout)
        except queue.Empty:
            line = b""
        with contextlib.suppress(ValueError):
            info = json.loads(line)
            if isinstance(info, dict) and info.get("url"):
                return info
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        return None

    def _exit_of(self, proc: subprocess.Popen[bytes], *, during_start: bool) -> ServerExit:
        culprit, engine = crash_culprit(_read_tail(self.log_path))
        detail = "" if proc.returncode is not None and proc.returncode < 0 else \
            _last_line(_read_tail(self.log_path))
        return ServerExit(proc.returncode, during_start, culprit, engine, detail)

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the process to end; unless stopping, start it again and tell listeners."""
        proc.wait()
        with self._lock:
            if self._stopping or proc is not self._proc:
                return
            self._ready.clear()
            ended = self._exit_of(proc, during_start=False)
            self.exits.append(ended)
            log.warning("%s; starting it again (its log: %s)", ended.describe(), self.log_path)
            recent = [e for e in self.exits if e.at > ended.at - CRASH_WINDOW]
            if len(recent) >= MAX_QUICK_CRASHES:
                self._leave_out(ended)
            self.restarts += 1
            try:
                self._launch_until_ready()
            except RealtimeError:
                return
        for callback in list(self._listeners):
            try:
                callback(ended)
            except Exception:
                log.warning("a local-server restart listener failed", exc_info=True)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.startswith("---")]
    return lines[-1][:300] if lines else ""


_shared: LocalServerProcess | None = None
_shared_lock = threading.Lock()


def local_server(profile: str | None = None) -> LocalServerProcess:
    """The local server this process's sessions use when no provider is configured: started
    on first use in a supervised child process (see :class:`LocalServerProcess`) and stopped
    when this process exits; one that could not be started is tried afresh (a package may
    have been installed since). ``profile`` (``"natural"``, the default, or ``"fast"``)
    chooses its offline engines; asking for another profile than the running server's starts
    a new server with it."""
    global _shared
    with _shared_lock:
        if profile is not None and _shared is not None and _shared.profile != profile:
            old, _shared = _shared, None
            old.stop()
        if _shared is None or _shared._stopping or _shared._failure is not None:
            server = LocalServerProcess(["--profile", profile] if profile else None)
            server.start()
            atexit.register(server.stop)
            _shared = server
        elif not _shared._ready.is_set() and _shared._failure is None:
            _shared.wait_ready()
        return _shared


def stop_local_server() -> None:
    """Stop the shared local server (the next session that needs it starts a new one)."""
    global _shared
    with _shared_lock:
        server, _shared = _shared, None
    if server is not None:
        server.stop()

