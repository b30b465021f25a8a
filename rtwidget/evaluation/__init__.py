"""Evaluating a voice agent: scenarios (scripted, simulated or from a recording), callers that
speak through the microphone's path, rule checks and an LLM judge, suites run concurrently or
fanned out on an executor or Dask, and comparisons of two runs."""

from . import checks
from .checks import Check, Transcript
from .compare import Comparison, compare
from .judge import Judge, Verdict
from .results import EvalRun
from .scenario import Branch, Interrupt, Scenario, SimulatedUser
from .suite import EvalSuite

__all__ = ["Branch", "Check", "Comparison", "EvalRun", "EvalSuite", "Interrupt", "Judge",
           "Scenario", "SimulatedUser", "Transcript", "Verdict", "checks", "compare"]
