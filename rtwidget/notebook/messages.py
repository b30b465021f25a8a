"""The custom messages between the widget's page (``js/``) and the kernel, each declared once:
its type, which way it goes, its fields and what its binary buffer holds.

Audio travels in the message's first binary buffer, or as base64 in its ``b64`` field where
the front end drops buffers (see :mod:`rtwidget.notebook.transport`). The kernel uses the
constants below; the page writes the same names as string literals, and a test reads ``js/``
to check that the page sends exactly :data:`PAGE_TO_KERNEL` and handles exactly
:data:`KERNEL_TO_PAGE`. No type goes both ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UP, DOWN = "page → kernel", "kernel → page"


@dataclass(frozen=True)
class Message:
    """One message type: its name, direction (:data:`UP` or :data:`DOWN`), what it says,
    its fields (name → meaning) and what its binary buffer holds (``""`` for none)."""

    type: str
    direction: str
    doc: str
    fields: dict[str, str] = field(default_factory=dict)
    buffer: str = ""


PAGE_TO_KERNEL: dict[str, Message] = {}
KERNEL_TO_PAGE: dict[str, Message] = {}

PCM = "PCM16 24 kHz mono (or none, and the same as base64 in ``b64``)"


def _declare(type_: str, direction: str, doc: str, buffer: str = "", **fields: str) -> str:
    if type_ in PAGE_TO_KERNEL or type_ in KERNEL_TO_PAGE:
        raise ValueError(f"the page message {type_!r} is declared twice")
    table = PAGE_TO_KERNEL if direction == UP else KERNEL_TO_PAGE
    table[type_] = Message(type_, direction, doc, fields, buffer)
    return type_


# --- page → kernel ------------------------------------------------------------------------------

READY = _declare(
    "ready", UP, "The page is up (a new page, or a reload): the kernel sends what it shows "
    "again. Carries the transport probe when the page checks the transport.",
    buffer="the transport probe (4 bytes), if the front end carries buffers",
    probe="the probe's bytes, as a list of ints")
TRANSPORT = _declare(
    "transport", UP, "The page's answer to ``transport_check``: what arrives intact each way.",
    up="the kernel received the page's probe intact (mic audio may go as buffers)",
    down="the page received the kernel's probe intact (reply audio may go as buffers)")
MIC = _declare(
    "mic", UP, "The mic was switched on or off.",
    on="whether it is on", rate="the capture device's sample rate (on)",
    ptt="whether it only sends while push-to-talk is held (on)")
MIC_AUDIO = _declare(
    "mic_audio", UP, "A 40 ms frame of the mic.", buffer=PCM,
    seq="the frame's number, from 1", t="when the page sent it (its wall clock, ms)",
    b64="the audio as base64, where buffers do not arrive")
PTT = _declare("ptt", UP, "Push-to-talk was pressed or released.", on="whether it is held")
TEXT = _declare("text", UP, "A turn typed in the text box.", text="what was typed")
INTERRUPT = _declare("interrupt", UP, "■ Stop: the page stopped playing; cancel the reply.")
PLAYBACK_STARTED = _declare(
    "playback_started", UP, "The page played the first sample of an item's audio.",
    item_id="the item", t="when (the page's wall clock, ms)",
    device_ms="the output latency the browser reports (ms)")
PLAYBACK_STOPPED = _declare(
    "playback_stopped", UP, "The page stopped playing an item (a barge-in, ■ Stop, a typed "
    "turn): the reply is cut where it was heard.",
    item_id="the item", audio_end_ms="how much of its audio was played (ms)",
    reason='why: "speech", "user", "server", or "turn" (a typed turn asked for it)')
TURN_FLUSHED = _declare(
    "turn_flushed", UP, "The page stopped as a typed turn's ``flush`` asked (its "
    "``playback_stopped`` came first): the turn may go.")
REPLY_AUDIO_ACK = _declare(
    "reply_audio_ack", UP, "The page took reply audio: the kernel stops sending to a page "
    "that stops taking it.", bytes="reply audio bytes taken so far")
VOICE = _declare("voice", UP, "A voice was picked.", voice="its name")
MCP_APPROVAL = _declare(
    "mcp_approval", UP, "Approve or Deny on an MCP tool's approval request row.",
    request_id="the mcp_approval_request item", approve="whether the call may run")
CANCEL_TOOL = _declare("cancel_tool", UP, "✕ on a running tool call's row: cancel the call "
                       "(the model is told it was cancelled).", call_id="the call")
CONNECT = _declare("connect", UP, "Connect pressed: a new session where the old one ended.")
DISCONNECT = _declare("disconnect", UP, "Disconnect pressed: the session is closed.")
CLIENT_ERROR = _declare("client_error", UP, "The page failed (no mic, a denied permission).",
                        message="what it shows the user")
LATENCY_RESULT = _declare(
    "latency_result", UP, "The outcome of the page's audio round trip test.",
    heard="whether the chirp was heard back", roundtrip_ms="the round trip (heard)",
    output_ms="the output latency the browser reports", rate="the device's sample rate",
    input_ms="the input latency the browser reports", score="how well the echo matched",
    error="why the test could not run")

# --- kernel → page ------------------------------------------------------------------------------

TRANSPORT_CHECK = _declare(
    "transport_check", DOWN, "The kernel's answer to ``ready``'s probe, with its own probe for "
    "the page to check.", buffer="the kernel's transport probe (4 bytes)",
    up="the page's probe arrived intact", probe="the probe's bytes, as a list of ints")
MIC_AUDIO_ACK = _declare(
    "mic_audio_ack", DOWN, "Every 10th mic frame reached the kernel: frames long unanswered "
    "mean a busy kernel.", seq="the frame's number")
REPLY_AUDIO = _declare(
    "reply_audio", DOWN, "Audio of a reply, to be played.", buffer=PCM,
    item_id="the item it belongs to", b64="the audio as base64, where buffers do not arrive")
REPLY_AUDIO_DONE = _declare("reply_audio_done", DOWN, "An item will get no more audio.",
                            item_id="the item")
BACKCHANNEL = _declare(
    "backchannel", DOWN, "Back-channel audio (Inworld's \"uh-huh\" while the user speaks), "
    "played beside the reply, never cut.", buffer=PCM,
    id="the back-channel's id", b64="the audio as base64, where buffers do not arrive")
FLUSH = _declare(
    "flush", DOWN, "Stop playing at once and report where (``playback_stopped``).",
    reason='"speech" (the user started speaking), or "turn" (a typed turn waits for '
    '``turn_flushed``)')
ROWS = _declare(
    "rows", DOWN, "Transcript rows that changed (see :mod:`rtwidget.notebook.rows`).",
    rows="the rows", removed="ids of rows deleted", reset="the rows are the whole transcript")
VOICES = _declare("voices", DOWN, "The voice picker's choices.",
                  names="the provider's voices", current="the voice in use")
LATENCY_TEST = _declare("latency_test", DOWN, "Run the audio round trip test and send "
                        "``latency_result``.")
