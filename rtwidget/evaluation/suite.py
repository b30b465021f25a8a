"""Evaluation suites and their runs: every scenario played ``repeats`` times against one agent
configuration, concurrently on an event loop of its own (``concurrency`` conversations at a
time), or fanned out on a ``concurrent.futures`` executor or a Dask ``distributed.Client``
(each worker process starts its own local server on first use). Every conversation is recorded.

>>> suite = rt.EvalSuite([weather, goodbye])                          # doctest: +SKIP
>>> run = suite.run(agent=dict(instructions="Be brief.", tools=[get_weather]), repeats=3)
>>> run.df; run.turns; run.pass_rate("weather"); run.play(0)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pickle
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol.errors import ConfigError
from .caller import Outcome, converse
from .judge import Judge
from .progress import Progress
from .results import EvalRun
from .scenario import Scenario

MODES = ("spoken", "text")


@dataclass(frozen=True)
class Job:
    """One conversation to run: where it goes in the run, and what it needs."""

    index: int
    scenario: Scenario
    repeat: int
    record: Path | None


def _settings(agent: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(agent, dict):
        raise ConfigError("agent must be a dict of session settings (instructions, tools, "
                          f"model, provider...), got {type(agent).__name__}")
    return dict(agent)


async def _gather(jobs: Sequence[Job], agent: dict[str, Any], mode: str, judge: Judge | None,
                  concurrency: int, answer_timeout: float,
                  done: Callable[[Outcome], None]) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Job) -> None:
        async with gate:
            outcome = await converse(job.scenario, agent, repeat=job.repeat, mode=mode,
                                     record=job.record, judge=judge,
                                     answer_timeout=answer_timeout)
        outcome.index = job.index
        done(outcome)

    await asyncio.gather(*(one(job) for job in jobs))


def run_jobs(blob: bytes) -> list[Outcome]:
    """A batch of conversations on a worker (the payload is pickled by cloudpickle when it is
    installed, so lambdas and notebook functions travel); the worker's own local server
    answers an agent with no provider."""
    jobs, agent, mode, judge, concurrency, answer_timeout = pickle.loads(blob)
    outcomes: list[Outcome] = []
    asyncio.run(_gather(jobs, agent, mode, judge, concurrency, answer_timeout,
                        outcomes.append))
    return outcomes


def _dumps(payload: Any) -> bytes:
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:
        return pickle.dumps(payload)
    return bytes(cloudpickle.dumps(payload))


def _in_thread(coro_fn: Callable[[], Any]) -> None:
    """Run a coroutine on a loop of its own thread (a notebook's kernel has a loop running)."""
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(coro_fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main, name="rtwidget-eval", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _completed(executor: Any, futures: list[Any]) -> Iterable[Any]:
    if type(executor).__module__.startswith("distributed"):
        from distributed import as_completed

        return as_completed(futures)
    return concurrent.futures.as_completed(futures)


class EvalSuite:
    """Scenarios to run against an agent; ``judge`` grades every conversation (optional)."""

    def __init__(self, scenarios: Sequence[Scenario], judge: Judge | None = None) -> None:
        scenarios = list(scenarios)
        if not scenarios or not all(isinstance(s, Scenario) for s in scenarios):
            raise ConfigError("an EvalSuite takes a non-empty list of rt.Scenario")
        names = [s.name for s in scenarios]
        if len(set(names)) != len(names):
            raise ConfigError(f"scenario names must differ: {names}")
        self.scenarios = scenarios
        self.judge = judge

    def __repr__(self) -> str:
        return f"<EvalSuite: {len(self.scenarios)} scenarios {[s.name for s in self.scenarios]}>"

    def run(self, agent: dict[str, Any], *, repeats: int = 1, mode: str = "spoken",
            record: str | Path | None = None, executor: Any = None, concurrency: int = 4,
            answer_timeout: float = 60.0, progress: bool | str = True) -> EvalRun:
        """Play every scenario ``repeats`` times against ``agent`` (the settings a chat takes:
        ``instructions``, ``tools``, ``model``, ``provider``, ``url``, ``voice``,
        ``temperature``...) and return the :class:`EvalRun`.

        ``mode="spoken"`` sends the caller's turns as speech through the server's VAD and
        transcriber; ``"text"`` types them. ``record`` is the folder the conversations are
        recorded into (default: a new temporary folder). ``executor``: ``None`` runs
        ``concurrency`` conversations at a time on a loop of this process; a
        ``concurrent.futures`` executor or a Dask ``distributed.Client`` gets one task per
        conversation. ``progress``: a bar (tqdm when installed), ``False`` for none."""
        agent = _settings(agent)
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"repeats must be a positive int, got {repeats!r}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency!r}")
        folder = Path(record) if record is not None else Path(
            tempfile.mkdtemp(prefix="rtwidget-eval-"))
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [Job(i, scenario, r, folder / f"{i:04d}-{_slug(scenario.name)}-r{r}")
                for i, (r, scenario) in enumerate(
                    (r, s) for s in self.scenarios for r in range(repeats))]
        for job in jobs:
            if job.record is not None and job.record.exists():
                raise ConfigError(f"{job.record} exists already: record into a new folder")
        outcomes: list[Outcome] = []
        bar = Progress(len(jobs), enabled=bool(progress))
        lock = threading.Lock()

        def done(outcome: Outcome) -> None:
            with lock:
                outcomes.append(outcome)
                bar.advance(outcome)

        started = time.monotonic()
        try:
            if executor is None:
                _in_thread(lambda: _gather(jobs, agent, mode, self.judge, concurrency,
                                           answer_timeout, done))
            else:
                futures = [executor.submit(run_jobs, _dumps(
                    ([job], agent, mode, self.judge, 1, answer_timeout))) for job in jobs]
                for future in _completed(executor, futures):
                    for outcome in future.result():
                        done(outcome)
        finally:
            bar.close()
        outcomes.sort(key=lambda o: o.index)
        return EvalRun(self, agent, outcomes, mode=mode, folder=folder,
                       wall_s=time.monotonic() - started)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
