"""The local server's energy VAD on synthesized audio with room noise."""

from __future__ import annotations

from conftest import utterance

from rtwidget.server import EnergyVad, VadSettings


def test_finds_the_start_and_end_of_a_turn_in_noise() -> None:
    pcm = utterance(lead_ms=600, tail_ms=1000)
    voiced_end = len(pcm) // 48 - 1000
    vad = EnergyVad(VadSettings(silence_duration_ms=500))
    found = []
    for i in range(0, len(pcm), 960):
        found += vad.feed(pcm[i : i + 960])
    assert [e.kind for e in found] == ["start", "stop"]
    assert 560 <= found[0].ms <= 680
    assert abs(found[1].ms - voiced_end) <= 60


def test_silence_and_odd_frame_sizes_give_no_events() -> None:
    vad = EnergyVad()
    assert vad.feed(b"\x00\x00" * 7) == []
    assert vad.feed(b"\x00\x00" * 24000) == []
    assert not vad.in_speech


def test_longer_silence_setting_waits_longer() -> None:
    pcm = utterance(words="one two", lead_ms=300, tail_ms=1200)
    stops = {}
    for silence in (200, 900):
        vad = EnergyVad(VadSettings(silence_duration_ms=silence))
        events = vad.feed(pcm)
        stops[silence] = [e for e in events if e.kind == "stop"]
    assert len(stops[200]) >= 1 and len(stops[900]) == 1
