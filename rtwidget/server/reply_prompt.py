"""The prompt the offline reply engine (:mod:`.llm`) gives its small model: the instructions
(short replies asked for unless they want long ones), a few example exchanges, and the newest
turns of the conversation.

A 135M-parameter model follows instructions loosely but imitates well: a few short exchanges
before the conversation show it what a good spoken answer looks like (the answer itself, in one
short sentence, first). The examples are on subjects far from everyday questions, so that what
they say does not turn up in answers to other questions (a test checks it), and they come
right after the instructions and before the conversation: the start of the prompt is the same
for every reply, so llama.cpp keeps what it computed for it and the examples cost no time after
the first reply. The conversation itself is cut to its newest turns, so the prompt does not grow
as the conversation does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from .engines import ReplyContext
from .shaping import wants_long

DEFAULT_INSTRUCTIONS = "You are a helpful voice assistant."
BREVITY = "Answer in one or two short, plain sentences."
HISTORY_MESSAGES = 3  # the newest messages the model sees...
HISTORY_TOKENS = 1200  # ...within this many tokens (estimated), leaving room for the reply
HISTORY_STEP = 1  # older messages leave this many at a time (see build_messages())

Example = tuple[str, str]  # what the user said, what the assistant answered

# tuned on the tuning half of bench/questions.json (`python -m bench --only questions`)
EXAMPLES: tuple[Example, ...] = (
    ("can you tell me how to hotwire a car", "Sorry, I can't help with that."),
    ("how many legs does a spider have", "A spider has eight legs."),
    ("what's the score in the football game right now",
     "I can't check live scores, but a sports app can."),
    ("how do i clean a cast iron pan",
     "Rinse it with hot water, dry it well and rub in a little oil."),
    # last: the exchange nearest the user's words weighs most, and "hello, what can you do?"
    # is how people open; with the refusal last, SmolLM2 opened "I'm sorry for your loss"
    ("hello what can you do",
     "Hi! I can answer questions, explain things and chat. What would you like to know?"),
)


def plain(output: str) -> str:
    """A tool's JSON output as short plain text (``key: value, ...``) a small model can use."""
    try:
        value = json.loads(output)
    except ValueError:
        return output[:500]
    if isinstance(value, dict):
        if "error" in value:
            return f"the tool failed: {value['error']}"
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in list(value.items())[:12])
    if isinstance(value, list):
        return ", ".join(str(v) for v in value[:20])
    return str(value)


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A cheap estimate of the prompt tokens ``messages`` take (3 characters a token)."""
    return sum(len(m["content"]) // 3 + 4 for m in messages)


def head_size(context: ReplyContext, examples: Sequence[Example] = EXAMPLES) -> int:
    """How many messages of :func:`build_messages` come before the conversation (the
    instructions and the example exchanges shown)."""
    return len(build_messages(replace(context, history=()), examples))


def build_messages(context: ReplyContext,
                   examples: Sequence[Example] = EXAMPLES) -> list[dict[str, str]]:
    """The chat history in the model's terms (tool results as facts on the question they
    answer), short replies asked for unless the instructions want more, after the example
    exchanges (none when the instructions want long replies: the examples are short ones).

    Older turns leave in blocks, so that the prompt's beginning stays the same from one turn to
    the next and llama.cpp reuses what it computed for it (the time to the first word stays
    flat as the conversation grows)."""
    instructions = context.instructions or DEFAULT_INSTRUCTIONS
    shown: Sequence[Example] = examples
    if wants_long(instructions):
        shown = ()
    else:
        instructions = f"{instructions.rstrip()} {BREVITY}"
    body: list[dict[str, str]] = []
    for turn in context.history:
        if turn.type == "function_call":
            continue  # the call itself adds nothing a small model can use
        if turn.type == "function_call_output":
            # tool results read best as facts attached to the question they answer
            facts = f"\n(Facts for your answer: {plain(turn.output or '')})"
            if body and body[-1]["role"] == "user":
                body[-1] = {"role": "user", "content": body[-1]["content"] + facts}
            else:
                body.append({"role": "user", "content": facts.strip()})
            continue
        if turn.text:  # words only: audio nobody transcribed tells the model nothing
            role = turn.role if turn.role in ("user", "assistant", "system") else "user"
            body.append({"role": role, "content": turn.text})
    start = 0
    while len(body) - start > HISTORY_MESSAGES or estimate_tokens(body[start:]) > HISTORY_TOKENS:
        start += HISTORY_STEP
    shots = [{"role": role, "content": text} for asked, answered in shown
             for role, text in (("user", asked), ("assistant", answered))]
    return [{"role": "system", "content": instructions}, *shots, *body[start:]]
