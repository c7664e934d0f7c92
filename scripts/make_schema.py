"""Reduce the published Realtime event schemas to what ``rtreplay validate`` checks.

Usage: python scripts/make_schema.py [--shared ../shared/realtime] [--out rtreplay/schema]

Reads ``events.schema.json`` (GA) and ``events-beta.schema.json`` (beta) and writes, for
each, a small JSON file shipped inside the package: for every wire ``type`` of each
direction, the top-level fields the schema marks required (``type`` itself left out). The
checker looks nothing else up, on purpose: the published schema is stricter than the real
server (it marks fields non-nullable that the server sends as ``null``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SOURCES = {"ga": "events.schema.json", "beta": "events-beta.schema.json"}
# Real wire events the schema files lack (PROTOCOL.md section 1.5): a beta transcription
# socket opens with transcription_session.created, which the beta spec never listed.
EXTRA = {"beta": {"server": {"transcription_session.created": ["event_id", "session"]}}}


def reduce(schema: dict[str, Any], protocol: str) -> dict[str, Any]:
    """The checker's view of one schema file."""
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
            required = [f for f in defs[name].get("required", []) if f != "type"]
            out[side][wire_type] = required
        out[side].update(EXTRA.get(protocol, {}).get(side, {}))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "realtime")
    parser.add_argument("--out", type=Path, default=REPO / "rtreplay" / "schema")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for protocol, filename in SOURCES.items():
        schema = json.loads((args.shared / filename).read_text())
        target = args.out / f"events-{protocol}.json"
        target.write_text(json.dumps(reduce(schema, protocol), indent=1, sort_keys=True) + "\n")
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
