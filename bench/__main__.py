"""Run every benchmark, print the tables, write ``bench/results.json``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from rtwidget.server import EngineUnavailable

from . import browser, client, frame, load, offline


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--only", choices=["browser", "client", "frame", "load", "offline"],
                        help="run one section")
    args = parser.parse_args()
    machine = {"python": sys.version.split()[0], "platform": platform.platform(),
               "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    print(f"machine: {machine}")
    results = {"machine": machine}
    sections = (("client", client), ("frame", frame), ("offline", offline),
                ("load", load), ("browser", browser))
    for name, section in sections:
        if args.only and args.only != name:
            continue
        try:
            figures = section.run(args.quick)
        except (ImportError, EngineUnavailable) as exc:
            print(f"\n{name}: skipped ({exc})")
            continue
        results[name] = figures
        print()
        print(section.report(figures))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
