"""How far a run is: a tqdm bar when tqdm is installed (``tqdm.auto``: a widget in a notebook,
text in a terminal), else a plain line on stderr now and then."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Counts finished conversations and how many passed their rules so far."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.done, self.clean = total, 0, 0
        self.enabled = enabled
        self._bar: Any = None
        self._last = 0.0
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]
        except ImportError:
            return
        self._bar = tqdm(total=total, desc="conversations", unit="conv")

    def advance(self, outcome: Any) -> None:
        self.done += 1
        self.clean += not outcome.problems
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"{outcome.scenario} r{outcome.repeat}")
            return
        now = time.monotonic()
        if now - self._last >= 1.0 or self.done == self.total:
            self._last = now
            print(f"\rconversations: {self.done}/{self.total} "
                  f"({self.done - self.clean} with problems)", end="", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.done:
            print(file=sys.stderr)
