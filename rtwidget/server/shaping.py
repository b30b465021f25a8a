"""Shaping a small model's token stream into a reply fit to be spoken.

A 135M-parameter model's first sentence is usually on topic; what follows tends to wander,
repeat itself or restate its previous answer. :class:`ReplyShaper` lets text through a whole
sentence at a time, stops after a sentence limit (short replies unless the instructions ask for
more), drops sentences the model already said, never ends on half a sentence, and puts capitals
where the model left them out. The one exception is the reply's first sentence: its first
clause goes out as soon as it is written (at a comma, or before "and", "because", "with", "is"...
once it has a few words), so that the voice can start on it while the model writes the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?]+[\"')\]]*(?=\s)|\n)")
_WORD = re.compile(r"[A-Za-z0-9']+")
_LONG_ASKED = re.compile(
    r"\b(long|longer|detailed|in detail|at length|stor(?:y|ies)|paragraphs?|elaborate|"
    r"thorough(?:ly)?|explain (?:fully|everything))\b", re.IGNORECASE)
_LONE_I = re.compile(r"\bi\b(?=$|[\s',.!?])")
_CLAUSE_END = re.compile(  # where a first clause may end: at a mark, or before a word
    r"(?P<mark>(?<=\w)[,;:](?=\s)|\s(?=[(\u2013\u2014]|-\s))"
    r"|\s(?=(?:and|but|or|so|because|which|while|when|if|though|although|unless|until|since|"
    r"about|above|across|after|against|along|among|around|at|before|behind|below|beside|"
    r"between|beyond|by|during|for|from|in|inside|into|near|on|onto|over|through|toward|"
    r"towards|under|within|without|with|is|are|was|were|will|would|can|could|should|may|"
    r"might|has|have|had)\s)")
MARK_CLAUSE_WORDS = 4  # a first clause said early ends at a comma (; : dash, bracket) after
WORD_CLAUSE_WORDS = 6  # this many words, or before a conjunction, preposition or verb after this


def wants_long(instructions: str) -> bool:
    """Whether the instructions ask for long answers (stories, detail, paragraphs)."""
    return bool(_LONG_ASKED.search(instructions))


def _key(sentence: str) -> str:
    return " ".join(_WORD.findall(sentence.lower()))


def _polish(sentence: str) -> str:
    sentence = _LONE_I.sub("I", sentence.strip())
    return sentence[:1].upper() + sentence[1:]


def _loop_start(sentence: str) -> int | None:
    """Where a sentence starts to repeat three words it already said, or ``None``."""
    seen = set()
    words = list(_WORD.finditer(sentence.lower()))
    for i in range(len(words) - 2):
        three = tuple(w.group(0) for w in words[i:i + 3])
        if three in seen:
            return words[i].start()
        seen.add(three)
    return None


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences (the unfinished tail included)."""
    found = [m.group(0) for m in _SENTENCE.finditer(text)]
    tail = text[sum(len(s) for s in found):]
    return [s for s in (*found, tail) if s.strip()]


class ReplyShaper:
    """Feed it the model's pieces; it returns the text to say now, whole sentences only.

    ``max_sentences`` and ``max_words`` bound the reply (it stops after the sentence that
    reaches either); ``earlier`` is what the agent said before, whose sentences are not said
    again. :attr:`done` turns true when the model should stop generating. ``first_clause``:
    the first sentence's first clause is let through as soon as it is written (unless it
    begins a restatement of an earlier answer); the rest of that sentence follows it.
    """

    def __init__(self, max_sentences: int, max_words: int, earlier: Iterable[str] = (),
                 first_clause: bool = True) -> None:
        self.max_sentences = max_sentences
        self.max_words = max_words
        self.first_clause = first_clause
        self._open = False  # a sentence was begun (its first clause said) and not finished
        self._earlier = {_key(s) for text in earlier for s in sentences(text)}
        self._said: set[str] = set()
        self._pending = ""
        self._skipped = ""
        self.sentences = 0
        self.words = 0
        self.done = False

    def feed(self, piece: str) -> str:
        """The sentences ``piece`` completes, polished, with a separating space."""
        self._pending += piece
        out = []
        while not self.done:
            match = _SENTENCE.match(self._pending)
            if match is None:
                out.append(self._early_clause())
                break
            self._pending = self._pending[match.end():]
            out.append(self._take(match.group(0)))
            if match.group(0).endswith("\n") and self.sentences:
                self.done = True  # a new paragraph: the model has moved on to something else
        return "".join(out)

    def _early_clause(self) -> str:
        """The first sentence's first clause, if it is written and may be said now."""
        if not self.first_clause or self.sentences or self._open or self._skipped:
            return ""
        for found in _CLAUSE_END.finditer(self._pending):
            mark = found.group("mark")
            clause = self._pending[: found.start() + bool(mark and mark[0] in ",;:")]
            key = _key(clause)
            if len(key.split()) < (MARK_CLAUSE_WORDS if mark else WORD_CLAUSE_WORDS):
                continue
            if _loop_start(clause) is not None or any(
                    e == key or e.startswith(key + " ") for e in self._earlier):
                return ""  # its sentence is judged whole, as any other
            self._pending = self._pending[found.end():]
            self._open = True
            self.words += len(key.split())
            return _polish(clause)
        return ""

    def finish(self, complete: bool, repeat: bool = True) -> str:
        """The end of generation: what is left to say. ``complete`` is false when the model was
        cut off by its token limit, so an unfinished sentence is dropped, not said. When all it
        said was a restatement, that is said after all if ``repeat`` (see :attr:`only_repeats`)."""
        out = ""
        if not self.done and complete and _WORD.search(self._pending):
            tail = self._pending.strip()
            out = self._take(tail if tail[-1] in ".!?" else tail + ".")
        elif not self.done and self._open:  # cut off after its first clause: ended there
            out = self._take(".")
        if repeat and self.only_repeats:
            out = self._emit(self._skipped)
        self.done = True
        return out

    @property
    def only_repeats(self) -> bool:
        """Nothing new was said: every sentence restated an earlier answer."""
        return not self.sentences and bool(self._skipped)

    def _take(self, sentence: str) -> str:
        looped = _loop_start(sentence)
        if looped is not None:  # the model went round in a loop: keep what came before it
            sentence, self.done = sentence[:looped].rstrip(" ,;:") + ".", True
        key = _key(sentence)
        if self._open:  # the rest of a sentence begun with its first clause
            return self._emit(sentence if key else ".")
        if not key:
            return ""
        if key in self._said:  # repeating itself within the reply
            self.done = True
            return ""
        if key in self._earlier:  # restating an earlier answer
            self._skipped = self._skipped or sentence
            return ""
        return self._emit(sentence)

    def _emit(self, sentence: str) -> str:
        self.sentences += 1
        self.words += len(_WORD.findall(sentence))
        if self.sentences >= self.max_sentences or self.words >= self.max_words:
            self.done = True
        if self._open:  # goes on from its first clause: no capital
            self._open = False
            rest = _LONE_I.sub("I", sentence.strip())
            return f" {rest}" if _WORD.search(rest) else rest
        self._said.add(_key(sentence))
        return ("" if self.sentences == 1 else " ") + _polish(sentence)
