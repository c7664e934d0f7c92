"""The examples in docs/cassette-format.md are real: the sample parses, the code runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtreplay import Frame, load

from .docs import code_blocks

REPO = Path(__file__).resolve().parent.parent


def test_the_documented_sample_cassette_is_valid(tmp_path: Path) -> None:
    blocks = code_blocks("cassette-format.md", "json")
    sample = blocks[0]
    [http] = [b for b in blocks if '"kind":"http"' in b]
    path = tmp_path / "sample.jsonl"
    path.write_text(sample)
    cassette = load(path)
    (conn,) = cassette.connections
    assert conn.open.query == {"model": "gpt-realtime"}
    kinds = ["json" if f.event() is not None else "other" for f in conn.frames]
    assert kinds == ["json", "json", "other", "other"]
    assert conn.frames[1].payload() == '{"type": "response.create"}', "JSON replays byte for byte"
    assert conn.frames[3].payload() == b"\x00\x01\x02\xff"
    assert conn.close is not None and conn.close.by == "client"
    for line in sample.splitlines():
        json.loads(line)
    # The http record, in a format-2 cassette.
    path.write_text(sample.replace('"format":1', '"format":2', 1) + http)
    [exchange] = load(path).exchanges
    assert (exchange.request.method, exchange.response.status) == ("POST", 200)
    assert json.loads(exchange.response.body())["value"] == "ek_REDACTED"


def test_the_documented_python_runs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    (code,) = code_blocks("cassette-format.md", "python")
    exec(compile(code, "docs/cassette-format.md", "exec"), {})
    out = capsys.readouterr().out
    assert "/v1/realtime {'model': 'gpt-realtime'}" in out
    assert "1 Header" in out and "Frame" in out
    assert "POST /v1/realtime/client_secrets 200" in out


def test_the_field_tables_match_the_structs() -> None:
    import re

    from rtreplay.cassette import Close, Header, HttpExchange, Open, Reject

    text = (REPO / "docs" / "cassette-format.md").read_text()
    structs = {"header": Header, "open": Open, "frame": Frame, "close": Close, "reject": Reject, "http": HttpExchange}
    sections = re.split(r"^### `(\w+)`", text, flags=re.M)
    documented = {sections[i]: sections[i + 1] for i in range(1, len(sections), 2)}
    assert set(documented) == set(structs)
    for kind, struct in structs.items():
        fields = set(re.findall(r"^\| `(\w+)` \|", documented[kind], flags=re.M))
        assert fields == set(struct.__struct_fields__), kind


def test_the_documented_version_2_sample_names_the_fields_of_the_structs() -> None:
    from rtreplay.cassette import AudioFile, AudioRef

    [v2] = [b for b in code_blocks("cassette-format.md", "json") if '"kind":"audio"' in b]
    records = [json.loads(line) for line in v2.splitlines()]
    assert records[0] == {**records[0], "kind": "header", "format": 2}
    assert set(records[1]) - {"kind"} == set(AudioFile.__struct_fields__)
    frame = records[-1]
    assert set(frame["audio"]) == set(AudioRef.__struct_fields__)
    assert frame["json"][frame["audio"]["field"]] == ""
