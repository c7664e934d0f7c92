"""Refresh the event schemas ``rtreplay validate`` checks against: one command.

Usage::

    python scripts/make_schema.py                     # the current spec, from GitHub
    python scripts/make_schema.py --openapi openapi.json [--commit SHA]

Reads OpenAI's OpenAPI document (openai/openai-openapi, ``openapi.json``: a file, or a URL,
by default the repository's current one) and writes, into ``rtreplay/schema/``, for every
wire ``type`` of each direction the top-level fields the spec marks required (``type``
itself left out):

- ``events-ga.json``: the conversation endpoint, the ``RealtimeClientEvent`` and
  ``RealtimeServerEvent`` unions plus the events the spec defines outside them
  (``transcription_session.*``);
- ``events-translation.json``: the translation endpoint, the ``RealtimeTranslationClientEvent``
  and ``RealtimeTranslationServerEvent`` unions (which sit outside the event unions above);
- ``events-voice-live.json``: Azure Voice Live, the beta event names plus Azure's own
  events (:data:`VOICE_LIVE`, from Azure's VoiceLive 2025-10-01 spec);
- ``events-beta.json``: the beta protocol, frozen since the beta's sunset; rewritten only
  from ``--shared`` (``events-beta.schema.json``, extracted from openai-openapi@498c71d).

``--shared DIR`` instead reads the schemas extracted into ``shared/realtime``
(``events.schema.json``, ``events-beta.schema.json``); the GA file it gives is the same.
The checker looks nothing else up, on purpose: the published schema is stricter than the
real server (it marks fields non-nullable that the server sends as ``null``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SPEC_URL = "https://raw.githubusercontent.com/openai/openai-openapi/master/openapi.json"
# Real wire events the schema files lack (PROTOCOL.md section 1.5): a beta transcription
# socket opens with transcription_session.created, which the beta spec never listed.
EXTRA = {"beta": {"server": {"transcription_session.created": ["event_id", "session"]}}}
#: Azure Voice Live's events beyond the beta conversation events, with their required
#: fields (Azure/azure-rest-api-specs, specification/ai/data-plane/VoiceLive/stable/
#: 2025-10-01/VoiceLive.json: ClientEvent* and ServerEvent* definitions).
VOICE_LIVE: dict[str, dict[str, list[str]]] = {
    "client": {
        "input_audio.clear": [],
        "input_audio.turn.start": ["turn_id"],
        "input_audio.turn.append": ["turn_id", "audio"],
        "input_audio.turn.end": ["turn_id"],
        "input_audio.turn.cancel": ["turn_id"],
        "session.avatar.connect": ["client_sdp"],
    },
    "server": {
        "session.avatar.connecting": ["server_sdp"],
        "response.animation_blendshapes.delta": ["response_id", "item_id", "output_index", "content_index", "frames", "frame_index"],
        "response.animation_blendshapes.done": ["response_id", "item_id", "output_index"],
        "response.animation_viseme.delta": ["response_id", "item_id", "output_index", "content_index", "audio_offset_ms", "viseme_id"],
        "response.animation_viseme.done": ["response_id", "item_id", "output_index", "content_index"],
        "response.audio_timestamp.delta": ["response_id", "item_id", "output_index", "content_index", "audio_offset_ms", "audio_duration_ms", "text", "timestamp_type"],
        "response.audio_timestamp.done": ["response_id", "item_id", "output_index", "content_index"],
    },
}
UNIONS = {
    "ga": ("RealtimeClientEvent", "RealtimeServerEvent"),
    "translation": ("RealtimeTranslationClientEvent", "RealtimeTranslationServerEvent"),
}


def _wire_type(definition: dict[str, Any]) -> str | None:
    prop = definition.get("properties", {}).get("type", {})
    values = prop.get("enum") or ([prop["const"]] if "const" in prop else [])
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


def _required(definition: dict[str, Any]) -> list[str]:
    return [f for f in definition.get("required", []) if f != "type"]


def from_openapi(spec: dict[str, Any], source: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The reduced schemas of the GA conversation and translation endpoints."""
    schemas = spec["components"]["schemas"]

    def members(union: str) -> dict[str, str]:
        out = {}
        for ref in schemas[union].get("anyOf", schemas[union].get("oneOf", [])):
            name = ref["$ref"].rsplit("/", 1)[-1]
            wire = _wire_type(schemas[name])
            if wire is not None:
                out[wire] = name
        return out

    made: dict[str, dict[str, Any]] = {}
    for protocol, (client_union, server_union) in UNIONS.items():
        sides = {"client": members(client_union), "server": members(server_union)}
        if protocol == "ga":
            # Conversation events the spec defines outside its unions (transcription_session.*):
            # still real wire types. (Beta and translation events have their own files.)
            for name, definition in schemas.items():
                for side, prefix in (("client", "RealtimeClientEvent"), ("server", "RealtimeServerEvent")):
                    wire = _wire_type(definition)
                    if name.startswith(prefix) and wire is not None and wire not in sides[side]:
                        sides[side][wire] = name
        made[protocol] = {
            "protocol": protocol,
            "title": f"{spec.get('info', {}).get('title', '')} ({client_union}, {server_union})",
            "source": source,
            **{side: {t: _required(schemas[n]) for t, n in sorted(types.items())} for side, types in sides.items()},
        }
    return made


