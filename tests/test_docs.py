"""The README and the pages of ``docs/`` stay true to the code: the tables that come from the
code have their places."""

from __future__ import annotations

from pathlib import Path

from rtwidget.data.frame import COLUMNS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()


def test_the_dataframe_page_lists_every_column_with_its_dtype() -> None:
    page = (DOCS / "dataframe.md").read_text()
    for name, (dtype, _) in COLUMNS.items():
        assert f"| `{name}` | `{dtype}` |" in page


def test_readme_gives_the_two_setup_commands() -> None:
    assert "bash scripts/lab" in README and "bash scripts/test" in README


def test_the_performance_page_has_a_place_for_every_benchmark_section() -> None:
    from bench.__main__ import PAGE, SECTIONS

    assert PAGE == DOCS / "performance.md"
    page = PAGE.read_text()
    for name in SECTIONS:
        assert page.count(f"<!-- bench:{name} -->\n") == 1, name
        assert page.count(f"<!-- /bench:{name} -->") == 1, name
        assert f"<!-- bench:{name} -->" not in README, name


def test_bench_markdown_writes_the_kept_tables_between_markers_idempotently(
        tmp_path: Path) -> None:
    from bench.__main__ import write_markdown

    page = tmp_path / "performance.md"
    page.write_text("# x\n\n<!-- bench:frame -->\nan old figure\n<!-- /bench:frame -->\n"
                    "after\n")
    figures = {str(n): {"event_us": 5.0, "event_ratio_vs_100": 1.0, "materialise_ms": 7.25}
               for n in (100, 1000)}
    results = {"frame": {"figures": figures, "date": "2026-11-25 01:00 UTC", "quick": False,
                         "machine": {"cpus": 2, "processor": "x86_64", "platform": "Linux",
                                     "python": "3.11.7"}}}
    assert write_markdown(results, page) == ["frame"]
    once = page.read_text()
    assert "an old figure" not in once and once.endswith("<!-- /bench:frame -->\nafter\n")
    assert "2026-11-25 01:00 UTC: 2 CPUs, x86_64" in once
    assert "| 1,000 | 5 | 1 | 7.25 |" in once
    write_markdown(results, page)
    assert page.read_text() == once
