"""Run the benchmarks, print the tables, keep the figures in ``bench/results.json``; with
``--markdown``, write the tables of the kept figures into docs/performance.md between its
markers."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from rtwidget.server import EngineUnavailable

from . import (
    browser,
    client,
    evaluation,
    frame,
    load,
    offline,
    process,
    profiles,
    questions,
    tools,
)
from ._util import ROOT, collect_tables

SECTIONS: dict[str, ModuleType] = {"client": client, "frame": frame, "offline": offline,
                                   "profiles": profiles, "questions": questions,
                                   "process": process, "load": load, "browser": browser,
                                   "evaluation": evaluation, "tools": tools}
PAGE = ROOT / "docs" / "performance.md"  # the page the tables are written into


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}


def load_results(path: Path) -> dict[str, Any]:
    """The kept figures, one entry per section (``figures``, ``date``, ``machine``,
    ``quick``); entries in another shape are dropped."""
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {name: entry for name, entry in kept.items()
            if name in SECTIONS and isinstance(entry, dict) and "figures" in entry}


def run_sections(names: list[str], quick: bool, results: dict[str, Any]) -> None:
    """Run each section, print its tables and keep its figures in ``results``."""
    for name in names:
        try:
            figures = SECTIONS[name].run(quick)
        except (ImportError, EngineUnavailable) as exc:
            print(f"\n{name}: skipped ({exc})")
            continue
        results[name] = {"figures": figures, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                   time.gmtime()),
                         "machine": machine(), "quick": quick}
        print()
        print(SECTIONS[name].report(figures))


def section_markdown(name: str, entry: dict[str, Any]) -> str:
    """A section's tables in Markdown, under a line saying when and where they were measured."""
    with collect_tables() as tables:
        SECTIONS[name].report(entry["figures"])
    m = entry["machine"]
    quick = " --quick" if entry.get("quick") else ""
    where = (f"_Measured by `python -m bench --only {name}{quick}` on {entry['date']}: "
             f"{m['cpus']} CPUs, {m['processor']}, {m['platform']}, Python {m['python']}._")
    return "\n\n".join([where, *(t.markdown() for t in tables)])


def write_markdown(results: dict[str, Any], page: Path,
                   only: list[str] | None = None) -> list[str]:
    """Replace what is between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in
    ``page`` with the tables of section NAME (of the sections ``only``, if given); returns the
    sections written. Running it twice on the same figures changes nothing."""
    text = page.read_text()
    written = []
    for name, entry in results.items():
        if only and name not in only:
            continue
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
        if not pattern.search(text):
            print(f"{page.name} has no <!-- bench:{name} --> markers: {name} not written")
            continue
        block = section_markdown(name, entry)
        text = pattern.sub(lambda m, block=block: m.group(1) + block + "\n" + m.group(2), text)
        written.append(name)
    page.write_text(text)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")),
                        help="where the figures are kept (each run replaces its sections')")
    parser.add_argument("--only", choices=list(SECTIONS), action="append",
                        help="run this section (may be repeated)")
    parser.add_argument("--markdown", action="store_true",
                        help="run nothing: write the kept figures' tables into docs/performance.md "
                        "(those of the --only sections, if given)")
    args = parser.parse_args()
    out = Path(args.out)
    results = load_results(out)
    if args.markdown:
        written = write_markdown(results, PAGE, args.only)
        print(f"{PAGE.relative_to(ROOT)}: {', '.join(written) or 'nothing'} written from {out}")
        return 0
    print(f"machine: {machine()}")
    run_sections(args.only or list(SECTIONS), args.quick, results)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out}; `python -m bench --markdown` puts the tables in "
          f"{PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
