"""A cassette as one self-contained HTML page: the session in time, with audio that plays.

:func:`timeline_html` returns the page: per connection, a lane of client events and one of
server events (each a mark; hover shows its type and time, a click shows its JSON), the
audio of each user turn and assistant message as a waveform under its lane (a click plays
it in the page, a line follows the playback), and each response's latency (from what
triggered it to its first delta) as a bar. Everything, audio included, is inside the page:
it loads nothing from the network. Audio strings inside the events' JSON are shown as
their size and duration, since the waveforms carry the sound.
"""

from __future__ import annotations

import html
import json
from array import array
from collections.abc import Iterable
from typing import Any

from .audiofiles import AUDIO_FIELDS
from .cassette import Cassette
from .conversation import (
    AudioFormat,
    ConversationConnection,
    Message,
    Response,
    UserAudio,
    UserText,
    audio_data_uri,
    conversation,
    g711_to_pcm16,
)

__all__ = ["timeline_data", "timeline_html"]

_PEAKS = 600  # waveform columns per clip at most
_LONG = 4000  # strings longer than this are cut in the JSON shown


def _peaks(audio: bytes, fmt: AudioFormat) -> list[float]:
    pcm = g711_to_pcm16(audio, fmt)
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    if not samples:
        return []
    step = max(1, len(samples) // _PEAKS)
    return [
        round(max(max(samples[i : i + step]), -min(samples[i : i + step])) / 32768, 3)
        for i in range(0, len(samples), step)
    ]


def _shown(event: Any, fmt: AudioFormat | None) -> Any:
    if not isinstance(event, dict):
        return event
    out = dict(event)
    kind = out.get("type")
    field = AUDIO_FIELDS.get(kind) if isinstance(kind, str) else None
    if field and isinstance(out.get(field), str) and fmt is not None:
        n = len(out[field]) * 3 // 4
        out[field] = f"<{n:,} bytes of audio, {fmt.duration(n):.3f} s>"
    for key, value in out.items():
        if isinstance(value, str) and len(value) > _LONG:
            out[key] = value[:_LONG] + f"... <{len(value) - _LONG:,} more characters>"
    return out


def _connection(cassette: Cassette, c: ConversationConnection) -> dict[str, Any]:
    conn = next(x for x in cassette.connections if x.open.conn == c.conn)
    events = []
    for f in conn.frames:
        try:
            event = f.event()
        except ValueError:
            event = None
        fmt = c.input_format if f.dir == "client" else c.output_format
        kind = event.get("type") if isinstance(event, dict) else None
        if event is None:
            payload = f.payload()
            shown: Any = payload if isinstance(payload, str) else f"<binary frame, {len(payload):,} bytes>"
            label = "text frame" if isinstance(payload, str) else "binary frame"
        else:
            shown = _shown(event, fmt)
            label = kind if isinstance(kind, str) else "(no type)"
        events.append(
            {
                "t": f.t,
                "dir": f.dir,
                "type": label,
                "json": json.dumps(shown, indent=1, ensure_ascii=False) if not isinstance(shown, str) else shown,
            }
        )
    clips = []
    latencies = []
    for e in c.entries:
        if isinstance(e, (UserAudio, UserText)) and e.audio:
            fmt = e.format or c.input_format
            said = e.transcript if isinstance(e, UserAudio) else e.text
            clips.append(_clip("client", e.t, e.audio, fmt, f"user, turn {e.turn}", said))
        elif isinstance(e, Response):
            start = e.first_delta if e.first_delta is not None else e.t
            for o in e.outputs:
                if isinstance(o, Message) and o.audio:
                    clips.append(_clip("server", start, o.audio, o.format, f"assistant, turn {e.turn}", o.transcript))
                    start += o.duration
            if e.latency is not None and e.first_delta is not None:
                begin = e.trigger_t if e.trigger_t is not None else e.t
                latencies.append(
                    {
                        "from": begin,
                        "to": e.first_delta,
                        "label": f"{e.latency * 1000:,.0f} ms",
                        "title": f"response {e.id or ''} ({e.status or 'unfinished'}): first delta "
                        f"{e.latency * 1000:,.0f} ms after {e.trigger or 'response.created'}"
                        + (f", done in {e.duration * 1000:,.0f} ms" if e.duration is not None else ""),
                    }
                )
    end = max([c.duration, *(x["t1"] for x in clips)])
    return {
        "conn": c.conn,
        "target": c.target,
        "protocol": c.protocol.upper(),
        "duration": end,
        "events": events,
        "clips": clips,
        "latencies": latencies,
    }


def _clip(lane: str, t0: float, audio: bytes, fmt: AudioFormat, label: str, said: str | None) -> dict[str, Any]:
    duration = fmt.duration(len(audio))
    return {
        "lane": lane,
        "t0": t0,
        "t1": t0 + duration,
        "duration": duration,
        "label": label,
        "said": said or "",
        "format": fmt.label,
        "peaks": _peaks(audio, fmt),
        "src": audio_data_uri(audio, fmt),
    }


def timeline_data(cassette: Cassette, conns: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """What the page shows, as plain data: per connection its events, clips and latencies."""
    return [_connection(cassette, c) for c in conversation(cassette, conns)]


def timeline_html(
    cassette: Cassette,
    *,
    title: str = "cassette",
    conns: Iterable[int] | None = None,
    data: list[dict[str, Any]] | None = None,
) -> str:
    """The whole page, as text (UTF-8 when written); ``data`` if :func:`timeline_data` was called."""
    if data is None:
        data = timeline_data(cassette, conns)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # "<" only occurs inside JSON strings, where \u003c means the same: no "</script>" or
    # "<!--" can end the data block early.
    text = text.replace("<", "\\u003c")
    return _PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", text)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; media-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>rtreplay timeline: __TITLE__</title>
<style>
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { padding: 10px 16px; background: #fff; border-bottom: 1px solid #ddd; position: sticky; top: 0; z-index: 5; }
header h1 { font-size: 15px; margin: 0 0 4px; }
header label { margin-right: 12px; }
section.conn { margin: 12px 16px; background: #fff; border: 1px solid #ddd; border-radius: 6px; }
section.conn h2 { font-size: 14px; margin: 0; padding: 8px 12px; border-bottom: 1px solid #eee; }
.scroll { overflow-x: auto; position: relative; }
.track { position: relative; height: 232px; margin-left: 110px; }
.lane-name { position: absolute; left: -106px; width: 100px; font-size: 11px; color: #666; text-align: right; }
.lane { position: absolute; left: 0; right: 0; border-top: 1px dashed #eee; }
.mark { position: absolute; width: 3px; height: 22px; border-radius: 1px; cursor: pointer; opacity: .85; }
.mark:hover, .mark.selected { outline: 2px solid #000; opacity: 1; z-index: 3; }
.mark.client { background: #2a9d4b; } .mark.server { background: #2f6fdb; }
.mark.audio { background: #b8b8b8; height: 12px; margin-top: 5px; }
.mark.error { background: #d62828; height: 26px; margin-top: -2px; }
.mark.response { background: #7b3fc4; }
.clip { position: absolute; height: 40px; background: #eef3ff; border: 1px solid #9db5e8; border-radius: 3px; cursor: pointer; overflow: hidden; }
.clip.client { background: #eaf7ee; border-color: #8fcf9f; }
.clip canvas { width: 100%; height: 100%; display: block; }
.clip .head { position: absolute; top: 0; bottom: 0; width: 2px; background: #e76f51; left: 0; display: none; }
.clip.playing .head { display: block; }
.latency { position: absolute; height: 14px; border: 1px solid #e76f51; border-top: none; font-size: 10px; color: #b5462c; text-align: center; white-space: nowrap; }
.axis { position: absolute; top: 212px; font-size: 10px; color: #999; border-left: 1px solid #ddd; padding-left: 2px; height: 16px; }
#detail { position: fixed; right: 0; top: 0; bottom: 0; width: 38%; background: #fff; border-left: 1px solid #ccc; padding: 10px; overflow: auto; display: none; z-index: 10; box-shadow: -2px 0 6px rgba(0,0,0,.1); }
#detail pre { white-space: pre-wrap; word-break: break-all; font-size: 12px; }
#detail button { float: right; }
#tip { position: fixed; pointer-events: none; background: #222; color: #fff; padding: 2px 6px; border-radius: 3px; font-size: 11px; display: none; z-index: 20; }
</style>
</head>
<body>
<header>
<h1>rtreplay timeline: __TITLE__</h1>
<label>zoom <input id="zoom" type="range" min="20" max="2000" value="200"> <span id="zoomv"></span> px/s</label>
<span>green: client events, blue: server events, grey: audio chunks, red: errors; click a mark for its JSON, a waveform to play it</span>
</header>
<main id="main"></main>
<div id="detail"><button id="close">close</button><h3 id="dtitle"></h3><pre id="djson"></pre></div>
<div id="tip"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const main = document.getElementById("main");
const tip = document.getElementById("tip");
let scale = 200;
let playing = null;

function el(tag, cls, parent) { const e = document.createElement(tag); if (cls) e.className = cls; if (parent) parent.appendChild(e); return e; }
function fmt(t) { return t.toFixed(3) + " s"; }
function markClass(ev) {
  const t = ev.type;
  if (t === "error") return "error";
  if (/audio\\.delta$|input_audio_buffer\\.append$/.test(t)) return "audio";
  if (t === "response.created" || t === "response.done" || t === "response.create") return "response";
  return "";
}
function showDetail(ev, mark) {
  document.querySelectorAll(".mark.selected").forEach(m => m.classList.remove("selected"));
  mark.classList.add("selected");
  document.getElementById("dtitle").textContent = ev.dir + " " + ev.type + " at " + fmt(ev.t);
  document.getElementById("djson").textContent = ev.json;
  document.getElementById("detail").style.display = "block";
}
document.getElementById("close").onclick = () => { document.getElementById("detail").style.display = "none"; };
function hover(e, text) { tip.textContent = text; tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; tip.style.display = "block"; }
function unhover() { tip.style.display = "none"; }

function drawWave(canvas, peaks) {
  const w = canvas.width = Math.max(1, Math.round(canvas.clientWidth * (window.devicePixelRatio || 1)));
  const h = canvas.height = 80;
  const g = canvas.getContext("2d");
  g.fillStyle = "#4a6fb5";
  const n = peaks.length;
  for (let x = 0; x < w; x++) {
    const p = peaks[Math.min(n - 1, Math.floor(x * n / w))] || 0;
    const y = Math.max(1, p * h / 2);
    g.fillRect(x, h / 2 - y, 1, 2 * y);
  }
}

function play(clip, box) {
  if (playing) { playing.audio.pause(); playing.box.classList.remove("playing"); }
  const audio = box._audio || (box._audio = new Audio(clip.src));
  const head = box.querySelector(".head");
  audio.currentTime = 0;
  playing = { audio, box };
  box.classList.add("playing");
  function step() {
    if (playing && playing.audio === audio && !audio.paused) {
      head.style.left = (100 * audio.currentTime / Math.max(clip.duration, 0.001)) + "%";
      requestAnimationFrame(step);
    }
  }
  audio.onended = () => { box.classList.remove("playing"); box.dataset.played = "1"; };
  audio.ontimeupdate = () => { if (audio.currentTime > 0) box.dataset.played = "1"; };
  return audio.play().then(() => { box.dataset.started = "1"; requestAnimationFrame(step); });
}

const LANES = { client: 28, "client audio": 58, server: 112, "server audio": 142, latency: 188 };
function render() {
  main.textContent = "";
  document.getElementById("zoomv").textContent = scale;
  DATA.forEach((c) => {
    const sec = el("section", "conn", main);
    sec.dataset.conn = c.conn;
    el("h2", "", sec).textContent = "connection " + c.conn + ": " + c.target + " (" + c.protocol + "), " +
      c.events.length + " frames, " + fmt(c.duration);
    const scroll = el("div", "scroll", sec);
    const track = el("div", "track", scroll);
    track.style.width = Math.max(400, Math.ceil(c.duration * scale) + 40) + "px";
    for (const [name, top] of Object.entries(LANES)) {
      const lane = el("div", "lane", track); lane.style.top = (top - 4) + "px";
      const label = el("div", "lane-name", track); label.style.top = (top + 2) + "px"; label.textContent = name;
    }
    const step = scale >= 400 ? 0.1 : scale >= 60 ? 1 : scale >= 10 ? 5 : 30;
    for (let t = 0; t <= c.duration + 1e-9; t += step) {
      const a = el("div", "axis", track); a.style.left = (t * scale) + "px"; a.textContent = (Math.round(t * 10) / 10) + " s";
    }
    c.events.forEach((ev) => {
      const m = el("div", "mark " + ev.dir + " " + markClass(ev), track);
      m.style.left = (ev.t * scale) + "px";
      m.style.top = LANES[ev.dir] + "px";
      m.dataset.type = ev.type;
      m.onmouseenter = (e) => hover(e, ev.dir + " " + ev.type + " at " + fmt(ev.t));
      m.onmouseleave = unhover;
      m.onclick = () => showDetail(ev, m);
    });
    c.clips.forEach((clip) => {
      const box = el("div", "clip " + clip.lane, track);
      box.style.left = (clip.t0 * scale) + "px";
      box.style.top = (LANES[clip.lane + " audio"]) + "px";
      box.style.width = Math.max(4, clip.duration * scale) + "px";
      box.dataset.lane = clip.lane;
      const canvas = el("canvas", "", box);
      el("div", "head", box);
      box.onmouseenter = (e) => hover(e, clip.label + ": " + clip.duration.toFixed(2) + " s " + clip.format + (clip.said ? ' "' + clip.said + '"' : "") + " (click to play)");
      box.onmouseleave = unhover;
      box.onclick = () => { play(clip, box).catch((err) => { box.dataset.error = String(err); }); };
      requestAnimationFrame(() => drawWave(canvas, clip.peaks));
    });
    c.latencies.forEach((l) => {
      const bar = el("div", "latency", track);
      bar.style.left = (l.from * scale) + "px";
      bar.style.top = LANES.latency + "px";
      bar.style.width = Math.max(2, (l.to - l.from) * scale) + "px";
      bar.textContent = l.label;
      bar.onmouseenter = (e) => hover(e, l.title);
      bar.onmouseleave = unhover;
    });
  });
}
document.getElementById("zoom").oninput = (e) => { scale = Number(e.target.value); render(); };
render();
</script>
</body>
</html>
"""