def from_extracted(schema: dict[str, Any], protocol: str) -> dict[str, Any]:
    """A reduced schema from one of shared/realtime's extracted files."""
    defs = schema["$defs"]
    kinds = schema["x-event-types"]
    out: dict[str, Any] = {
        "protocol": protocol,
        "title": schema.get("title", ""),
        "source": schema.get("x-source", {}),
        "client": {},
        "server": {},
    }
    # Events the spec defines outside its unions (GA transcription_session.*) are still
    # real wire types; their direction is in the name (``*.update`` is sent by clients).
    outside = kinds.get("outside_unions", {})
    sides = {
        "client": {**kinds["client"], **{t: n for t, n in outside.items() if not t.endswith("d")}},
        "server": {**kinds["server"], **{t: n for t, n in outside.items() if t.endswith("d")}},
    }
    for side, types in sides.items():
        for wire_type, name in sorted(types.items()):
            out[side][wire_type] = _required(defs[name])
    return out


def voice_live(beta: dict[str, Any]) -> dict[str, Any]:
    """Azure Voice Live: the beta conversation events and Azure's own."""
    out = {
        "protocol": "voice-live",
        "title": "Azure Voice Live: the beta conversation events and the VoiceLive extensions",
        "source": {"repository": "Azure/azure-rest-api-specs",
                   "path": "specification/ai/data-plane/VoiceLive/stable/2025-10-01/VoiceLive.json",
                   "base": beta.get("source", {})},
        "client": dict(beta["client"]),
        "server": dict(beta["server"]),
    }
    for side in ("client", "server"):
        out[side].update(VOICE_LIVE[side])
        out[side] = dict(sorted(out[side].items()))
    return out


def _with_extra(reduced: dict[str, Any]) -> dict[str, Any]:
    for side in ("client", "server"):
        reduced[side].update(EXTRA.get(reduced["protocol"], {}).get(side, {}))
        reduced[side] = dict(sorted(reduced[side].items()))
    return reduced


def _read(where: str) -> bytes:
    if where.startswith(("https://", "http://")):
        with urllib.request.urlopen(where, timeout=60) as response:
            data: bytes = response.read()
            return data
    return Path(where).read_bytes()


def write(out: Path, protocol: str, reduced: dict[str, Any]) -> Path:
    target = out / f"events-{protocol}.json"
    target.write_text(json.dumps(reduced, indent=1, sort_keys=True) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--openapi", metavar="FILE_OR_URL", help=f"openai-openapi's openapi.json (default: {SPEC_URL})")
    source.add_argument("--shared", type=Path, metavar="DIR", help="shared/realtime's extracted schemas instead")
    parser.add_argument("--commit", help="the openai-openapi commit the document is from (recorded as its source)")
    parser.add_argument("--out", type=Path, default=REPO / "rtreplay" / "schema")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    if args.shared is not None:
        ga = from_extracted(json.loads((args.shared / "events.schema.json").read_text()), "ga")
        beta = _with_extra(from_extracted(json.loads((args.shared / "events-beta.schema.json").read_text()), "beta"))
        written += [write(args.out, "ga", _with_extra(ga)), write(args.out, "beta", beta)]
    else:
        where = args.openapi or SPEC_URL
        data = _read(where)
        spec = json.loads(data)
        source = {"repository": "openai/openai-openapi", "path": "openapi.json",
                  "api_version": spec.get("info", {}).get("version"), "sha256": hashlib.sha256(data).hexdigest()}
        if args.commit:
            source["commit"] = args.commit
        for protocol, reduced in from_openapi(spec, source).items():
            written.append(write(args.out, protocol, _with_extra(reduced)))
        beta = json.loads((REPO / "rtreplay" / "schema" / "events-beta.json").read_text())
    written.append(write(args.out, "voice-live", voice_live(beta)))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
