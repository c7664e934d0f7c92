"""The bundled cassettes are exactly what scripts/make_cassettes.py writes, and stay small."""

from __future__ import annotations

import base64
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from rtreplay.codec import load

from .conftest import CASSETTES, REPO

GENERATED = [
    "text-chat", "audio-vad-real", "tool-call", "errors-recoverable",
    "interruption", "transcription", "beta-text", "reconnect", "parallel-tools",
    "endpoints/ephemeral-key", "endpoints/translation", "endpoints/voice-live",
]


def test_the_script_regenerates_the_bundled_cassettes_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_cassettes.py"), "--out", str(tmp_path)],
        check=True, capture_output=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / f"{name}.jsonl").read_bytes()
        assert fresh == (CASSETTES / f"{name}.jsonl").read_bytes(), (
            f"cassettes/{name}.jsonl differs from what scripts/make_cassettes.py writes: regenerate it"
        )


@pytest.mark.parametrize("path", sorted(CASSETTES.glob("**/*.jsonl")), ids=lambda p: p.name)
def test_every_bundled_cassette_stays_under_a_megabyte(path: Path) -> None:
    assert path.stat().st_size < 1_000_000


@pytest.mark.parametrize("name", ["audio-vad-real", "interruption", "transcription"])
def test_audio_in_the_audio_cassettes_is_speech_like_not_silence(name: str) -> None:
    cassette = load(CASSETTES / f"{name}.jsonl")
    pcm = bytearray()
    for conn in cassette.connections:
        for frame in conn.frames:
            event = frame.event()
            assert isinstance(event, dict)
            if event["type"] in ("input_audio_buffer.append", "response.output_audio.delta"):
                pcm += base64.b64decode(event.get("audio") or event["delta"])
    samples = array("h", bytes(pcm))
    assert len(samples) > 24_000  # more than a second at 24 kHz
    # Loud voiced stretches and quiet pauses, as speech has: not silence, not a constant tone.
    windows = [samples[i : i + 2400] for i in range(0, len(samples) - 2400, 2400)]
    levels = [max(abs(s) for s in w) for w in windows]
    assert max(levels) > 3000
    assert min(levels) < 500
    assert sum(level > 3000 for level in levels) > len(levels) / 3
