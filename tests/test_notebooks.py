"""The example notebooks run top to bottom (text turns and pre-recorded audio against the local
server, no microphone), and are saved clean: no outputs, no secrets."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_five_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_voice_chat.ipynb", "02_tools.ipynb",
                                           "03_conversation.ipynb", "04_providers.ipynb",
                                           "05_record_replay.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_saved_notebooks_carry_no_outputs_and_no_secrets(path: Path) -> None:
    data = json.loads(path.read_text())
    assert all(not c.get("outputs") for c in data["cells"] if c["cell_type"] == "code")
    assert "widgets" not in data["metadata"]
    assert not re.search(r"sk-[A-Za-z0-9]{20,}|Basic [A-Za-z0-9+/=]{20,}", path.read_text())


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    env_keys = ("INWORLD_API_KEY", "OPENAI_API_KEY", "RTWIDGET_URL")
    saved = {k: os.environ.pop(k) for k in env_keys if k in os.environ}
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.update(saved)
    text = json.dumps(nb)
    assert '"output_type": "error"' not in text
