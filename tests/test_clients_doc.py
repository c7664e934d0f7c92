"""docs/clients.md: its snippets are the ones the conformance suite runs, its examples run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtreplay.cassette import Close, Frame, Header, Open
from rtreplay.codec import CassetteWriter
from rtreplay.server import ReplayServer

from .conformance import clients, plans
from .conformance.clients import CLIENTS_DOC, Target, doc_snippets
from .conftest import REPO

DRIVERS = (REPO / "tests" / "conformance" / "clients.py").read_text() + (REPO / "tests" / "node" / "driver.mjs").read_text()
_EXAMPLE = re.compile(r"^<!-- example: ([\w-]+) -->\n```python\n(.*?)^```", re.S | re.M)


def examples() -> dict[str, str]:
    return dict(_EXAMPLE.findall(CLIENTS_DOC.read_text()))


def test_every_snippet_of_the_page_is_run_by_a_driver() -> None:
    snippets = doc_snippets()
    assert set(snippets) == {
        "openai_async", "openai_sync", "azure", "agents", "websocket_client", "browser",
        "node_browser", "node_ws", "node_openai", "node_agents",
    }
    for name, (lang, _) in snippets.items():
        call = f'snippet("{name}"' if lang == "python" else f'"{name}"'
        assert call in DRIVERS, f"no driver runs the {name} snippet of docs/clients.md"


def test_the_replay_example_runs_against_the_bundled_cassette(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    exec(compile(examples()["replay"], "docs/clients.md#replay", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == "The capital of Australia is Canberra, not Sydney as many people assume.\n"


def test_the_record_example_builds_a_recorder_without_touching_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(examples()["record"], "docs/clients.md#record", "exec"), scope)
    recorder = scope["recorder"]
    assert str(getattr(recorder, "cassette_path", "")).endswith("my-session.jsonl")
    assert not (tmp_path / "cassettes" / "my-session.jsonl").exists()  # nothing written until it runs


def test_the_certificate_command_is_the_one_the_suite_uses() -> None:
    from .conformance import tls

    source = Path(tls.__file__).read_text()
    doc = CLIENTS_DOC.read_text().replace("\\\n  ", "")
    for arg in ("ec_paramgen_curve:P-256", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"):
        assert arg in doc and f'"{arg}"' in source


async def test_the_agents_validation_check_catches_a_malformed_server_event(
    tmp_path: Path
) -> None:
    # The bundled-cassette check relies on the agents SDK telling its listeners what it
    # cannot parse: a beta event name on a GA connection must show up there.
    path = tmp_path / "bad.jsonl"
    created = '{"type":"session.created","event_id":"event_1","session":{"type":"realtime","object":"realtime.session","id":"sess_1","model":"gpt-realtime"}}'
    beta = '{"type":"response.text.delta","event_id":"event_2","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"hi"}'
    with CassetteWriter(path, header=Header(created="2026-01-01T00:00:00Z")) as w:
        w.write(Open(conn=0, query={"model": "gpt-realtime"}))
        w.write(Frame.from_message(0, 0.0, "server", created))
        w.write(Frame.from_message(0, 0.1, "client", '{"type": "session.update", "session": {"type": "realtime"}}'))
        w.write(Frame.from_message(0, 0.2, "server", beta))
        w.write(Close(0, 0.3))
    rejected: list[str] = []
    async with ReplayServer(path, match="type") as server:
        await clients.agents_model(
            Target(server), plans.cassette_plan(path), skip_first_update=True, raw_socket=True, rejected=rejected
        )
    assert len(rejected) == 1, rejected


@pytest.mark.parametrize(
    ("name", "printed"),
    [
        ("ephemeral-key", "I can answer questions, explain things and help you plan your day.\n"),
        ("translation", "Buenos días, ¿dónde está la estación de tren?\n"),
        ("voice-live", "0 Sure,\n260 it\n520 opens\n780 at\n1040 nine\n1300 tomo\n1560 rrow.\n"),
    ],
)
def test_the_endpoint_examples_run_against_their_bundled_cassettes(
    name: str, printed: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if name == "translation":
        from .test_endpoints import needs_sdk_translations

        needs_sdk_translations()
    monkeypatch.chdir(REPO)
    exec(compile(examples()[name], f"docs/clients.md#{name}", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == printed
