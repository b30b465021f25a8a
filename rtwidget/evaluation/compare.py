"""Two runs side by side: pass rates per check and per scenario with Wilson confidence
intervals and Fisher's exact test (scipy's when installed, else the exact sum below, which
gives the same p-value), latency deltas, and the conversations whose outcome flipped, each
with its two recordings for :func:`rtwidget.diff`.

>>> cmp = rt.compare(run_before, run_after)                  # doctest: +SKIP
>>> cmp.checks.query("significant"); cmp.flipped; cmp.diff(0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..protocol.errors import NotFound

if TYPE_CHECKING:
    from .results import EvalRun

Z95 = 1.959963984540054


def wilson(passed: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a pass rate (95 % by default); (nan, nan) with no trials."""
    if total == 0:
        return math.nan, math.nan
    p = passed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _hypergeom(a: int, row1: int, col1: int, n: int) -> float:
    return math.comb(col1, a) * math.comb(n - col1, row1 - a) / math.comb(n, row1)


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of Fisher's exact test on the table [[a, b], [c, d]] (passed/failed
    in run A, passed/failed in run B): the probability of every table with the same margins
    no likelier than this one."""
    try:
        from scipy.stats import fisher_exact as scipy_fisher  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        return float(scipy_fisher([[a, b], [c, d]])[1])
    row1, col1, n = a + b, a + c, a + b + c + d
    if n == 0:
        return 1.0
    low, high = max(0, row1 + col1 - n), min(row1, col1)
    observed = _hypergeom(a, row1, col1, n)
    total = sum(p for k in range(low, high + 1)
                if (p := _hypergeom(k, row1, col1, n)) <= observed * (1 + 1e-7))
    return min(1.0, total)


def _rates(groups: dict[Any, tuple[pd.Series, pd.Series]], alpha: float) -> pd.DataFrame:
    rows = []
    for key, (a, b) in groups.items():
        pa, na, pb, nb = int(a.sum()), len(a), int(b.sum()), len(b)
        p = fisher_exact(pa, na - pa, pb, nb - pb)
        ra, rb = (pa / na if na else math.nan), (pb / nb if nb else math.nan)
        lo_a, hi_a = wilson(pa, na)
        lo_b, hi_b = wilson(pb, nb)
        rows.append({"name": key, "n_a": na, "rate_a": ra, "ci_a_low": lo_a, "ci_a_high": hi_a,
                     "n_b": nb, "rate_b": rb, "ci_b_low": lo_b, "ci_b_high": hi_b,
                     "delta": rb - ra, "p_value": p, "significant": p < alpha})
    return pd.DataFrame(rows)


@dataclass
class Comparison:
    """What :func:`compare` found: ``checks`` and ``scenarios`` (pass rates, intervals,
    p-values, ``significant``), ``latency`` (p50/p95 per scenario and their deltas) and
    ``flipped`` (conversations, by scenario and repeat, that passed in one run only)."""

    a: EvalRun
    b: EvalRun
    checks: pd.DataFrame
    scenarios: pd.DataFrame
    latency: pd.DataFrame
    flipped: pd.DataFrame

    def diff(self, k: int, only_changed: bool = False) -> pd.DataFrame:
        """The ``k``-th flipped conversation's two recordings, turn by turn
        (:func:`rtwidget.diff`)."""
        from ..recording.replay import diff

        if not 0 <= k < len(self.flipped):
            raise NotFound(f"no flipped conversation {k}: {len(self.flipped)} flipped")
        row = self.flipped.iloc[k]
        return diff(self.a.recording(int(row["conversation_a"])).df,
                    self.b.recording(int(row["conversation_b"])).df, only_changed=only_changed)

    def __repr__(self) -> str:
        worse = self.checks[self.checks["significant"] & (self.checks["delta"] < 0)]
        better = self.checks[self.checks["significant"] & (self.checks["delta"] > 0)]
        return (f"<Comparison: pass rate {self.a.pass_rate():.0%} → {self.b.pass_rate():.0%}; "
                f"significantly worse: {list(worse['name'])}, better: {list(better['name'])}; "
                f"{len(self.flipped)} flipped>")


def compare(a: EvalRun, b: EvalRun, alpha: float = 0.05) -> Comparison:
    """Compare run ``a`` (before) with run ``b`` (after); a difference with a p-value below
    ``alpha`` is ``significant``."""
    names = sorted(set(a.checks["check"]) | set(b.checks["check"]))
    check_groups = {n: (a.checks[a.checks["check"] == n]["passed"].astype(bool),
                        b.checks[b.checks["check"] == n]["passed"].astype(bool)) for n in names}
    check_groups["(all)"] = (a.df["passed"].astype(bool), b.df["passed"].astype(bool))
    scenarios = sorted(set(a.df["scenario"]) | set(b.df["scenario"]))
    scenario_groups = {s: (a.df[a.df["scenario"] == s]["passed"].astype(bool),
                           b.df[b.df["scenario"] == s]["passed"].astype(bool))
                       for s in scenarios}
    lat = []
    for s in scenarios:
        ta, tb = (r.turns[r.turns["scenario"] == s]["latency_s"].astype(float) for r in (a, b))
        row = {"scenario": s}
        for q in (50, 95):
            qa = float(ta.quantile(q / 100)) if ta.notna().any() else math.nan
            qb = float(tb.quantile(q / 100)) if tb.notna().any() else math.nan
            row.update({f"p{q}_a_s": qa, f"p{q}_b_s": qb, f"p{q}_delta_s": qb - qa})
        lat.append(row)
    keys = ["scenario", "repeat"]
    both = a.df[[*keys, "conversation", "passed", "recording"]].merge(
        b.df[[*keys, "conversation", "passed", "recording"]], on=keys, suffixes=("_a", "_b"))
    flipped = both[both["passed_a"].astype(bool) != both["passed_b"].astype(bool)]
    return Comparison(a, b, _rates(check_groups, alpha), _rates(scenario_groups, alpha),
                      pd.DataFrame(lat), flipped.reset_index(drop=True))
