"""Every code block in the README and in the pages of ``docs/`` runs as written, with no key in
the environment (so against the embedded local server), in the order a reader meets them (the
README, then its pages in the order it links them); a block whose first line says
``# needs <KEY>`` is skipped, for that reason. Python blocks run in an IPython shell (they may
use ``%magics``), each in a fresh namespace; a block that is a pytest test (it takes
``rt_replay``) runs under pytest, with a recording made for it; the set-up block's commands
are checked to exist and parse (``scripts/test`` runs this test, and
``tests/e2e/test_voice_notebook.py`` runs ``scripts/lab``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
NEEDS_KEY = re.compile(r"^# needs (\w+)")
KEYS = ("INWORLD_API_KEY", "INWORLD_KEY", "INWORLD_SECRET", "OPENAI_API_KEY",
        "AZURE_OPENAI_API_KEY", "RTWIDGET_URL")


def documents() -> list[Path]:
    """The README, then the pages of ``docs/`` in the order the README links them (a page it
    does not link, which ``tests/test_docs.py`` refuses, last)."""
    readme = ROOT / "README.md"
    linked = [(ROOT / target).resolve() for target in
              re.findall(r"\]\((docs/[\w-]+\.md)[#)]", readme.read_text())]
    pages = sorted((ROOT / "docs").glob("*.md"), key=lambda p: (
        linked.index(p.resolve()) if p.resolve() in linked else len(linked), p.name))
    return [readme, *pages]


def blocks() -> list[tuple[str, str, str, int]]:
    """(file, language, code, line) of each fenced block, the file relative to the root."""
    found = []
    for path in documents():
        text = path.read_text()
        found += [(path.relative_to(ROOT).as_posix(), m.group(1), m.group(2),
                   text.count("\n", 0, m.start()) + 1) for m in BLOCK.finditer(text)]
    return found


BLOCKS = blocks()


def test_the_docs_have_the_blocks_this_test_knows_how_to_run() -> None:
    assert {lang for _, lang, _, _ in BLOCKS} <= {"python", "bash"}, BLOCKS
    assert sum(lang == "python" for _, lang, _, _ in BLOCKS) >= 6
    assert any(file == "README.md" and lang == "bash" for file, lang, _, _ in BLOCKS)


@pytest.fixture
def reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An IPython shell in a fresh folder, with no key in the environment."""
    from IPython.core.interactiveshell import InteractiveShell

    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    shell = InteractiveShell.instance()
    yield shell
    for value in list(shell.user_ns.values()):  # what the block left open
        close = getattr(value, "close", None)
        if type(value).__module__.startswith("rtwidget") and callable(close):
            close()
    shell.reset()


def _run_pytest_block(code: str, tmp_path: Path) -> None:
    """A block that is a test: it runs under pytest in a folder holding the recording it
    replays, made here against a server scripted to call the tool (the advice of
    ``docs/recording.md`` for exact replies), which its ``conftest.py`` gives the test as
    ``rt_server``."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent('''
        import pytest
        from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine

        RULES = [Rule("weather in (\\\\w+)", calls=[("get_weather", {"city": "{0}"})])]

        @pytest.fixture(scope="session")
        def rt_server():
            with LocalServer(engine=ScriptedReplyEngine(rules=RULES)) as server:
                yield server
        '''))
    record = textwrap.dedent('''
        import rtwidget as rt
        from conftest import RULES
        from rtwidget.server import LocalServer, ScriptedReplyEngine

        @rt.tool
        def get_weather(city: str) -> dict:
            """Current weather in a city."""
            return {"city": city, "sky": "sunny", "celsius": 21}

        with LocalServer(engine=ScriptedReplyEngine(rules=RULES)) as server, \\
                rt.RealtimeSession("local", url=server.url, output_modalities=["text"],
                                   record="recordings/weather-question") as session:
            session.ask("What is the weather in Paris?")
        ''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    subprocess.run([sys.executable, "-c", record], cwd=tmp_path, env=env, check=True,
                   timeout=120)
    (tmp_path / "test_from_the_docs.py").write_text(code)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_from_the_docs.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("file", "lang", "code", "line"), BLOCKS,
                         ids=[f"{file}:line{line}" for file, _, _, line in BLOCKS])
def test_a_block_runs_as_written(file: str, lang: str, code: str, line: int, reader: Any,
                                 tmp_path: Path) -> None:
    needs = NEEDS_KEY.match(code)
    if needs:
        pytest.skip(f"the block at {file}:{line} needs {needs.group(1)}")
    if lang == "bash":
        for command in filter(None, (c.split("#")[0].strip() for c in code.splitlines())):
            program, script = command.split()[:2]
            assert program == "bash" and (ROOT / script).is_file(), command
            subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
        return
    if re.search(r"^def test_\w+\(rt_replay\)", code, re.M):
        _run_pytest_block(code, tmp_path)
        return
    result = reader.run_cell(code, store_history=False)
    result.raise_error()
