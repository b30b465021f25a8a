"""What the browser tests share: the README's main command (``scripts/lab``) started on a free
port of 127.0.0.1, headless Chromium whose fake microphone plays a WAV file, speech made with a
natural voice (Flite), and ways to drive JupyterLab and read the kernel's facts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from conftest import eventually, free_port, wait_until_serving
from support.speech import speak
from support.speech import write_wav as save_wav

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLITE = shutil.which("flite")
REQUIRED = os.environ.get("RTWIDGET_REQUIRE_E2E") == "1"
RATE = 48_000  # the fake microphone's file; the widget resamples it to 24 kHz

CHROMIUM_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def speech(text: str, voice: str = "slt") -> np.ndarray:
    """``text`` spoken by ``voice`` (a test voice of ``tests/support/speech.py``: Flite's by
    default), as float samples at the fake microphone's rate."""
    return np.frombuffer(speak(text, voice, rate=RATE), dtype="<i2").astype(np.float64)


def silence(seconds: float) -> np.ndarray:
    """Quiet room noise, not digital silence (a real mic is never perfectly quiet)."""
    return np.random.default_rng(int(seconds * 1000)).normal(0, 20, int(RATE * seconds))


def write_wav(path: Path, *parts: np.ndarray) -> Path:
    """The parts one after another, as the 48 kHz mono PCM16 file the fake mic plays."""
    pcm = np.clip(np.concatenate(parts), -32768, 32767).astype("<i2").tobytes()
    return save_wav(path, pcm, RATE)


def _env(tmp: Path) -> dict[str, str]:
    """A Jupyter server's environment: its own config and runtime folders, no keys."""
    return {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "cfg"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "rt"), "INWORLD_API_KEY": "", "OPENAI_API_KEY": "",
            "RTWIDGET_URL": "", "VIRTUAL_ENV": sys.prefix,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@contextmanager
def _serving(command: list[str], port: int, log_path: Path, env: dict[str, str],
             status: str = "/api/status") -> Iterator[subprocess.Popen[bytes]]:
    """Run a notebook server until the block ends; wait until ``status`` answers on ``port``."""
    log = open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}{status}", proc, 120, log_path)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


SERVER_ARGS = ["--no-browser", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
               "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True"]


@contextmanager
def lab(root: Path, tmp: Path, env: dict[str, str] | None = None,
        settings: dict[str, dict[str, object]] | None = None) -> Iterator[tuple[str, Path]]:
    """``bash scripts/lab`` serving ``root`` (a copy of what the user opens), with ``env`` added
    to its environment and JupyterLab ``settings`` (plugin id → values) for this server only:
    yields the URL it printed for people and its log file. Loopback only, no token."""
    port = free_port()
    log_path = tmp / "lab.log"
    command = ["bash", str(ROOT / "scripts" / "lab"), *SERVER_ARGS, f"--port={port}",
               f"--ServerApp.root_dir={root}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.expose_app_in_browser=True"]
    if settings:
        folder = tmp / "lab-settings"
        for plugin, values in settings.items():
            package, _, name = plugin.partition(":")
            path = folder / package / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        command.append(f"--LabApp.user_settings_dir={folder}")
    with _serving(command, port, log_path, {**_env(tmp), **(env or {})}):
        def printed_url() -> re.Match[str]:
            found = re.search(rf"http://127\.0\.0\.1:{port}/\S*", log_path.read_text())
            assert found, log_path.read_text()
            return found

        yield eventually(printed_url, 10).group(0), log_path


