"""The event log can be read from another thread while the session's thread appends to it."""

from __future__ import annotations

import threading

from rtwidget.protocol import Conversation


def test_the_log_is_read_while_the_session_thread_appends() -> None:
    conversation = Conversation(max_log=2_000)
    for i in range(2_000):
        conversation.note({"type": "tick", "n": i})
    done = threading.Event()

    def session_thread() -> None:
        for i in range(300_000):  # bounded: a few seconds at most
            conversation.note({"type": "tick", "n": i})
            if done.is_set():
                return

    writer = threading.Thread(target=session_thread, daemon=True)
    writer.start()
    reads = 0
    try:
        while writer.is_alive() and reads < 500:
            assert len([e for e in conversation.log if e.type == "tick"]) == 2_000
            reads += 1
    finally:
        done.set()
        writer.join()
    assert reads > 0
