"""The README and the pages of ``docs/`` stay true to the code and to each other: the tables
that come from the code have their places, every page is reachable from the README, and every
relative link (and its ``#anchor``) leads somewhere."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from rtwidget.data.frame import COLUMNS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)


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


def test_every_page_of_docs_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target.split("#")[0]).resolve() for target in LINK.findall(README)
              if not re.match(r"\w+:", target)}
    assert [p.name for p in PAGES if p.resolve() not in linked] == []


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (code marks and links reduced to their
    words) in lower case, without punctuation, spaces turned into hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = unicodedata.normalize("NFC", text.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The ``#anchors`` of a Markdown file: one per heading, a repeated one numbered (none for
    any other file)."""
    if path.suffix != ".md":
        return set()
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_the_slugs_are_githubs() -> None:
    assert slug("Guarantees: what is kept, retried and dropped") == \
        "guarantees-what-is-kept-retried-and-dropped"
    assert slug("A function call: from the server's function_call item to the next response") \
        == "a-function-call-from-the-servers-function_call-item-to-the-next-response"
    assert slug("Set-up: two commands") == "set-up-two-commands"
    assert slug("The `rtwidget[local]` extra") == "the-rtwidgetlocal-extra"


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_somewhere(path: Path) -> None:
    text = FENCE.sub("", path.read_text())
    broken = []
    for target in LINK.findall(text) + IMAGE.findall(text):
        if re.match(r"\w+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        where = (path.parent / file).resolve() if file else path
        if not where.exists() or (anchor and anchor not in anchors(where)):
            broken.append(target)
    assert broken == []
