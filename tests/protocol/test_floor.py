"""The conversation's floor, fed event sequences: one response at a time, typed turns that
interrupt or wait, the page's report holding a turn back. No sockets."""

from __future__ import annotations

from typing import Any

from rtwidget.protocol import client_events
from rtwidget.protocol.floor import Floor, claims_floor


def turn(text: str) -> list[dict[str, Any]]:
    return [client_events.item_create(client_events.text_message(text)),
            client_events.response_create()]


def created(response_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "response.created", "response": {"id": response_id, **extra}}


def done(response_id: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "response.done", "response": {"id": response_id, "status": status}}


def kinds(sent: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in sent]


def test_an_idle_floor_sends_a_turn_at_once() -> None:
    floor = Floor()
    _, steps = floor.submit(turn("hi"), interrupt=True)
    assert kinds(steps.send) == ["conversation.item.create", "response.create"]
    assert steps.interrupted == [] and floor.busy


def test_a_typed_turn_cancels_the_reply_and_goes_out_after_its_done() -> None:
    floor = Floor()
    floor.received(created("r1"))
    _, steps = floor.submit(turn("stop, please"), interrupt=True)
    assert kinds(steps.send) == ["response.cancel"] and steps.send[0]["response_id"] == "r1"
    assert steps.interrupted == ["r1"]
    assert floor.received({"type": "response.output_audio.delta"}).send == []
    after = floor.received(done("r1", "cancelled"))
    assert kinds(after.send) == ["conversation.item.create", "response.create"]
    assert after.send[0]["item"]["content"][0]["text"] == "stop, please"


def test_the_wait_rule_lets_the_reply_finish() -> None:
    floor = Floor()
    floor.received(created("r1"))
    _, steps = floor.submit(turn("and then?"))
    assert steps.send == [] and steps.interrupted == []
    assert kinds(floor.received(done("r1")).send) == ["conversation.item.create",
                                                      "response.create"]


def test_a_hold_keeps_the_turn_back_until_released() -> None:
    floor = Floor()
    floor.received(created("r1"))
    floor.submit(turn("hello"), interrupt=True)
    floor.hold("page")
    assert floor.received(done("r1", "cancelled")).send == []
    assert kinds(floor.release("page").send) == ["conversation.item.create", "response.create"]
    assert floor.release("page").send == []  # again: nothing more


def test_a_reply_asked_for_but_not_started_is_cancelled_when_it_starts() -> None:
    floor = Floor()
    floor.submit(turn("first"))
    _, steps = floor.submit(turn("second"), interrupt=True)
    assert steps.send == []  # nothing to cancel yet; the second turn waits
    on_start = floor.received(created("r1"))
    assert kinds(on_start.send) == ["response.cancel"] and on_start.interrupted == ["r1"]
    assert kinds(floor.received(done("r1", "cancelled")).send) == [
        "conversation.item.create", "response.create"]
    assert floor.received(created("r2")).send == []  # the second turn's reply is not cut


def test_a_reply_is_cancelled_once() -> None:
    floor = Floor()
    floor.received(created("r1"))
    assert len(floor.interrupt().send) == 1
    assert floor.interrupt().send == []  # a second cancel would be refused by the server
    floor.received(done("r1", "cancelled"))
    assert floor.interrupt().send == [] and not floor.busy


def test_turns_go_out_in_order() -> None:
    floor = Floor()
    floor.received(created("r1"))
    floor.submit(turn("one"))
    note = [client_events.item_create(client_events.text_message("a note, no reply"))]
    _, steps = floor.submit(note)
    assert steps.send == []  # behind the waiting turn
    floor.submit(turn("two"))
    sent = floor.received(done("r1")).send  # "one", then the note (it needs no floor)
    assert kinds(sent) == ["conversation.item.create", "response.create",
                           "conversation.item.create"]
    assert [e["item"]["content"][0]["text"] for e in sent if "item" in e] == [
        "one", "a note, no reply"]
    floor.received(created("r2"))
    sent = floor.received(done("r2")).send
    assert [e["item"]["content"][0]["text"] for e in sent if "item" in e] == ["two"]


def test_a_refused_create_frees_the_floor() -> None:
    floor = Floor()
    _, steps = floor.submit(turn("one"))
    create_id = steps.send[1]["event_id"]
    floor.submit(turn("two"))
    refused = {"type": "error", "error": {"code": "invalid_value", "event_id": create_id}}
    assert kinds(floor.received(refused).send) == ["conversation.item.create",
                                                   "response.create"]
    # a provider that names no event (Inworld) refusing a second response
    unnamed = {"type": "error", "error": {"code": "conversation_already_has_active_response",
                                          "event_id": None}}
    floor.received(unnamed)
    assert not floor.busy


def test_out_of_band_responses_hold_no_floor() -> None:
    floor = Floor()
    floor.sent_out_of_band()
    floor.received(created("oob", conversation_id=None))
    assert not floor.busy
    # one that names no conversation with no out-of-band response asked for is the
    # conversation's (a provider may leave the field empty)
    floor.received(created("r1", conversation_id=None))
    assert floor.busy
    assert not claims_floor(client_events.response_create(conversation="none"))
    assert claims_floor(client_events.response_create())


def test_a_response_the_server_started_itself_holds_the_floor() -> None:
    floor = Floor()
    floor.received(created("vad-reply"))  # server VAD answered a spoken turn
    _, steps = floor.submit(turn("typed meanwhile"), interrupt=True)
    assert steps.interrupted == ["vad-reply"]
    assert floor.received(done("other")).send == []  # not the reply holding the floor


def test_a_withdrawn_turn_never_goes_out() -> None:
    floor = Floor()
    floor.received(created("r1"))
    waiting, _ = floor.submit(turn("too late"))
    assert floor.withdraw(waiting)
    assert floor.received(done("r1")).send == []
    assert not floor.withdraw(waiting)


def test_a_cancel_refused_because_the_reply_just_ended_is_harmless() -> None:
    floor = Floor()
    floor.received(created("r1"))
    (cancel,) = floor.interrupt().send
    late = {"type": "error", "error": {"code": "response_cancel_not_active",
                                       "event_id": cancel["event_id"]}}
    assert floor.too_late(late)
    assert not floor.too_late({"type": "error", "error": {
        "code": "response_cancel_not_active", "event_id": "evt_someone_elses"}})
    assert not floor.too_late({"type": "error", "error": {"code": "invalid_value",
                                                          "event_id": cancel["event_id"]}})


def test_a_create_refused_for_a_response_the_server_started_goes_again_after_it() -> None:
    for answered in (True, False):
        floor = Floor()
        floor.covered = lambda turn, response_id, answered=answered: answered
        _, steps = floor.submit(turn("typed"))
        create_id = steps.send[1]["event_id"]
        # the server's VAD started a response as the typed turn went out: it takes the turn's
        # place, and the turn's own create is refused
        floor.received(created("vad", conversation_id="conv_1"))
        refused = {"type": "error", "error": {
            "code": "conversation_already_has_active_response", "event_id": create_id}}
        assert floor.received(refused).send == []
        assert floor.absorbed(refused)  # a race handled here: not shown
        again = floor.received(done("vad")).send
        if answered:  # that response began after the turn's items: it answers them
            assert again == []
        else:
            assert [e["event_id"] for e in again] == [f"{create_id}-again"]
            refused["error"]["event_id"] = f"{create_id}-again"
            floor.received(created("vad2", conversation_id="conv_1"))
            assert floor.received(refused).send == []  # once only
            assert floor.received(done("vad2")).send == []