@contextmanager
def notebook7(root: Path, tmp: Path) -> Iterator[str]:
    """Jupyter Notebook 7 (``jupyter notebook``) serving ``root``: yields its base URL.
    Loopback only, no token; the app is exposed as ``window.jupyterapp``, as in JupyterLab."""
    port = free_port()
    command = [sys.executable, "-m", "jupyter", "notebook", "--allow-root", *SERVER_ARGS,
               f"--port={port}", f"--ServerApp.root_dir={root}",
               "--JupyterNotebookApp.expose_app_in_browser=True"]
    with _serving(command, port, tmp / "notebook.log", _env(tmp)):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def marimo_app(notebook: Path, tmp: Path, env: dict[str, str]) -> Iterator[str]:
    """``marimo run`` serving the app ``notebook`` (its cells run when a page opens): yields
    its URL. Loopback only, no token."""
    port = free_port()
    command = [sys.executable, "-m", "marimo", "run", str(notebook), "--headless",
               "--host", "127.0.0.1", f"--port={port}", "--no-token", "--no-sandbox",
               "--no-check"]
    with _serving(command, port, tmp / "marimo.log", {**_env(tmp), **env}, "/health"):
        yield f"http://127.0.0.1:{port}/"


def browser(playwright: Any, wav: Path) -> Any:
    """Headless Chromium whose microphone plays ``wav``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=[*CHROMIUM_ARGS,
                                            f"--use-file-for-fake-audio-capture={wav}"])


def write_notebook(path: Path, *cells: str) -> None:
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": src, "outputs": [],
                     "execution_count": None, "id": f"c{i}"} for i, src in enumerate(cells)],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


@contextmanager
def fake_mic_page(playwright: Any, wav: Path, name: str) -> Iterator[Any]:
    """A page in headless Chromium whose mic plays ``wav``; on failure its screenshot and
    console are saved as ``test-output/<name>-failure.png`` and ``<name>-console.log``."""
    chromium = browser(playwright, wav)
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    try:
        yield page
    except Exception:
        page.screenshot(path=str(OUTPUT / f"{name}-failure.png"))
        (OUTPUT / f"{name}-console.log").write_text("\n".join(console))
        raise
    finally:
        chromium.close()


def open_and_run_all(page: Any, url: str) -> Any:
    """Open a notebook (JupyterLab or Notebook 7), run all its cells, wait for the widget to be
    connected and to have agreed on a transport; returns the widget's locator."""
    page.goto(url, timeout=90_000)
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return w && w.sessionContext && w.sessionContext.session"
        " && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.status === 'idle'; }", timeout=120_000)
    page.add_style_tag(content=".Toastify { display: none !important; }")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    widget = page.locator(".rtw[data-ready=true]")
    widget.wait_for(timeout=120_000)
    page.wait_for_selector('.rtw[data-status="connected"]', timeout=60_000)
    page.wait_for_function("() => document.querySelector('.rtw').dataset.transport",
                           timeout=30_000)
    return widget


KERNEL_RUN = """async (code) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const future = kernel.requestExecute({code, store_history: false});
    let out = "";
    future.onIOPub = (msg) => {
        if (msg.header.msg_type === "stream") out += msg.content.text;
        if (msg.header.msg_type === "error") out += msg.content.evalue;
    };
    await future.done;
    return out;
}"""


def kernel_json(page: Any, expression: str) -> Any:
    """Evaluate ``expression`` in the notebook's kernel (as a user's extra cell would, without
    adding one) and return it, through JSON."""
    code = f"import json as _j\nprint(_j.dumps({expression}, default=str))"
    out = page.evaluate(KERNEL_RUN, code)
    return json.loads(out)


def widget_rows(page: Any) -> list[dict[str, str]]:
    """The transcript as the widget shows it: who, and the words."""
    return page.evaluate("""() => [...document.querySelectorAll('.rtw-row')].map(r => ({
        role: r.classList.contains('rtw-user') ? 'user' :
              r.classList.contains('rtw-assistant') ? 'assistant' : 'other',
        text: (r.querySelector('.rtw-text') || r).textContent,
        cut: r.classList.contains('rtw-cut')}))""")


def words(text: str) -> set[str]:
    """Content words, for lenient comparisons of what was said and what was heard."""
    small = {"the", "a", "an", "is", "of", "in", "what", "like", "to", "me", "about", "tell"}
    return {w for w in re.findall(r"[a-z']+", text.lower()) if w not in small}
