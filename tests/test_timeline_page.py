"""``rtreplay timeline``: the page, in a real headless Chromium (Debian's ``chromium``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rtreplay.cli import main
from rtreplay.codec import load
from rtreplay.timeline_page import timeline_data, timeline_html

from .browser import chromium_path, open_page
from .conftest import CASSETTES, REPO

SAMPLES = sorted(CASSETTES.glob("*.jsonl"))
#: Where the page tests leave their screenshots (CI keeps the folder).
ARTIFACTS = Path(os.environ.get("RTREPLAY_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_bundled_cassette_makes_a_page_that_needs_no_network(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.html"
    assert main(["timeline", str(path), "--out", str(out)]) == 0
    page = out.read_text()
    cassette = load(path)
    data = timeline_data(cassette)
    assert len(data) == len(cassette.connections)
    assert [len(c["events"]) for c in data] == [len(c.frames) for c in cassette.connections]
    for marker in ('src="http', "src='http", 'href="http', "@import", "url(http"):
        assert marker not in page


def test_the_timeline_command_says_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "i.html"
    assert main(["timeline", str(CASSETTES / "interruption.jsonl"), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}: 1 connection, 111 events, 5 audio clips; open it in a browser\n"
    assert main(["timeline", str(CASSETTES / "interruption.jsonl"), "-o", str(tmp_path / "no" / "such" / "x.html")]) == 2


CHROMIUM = chromium_path()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("RTREPLAY_REQUIRE_CHROMIUM"),
    reason="no Chromium to load the page in: apt-get install -y chromium (or set RTREPLAY_CHROMIUM); .ci/run installs it",
)


@needs_chromium
@pytest.mark.timeout(240)
def test_the_page_loads_cleanly_shows_every_connection_and_plays_its_audio(tmp_path: Path) -> None:
    assert CHROMIUM is not None, "RTREPLAY_REQUIRE_CHROMIUM is set, and no chromium is on the PATH"
    pages = {}
    for path in SAMPLES:
        page = tmp_path / f"{path.stem}.html"
        page.write_text(timeline_html(load(path), title=path.name))
        pages[path] = page
    first = next(iter(pages.values()))
    with open_page(CHROMIUM, first.as_uri()) as browser:
        for path, page in pages.items():
            browser.navigate(page.as_uri())
            cassette = load(path)
            shown = browser.evaluate(
                "Array.from(document.querySelectorAll('section.conn')).map("
                "s => [Number(s.dataset.conn), s.querySelectorAll('.mark').length, s.querySelectorAll('.clip').length])"
            )
            data = timeline_data(cassette)
            assert shown == [[c["conn"], len(c["events"]), len(c["clips"])] for c in data], path.name
            if any(c["clips"] for c in data):
                # A real click (a user gesture) on the first waveform plays it in the page.
                browser.click(".clip")
                state = browser.wait_until(
                    "(() => { const c = document.querySelector('.clip'); return c.dataset.played || c.dataset.error; })()",
                    20,
                    f"the first clip of {path.name} to play",
                )
                assert state == "1", f"{path.name}: audio did not play: {state}"
            # The JSON of an event shows on click.
            browser.click(".mark")
            assert browser.evaluate("document.getElementById('detail').style.display") == "block"
            assert browser.evaluate("document.getElementById('djson').textContent.startsWith('{')")
            if path.name == "interruption.jsonl":
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                browser.screenshot(ARTIFACTS / "timeline-interruption.png")
            assert browser.errors() == [], path.name
            assert [u for u in browser.requests() if not u.startswith(("file:", "data:"))] == [], path.name
    assert (ARTIFACTS / "timeline-interruption.png").stat().st_size > 10_000
