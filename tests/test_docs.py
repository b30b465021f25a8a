"""The README stays true to the code."""

from __future__ import annotations

from pathlib import Path

from rtwidget.frame import COLUMNS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_lists_every_dataframe_column_with_its_dtype() -> None:
    for name, (dtype, _) in COLUMNS.items():
        assert f"| `{name}` | `{dtype}` |" in README


def test_readme_gives_the_two_setup_commands() -> None:
    assert "bash scripts/lab" in README and "bash scripts/test" in README
