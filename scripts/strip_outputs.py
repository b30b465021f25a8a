"""A notebook on stdin, written to stdout as it is committed: no outputs, execution counts,
widget state or per-run metadata; written as nbformat (and so JupyterLab) writes notebooks.

It is git's clean filter for ``notebooks/*.ipynb`` (``.gitattributes``; ``scripts/lab`` turns
it on in the checkout): running the notebooks in JupyterLab saves their outputs into the files,
and git sees (and commits) them without. Also ``python scripts/strip_outputs.py FILE...``
rewrites files in place. Standard library only: git runs it with any Python 3.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RUN_METADATA = ("execution", "trusted", "scrolled", "collapsed", "ExecuteTime")


def strip(text: str) -> str:
    """The notebook ``text`` as it is committed."""
    nb: dict[str, Any] = json.loads(text)
    for cell in nb.get("cells", []):
        if isinstance(cell.get("source"), str):  # as nbformat (and so JupyterLab) writes it
            cell["source"] = cell["source"].splitlines(keepends=True)
        for key in RUN_METADATA:
            cell.get("metadata", {}).pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if cell.get("attachments") == {}:
            del cell["attachments"]
    meta = nb.get("metadata", {})
    meta.pop("widgets", None)
    if isinstance(meta.get("language_info"), dict):  # the kernel's version, as last run
        meta["language_info"] = {"name": meta["language_info"].get("name", "python")}
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(paths: list[str]) -> None:
    if not paths:
        sys.stdout.write(strip(sys.stdin.read()))
    for path in map(Path, paths):
        path.write_text(strip(path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
