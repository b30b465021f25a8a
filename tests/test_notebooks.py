"""The example notebooks run top to bottom (text turns and pre-recorded audio against the local
server, no microphone), and are committed clean: no outputs, no secrets. Running them in
JupyterLab saves outputs into the files; git's clean filter (``scripts/strip_outputs.py``, set
up by ``scripts/lab``) keeps them out of what git sees, and the check below reads what git
holds, so someone who ran the notebooks is not failed for it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
from strip_outputs import strip  # noqa: E402


def committed(path: Path) -> str:
    """The notebook as git holds it (the index: what a commit would take), or the file itself
    outside a git checkout."""
    shown = subprocess.run(["git", "show", f":{path.relative_to(ROOT).as_posix()}"], cwd=ROOT,
                           capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else path.read_text()


def test_there_are_six_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_voice_chat.ipynb", "02_tools.ipynb",
                                           "03_conversation.ipynb", "04_providers.ipynb",
                                           "05_record_replay.ipynb", "06_evaluate.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_saved_notebooks_carry_no_outputs_and_no_secrets(path: Path) -> None:
    text = committed(path)
    data = json.loads(text)
    assert all(not c.get("outputs") for c in data["cells"] if c["cell_type"] == "code")
    assert "widgets" not in data["metadata"]
    assert not re.search(r"sk-[A-Za-z0-9]{20,}|Basic [A-Za-z0-9+/=]{20,}", text)
    assert strip(text) == text, "committed as the clean filter writes it"


def test_git_is_told_to_strip_the_notebooks_outputs() -> None:
    assert "notebooks/*.ipynb filter=notebook-outputs" in (ROOT / ".gitattributes").read_text()
    assert "filter.notebook-outputs.clean" in (ROOT / "scripts" / "lab").read_text()


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
    # run and saved, git sees the file as it was: the clean filter takes out all a run adds
    assert strip(nbformat.writes(nb)) == strip(path.read_text())
