"""The README stays true to the code."""

from __future__ import annotations

from pathlib import Path

from rtwidget.data.frame import COLUMNS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_lists_every_dataframe_column_with_its_dtype() -> None:
    for name, (dtype, _) in COLUMNS.items():
        assert f"| `{name}` | `{dtype}` |" in README


def test_readme_gives_the_two_setup_commands() -> None:
    assert "bash scripts/lab" in README and "bash scripts/test" in README


def test_readme_has_a_place_for_every_benchmark_section() -> None:
    from bench.__main__ import SECTIONS

    for name in SECTIONS:
        assert README.count(f"<!-- bench:{name} -->\n") == 1, name
        assert README.count(f"<!-- /bench:{name} -->") == 1, name


def test_bench_markdown_writes_the_kept_tables_between_markers_idempotently(
        tmp_path: Path) -> None:
    from bench.__main__ import write_markdown

    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- bench:frame -->\nan old figure\n<!-- /bench:frame -->\n"
                      "after\n")
    figures = {str(n): {"event_us": 5.0, "event_ratio_vs_100": 1.0, "materialise_ms": 7.25}
               for n in (100, 1000)}
    results = {"frame": {"figures": figures, "date": "2026-11-25 01:00 UTC", "quick": False,
                         "machine": {"cpus": 2, "processor": "x86_64", "platform": "Linux",
                                     "python": "3.11.7"}}}
    assert write_markdown(results, readme) == ["frame"]
    once = readme.read_text()
    assert "an old figure" not in once and once.endswith("<!-- /bench:frame -->\nafter\n")
    assert "2026-11-25 01:00 UTC: 2 CPUs, x86_64" in once
    assert "| 1,000 | 5 | 1 | 7.25 |" in once
    write_markdown(results, readme)
    assert readme.read_text() == once
