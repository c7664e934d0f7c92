"""The encodings a key may be written in, and a check that undoes them all.

:func:`encode` writes a key the way a client or a server might (base64 inside a larger blob
at each of its three alignments, hexadecimal, another case, HTML character references,
JSON string escapes written out, percent-encoding);
:func:`leaked` looks for the key in bytes decoded every one of those ways, independently of
how the redactor finds them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import re
import urllib.parse

__all__ = ["ENCODINGS", "encode", "leaked"]

ENCODINGS = ("plain", "base64-0", "base64-1", "base64-2", "base64url-0", "base64url-1",
             "base64url-2", "hex", "HEX", "upper", "lower", "html-decimal", "html-hex",
             "html-every-other", "json-u", "json-u-every-other", "percent")


def encode(key: str, encoding: str) -> str:
    """``key`` as ``encoding`` writes it; base64 inside a longer blob, the key at byte
    offset 0, 1 or 2 of it (modulo 3), with bytes before and after."""
    raw = key.encode()
    if encoding.startswith("base64"):
        offset = int(encoding[-1])
        blob = b"\x89PNG"[:offset] + raw + b"\x00\xff\xfe~?"
        coder = base64.urlsafe_b64encode if encoding.startswith("base64url") else base64.b64encode
        return coder(blob).decode()
    if encoding in ("hex", "HEX"):
        return raw.hex() if encoding == "hex" else raw.hex().upper()
    if encoding in ("upper", "lower"):
        return key.upper() if encoding == "upper" else key.lower()
    if encoding == "html-decimal":
        return "".join(f"&#{ord(c)};" for c in key)
    if encoding == "html-hex":
        return "".join(f"&#x{ord(c):x};" for c in key)
    if encoding == "html-every-other":
        return "".join(f"&#{ord(c)};" if i % 2 else c for i, c in enumerate(key))
    if encoding == "json-u":  # JSON string escapes, written out (JSON quoted in text)
        return "".join(f"\\u{ord(c):04x}" for c in key)
    if encoding == "json-u-every-other":
        return "".join(f"\\u{ord(c):04X}" if i % 2 else c for i, c in enumerate(key))
    if encoding == "percent":  # every byte percent-encoded
        return "".join(f"%{b:02X}" for b in raw)
    assert encoding == "plain"
    return key


_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.DOTALL)


def _unescape_json(text: str) -> str:
    """JSON string escapes undone (``\\\\u0073`` too: however deeply JSON was quoted)."""
    for _ in range(4):
        undone = _ESCAPE.sub(lambda m: chr(int(m[1][1:], 16)) if len(m[1]) == 5 else m[1], text)
        if undone == text:
            break
        text = undone
    return text


# Runs of characters a base64 or hex decoder reads.
_B64_RUN = re.compile(rb"[A-Za-z0-9+/]{8,}")
_B64URL_RUN = re.compile(rb"[A-Za-z0-9_-]{8,}")
_HEX_RUN = re.compile(rb"[0-9A-Fa-f]{16,}")


def leaked(key: str, blob: bytes) -> str | None:
    """How ``blob`` still holds ``key``, undone every way :func:`encode` hides it (every
    run of base64 characters read from each of its first four offsets, every run of hex
    digits from either of its first two); ``None`` if it does not."""
    k = key.encode()
    if k in blob:
        return "as it is"
    if key.upper().encode() in blob or key.lower().encode() in blob:
        return "in upper or lower case"
    text = blob.decode("utf-8", "replace")
    if k in html.unescape(text).encode():
        return "behind HTML character references"
    if k in _unescape_json(text).encode():
        return "behind JSON string escapes"
    if k in urllib.parse.unquote_to_bytes(urllib.parse.unquote_to_bytes(blob)):
        return "percent-encoded"
    for run in _HEX_RUN.findall(blob):
        for start in (0, 1):
            digits = run[start:]
            if k in bytes.fromhex(digits[: len(digits) // 2 * 2].decode()):
                return "in hexadecimal"
    for pattern, decode in ((_B64_RUN, base64.b64decode), (_B64URL_RUN, base64.urlsafe_b64decode)):
        for run in pattern.findall(blob):
            for start in range(4):
                chars = run[start:]
                with contextlib.suppress(binascii.Error, ValueError):
                    if k in decode(chars[: len(chars) // 4 * 4]):
                        return "in base64"
    return None
