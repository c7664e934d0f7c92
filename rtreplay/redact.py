"""What never reaches a disk: API keys, ephemeral secrets, organisation and project ids.

A :class:`Redactor` rewrites every record before the writer encodes it:

- handshake headers named like credentials (``Authorization``, ``api-key``,
  ``OpenAI-Organization``, ``OpenAI-Project``, cookies, and any you add) keep their name but
  lose their value (``Bearer REDACTED``);
- the browser subprotocols ``openai-insecure-api-key.<key>``, ``openai-organization.<org>``
  and ``openai-project.<proj>`` keep their prefix only;
- query parameters named like keys (``api_key``, ``key``, ``token``, ``client_secret``...);
- inside frames: every live credential the recorder saw (anywhere, text or binary), any
  ``sk-...`` or ``ek_...`` key-shaped string, the value of any JSON field named like a
  secret (``client_secret``, ``api_key``, ``password``...), at any depth;
- a live credential is also found in the encodings a client or a server may put it in:
  JSON escapes, percent-encoding, upper or lower case, hexadecimal (either case), base64
  (standard or URL-safe, inside a larger base64 blob at any of its three alignments) and
  HTML character references (``&#115;``, ``&#x73;``, named ones), in frames, headers,
  query strings, close reasons, refusal bodies and the recorder's log lines;
- your own rules: header names, dotted JSON paths (``*`` matches any key or index),
  regular expressions, and a callable over each decoded event.

Text is rewritten in place where possible, so a frame without secrets keeps its exact bytes
and one with a key-shaped string changes only there (an encoded credential is replaced by
``REDACTED`` in its encoding's place: base64 around it then decodes to other bytes). Live
credentials shorter than :data:`MIN_SECRET_LENGTH` characters (``"test"``) are redacted by
field but not hunted for inside frames, where such a short string would match ordinary
text. A key nobody presented is found by its shape (``sk-...``) or its field's name only,
so in no other encoding than JSON, percent and HTML escapes.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import html
import os
import re
import sys
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
import pybase64

from .cassette import (
    Close,
    Direction,
    Frame,
    Header,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Open,
    Record,
    Reject,
    json_raw,
)
from .errors import EventHookError

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "Redactor", "credentials_in_handshake"]

REDACTED = "REDACTED"
MIN_SECRET_LENGTH = 8

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "openai-organization",
        "openai-project",
        "cookie",
        "set-cookie",
        # API gateways' keys: Azure API Management, Azure Functions, Google, Kong...
        "ocp-apim-subscription-key",
        "x-functions-key",
        "x-goog-api-key",
        "apikey",
        "x-api-token",
        "x-auth-token",
        "x-access-token",
    }
)
# Headers whose value is a credential after an auth scheme (``Bearer <token>``).
_SCHEME_HEADERS = frozenset({"authorization", "proxy-authorization"})
_COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})
# Headers whose values are organisation or project ids: redacted, but not hunted for.
_ID_HEADERS = frozenset({"openai-organization", "openai-project"})
SECRET_SUBPROTOCOL_PREFIXES = (
    "openai-insecure-api-key.",
    "openai-organization.",
    "openai-project.",
)
SECRET_QUERY = frozenset(
    {
        "api-key",
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "auth",
        "authorization",
        "client_secret",
        "secret",
        "password",
        "sig",
        "signature",
        "code",  # Azure Functions' function key
        "subscription-key",  # Azure API Management
        "ocp-apim-subscription-key",
    }
)
# JSON field names whose string values are secrets wherever they appear in an event.
SECRET_FIELDS = frozenset(
    {
        "client_secret",
        "api_key",
        "apikey",
        "api-key",
        "secret",
        "password",
        "access_token",
        "refresh_token",
        "id_token",
        "authorization",
        "bearer_token",
    }
)
# A key is not the end of a longer word (no letter or digit just before it: ``desk-lamp``
# is none), but a JSON escape (``\n``, ``\u00a0``) or a percent-escape (``%20``) just
# before it ends the previous word.
_KEY_SHAPES = re.compile(
    r"(?:(?<![A-Za-z0-9])|(?<=\\[nrtbf/])|(?<=%[0-9A-Fa-f]{2})|(?<=\\u[0-9A-Fa-f]{4}))"
    r"(sk-|ek_)[A-Za-z0-9][A-Za-z0-9_\-]{7,}"
)
# Also matches a field inside a string holding JSON (``\"api_key\":``): tool arguments,
# a function_call_output, an echoed event.
_FIELD_TRIGGER = re.compile(
    r'\\*"(?:' + "|".join(re.escape(n) for n in sorted(SECRET_FIELDS)) + r')\\*"\s*:', re.IGNORECASE
)
# The same test for lower-cased text, starting with a literal: IGNORECASE and an optional
# first character keep the regex engine from searching for a leading literal, which makes
# it ~8x slower on a whole frame. (A leading backslash changes nothing to a search.)
_FIELD_TRIGGER_LOWER = re.compile(
    r'"(?:' + "|".join(re.escape(n) for n in sorted(SECRET_FIELDS)) + r')\\*"\s*:'
)
# Runs of URL-ish text holding a percent-escape, decoded to look for keys.
_PERCENT_RUN = re.compile(r"[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*")
# A secret field's string value at any level of JSON-in-a-string escaping (what a frame
# too deeply nested to decode is searched with): ``"k": "v"``, ``\"k\": \"v\"``...
_ESCAPED_FIELD_VALUE = re.compile(
    r'(?P<q>\\*)"(?:' + "|".join(re.escape(n) for n in sorted(SECRET_FIELDS))
    + r')(?P=q)"\s*:\s*(?P=q)"(?P<value>.*?)(?:(?<!\\)(?P=q)"|$)',
    re.IGNORECASE | re.DOTALL,
)
# A secret field's string value inside a string holding JSON cut short (argument deltas).
_NESTED_FIELD_VALUE = re.compile(
    r'("(?:' + "|".join(re.escape(n) for n in sorted(SECRET_FIELDS)) + r')"\s*:\s*")((?:[^"\\]|\\.)*)',
    re.IGNORECASE,
)

EventHook = Callable[[Any, str], Any]
_json_decoder = msgspec.json.Decoder()


# Field names already found to be neither secret-named nor key-shaped: the same few dozen
# names (type, event_id, delta, ...) come back in every event.
_CLEAN_KEYS: set[str] = set()
_CLEAN_KEYS_MAX = 4096


def _suspicious(value: Any, forms: Sequence[tuple[str, str]] = (), shortest: int = 0) -> bool:
    """Whether a decoded event has a secret-named field, a key-shaped string or one of
    ``forms`` (``(probe, form)``: in a string at least ``shortest`` characters long that
    holds the form's probe character, its rarest in text) anywhere.

    A cheap, conservative test: everything it calls clean is left unchanged by the full
    text rules too, so a clean frame can skip them. It runs on every recorded message, so
    it is one loop over an explicit stack with the tests inlined: base64 audio holds
    neither ``-``, ``_`` nor ``"``, so its long strings are passed over at memchr speed;
    the IDs and types of an event are shorter than any form, so only its text is searched
    for them.
    """
    stack = [value]
    secret_fields = SECRET_FIELDS
    clean_keys = _CLEAN_KEYS
    trigger = _FIELD_TRIGGER.search
    if not forms:
        shortest = sys.maxsize
    while stack:
        v = stack.pop()
        t = type(v)
        if t is dict:
            for key, item in v.items():
                if len(key) >= shortest and any(p in key and f in key for p, f in forms):
                    return True
                if key not in clean_keys:
                    if key in secret_fields or (not key.islower() and key.lower() in secret_fields):
                        return True
                    if ("-" in key or "_" in key) and ("sk-" in key or "ek_" in key):
                        return True
                    if len(clean_keys) < _CLEAN_KEYS_MAX:
                        clean_keys.add(key)
                ti = type(item)
                if ti is str:
                    if ("-" in item or "_" in item) and ("sk-" in item or "ek_" in item):
                        return True
                    if '"' in item and trigger(item) is not None:
                        return True
                    if len(item) >= shortest and any(p in item and f in item for p, f in forms):
                        return True
                elif ti is dict or ti is list:
                    stack.append(item)
        elif t is list:
            for item in v:
                if type(item) is str:
                    if _key_like(item) or (len(item) >= shortest and any(p in item and f in item for p, f in forms)):
                        return True
                else:
                    stack.append(item)
        elif t is str and (_key_like(v) or (len(v) >= shortest and any(p in v and f in v for p, f in forms))):
            return True
    return False


# Characters from the rarest in text (prose, IDs) to the commonest: a form is looked for
# in a string only if the string holds the form's rarest character (one memchr).
_RARITY = "+/=_~.ZQXJKVBPYGFWMUCLDRHSNIOATE98765432zqxjkvbpygfwmucldrhsnioat10e"


def _rarest(form: str) -> str:
    """The character of ``form`` least likely in text."""
    return min(form, key=lambda c: _RARITY.find(c) if c in _RARITY else -1)


def _probe(secret: bytes) -> bytes | None:
    """A byte of ``secret`` that base64 audio and JSON punctuation never hold, if any."""
    for byte in secret:
        if not (chr(byte).isalnum() or byte in b'+/=_",:{}[] '):
            return bytes((byte,))
    return None


def encoded_forms(secret: str) -> set[str]:
    """The texts that spell ``secret`` in other encodings than its own: upper and lower case,
    hexadecimal (lower and upper case) of its UTF-8 bytes, and base64, standard and URL-safe.

    Base64 of a longer message changes with where the secret starts in it (its offset
    modulo 3): for each of the three alignments, the form is the run of characters that
    only the secret's bits decide (the characters shared with the bytes around it are left
    out), so it is found inside any blob that holds the secret.
    """
    raw = secret.encode()
    forms = {secret.upper(), secret.lower(), raw.hex(), raw.hex().upper(), *_base64_forms(raw)}
    forms.discard(secret)
    return forms


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 forms of ``raw`` (standard and URL-safe, at the three alignments)."""
    forms = set()
    for offset in range(3):
        start = -(-8 * offset // 6)  # the first character with no bit of the bytes before
        end = 8 * (offset + len(raw)) // 6  # past the last with no bit of the bytes after
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(b"\0" * offset + raw)[start:end].decode())
    return forms


# A character reference: ``&#115;``, ``&#x73;``, ``&amp;`` (the ``;`` may be left out).
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);?")
# A character reference cut short at the end of a text (a stream's next delta ends it).
_PARTIAL_ENTITY = re.compile(r"&(?:#[xX]?)?[0-9A-Za-z]*$")
# What separates the runs of text whose character references are decoded together.
_ENTITY_GAPS = re.compile(r"([\s\"'<>]+)")
# A JSON string escape, and one cut short at the end of a text.
_JSON_ESCAPE = re.compile(r'\\(?:u[0-9A-Fa-f]{4}|["\\/bfnrt])')
_PARTIAL_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{0,3})?$")


def _unescape_json(text: str) -> str:
    """``text`` with JSON string escapes decoded, until nothing changes (JSON quoted in
    JSON escapes its escapes)."""
    for _ in range(4):
        decoded = _JSON_ESCAPE.sub(_escape_sub, text)
        if decoded == text:
            break
        text = decoded
    return text


def _escape_sub(match: re.Match[str]) -> str:
    code = match.group()
    return chr(int(code[2:], 16)) if code[1] == "u" else _SIMPLE_ESCAPES[code[1]]


_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


# Escapes a delta may spell a credential behind: what a text holding one contains, the
# escape, one cut short at the end of a text, and how to decode them.
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_PARTIAL_PERCENT = re.compile(r"%[0-9A-Fa-f]?$")
_ESCAPINGS: tuple[tuple[str, re.Pattern[str], re.Pattern[str], Callable[[str], str]], ...] = (
    ("&", _ENTITY, _PARTIAL_ENTITY, html.unescape),
    ("\\", _JSON_ESCAPE, _PARTIAL_ESCAPE, _unescape_json),
    ("%", _PERCENT, _PARTIAL_PERCENT, lambda t: _unquote(t, False)),
)


def _key_like(text: str) -> bool:
    return (("-" in text or "_" in text) and ("sk-" in text or "ek_" in text)) or (
        '"' in text and _FIELD_TRIGGER.search(text) is not None
    )


def _shape_sub(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


def _cookie_values(value: str) -> list[str]:
    """Every value of a ``Cookie`` or ``Set-Cookie`` header (all pairs, all attributes)."""
    return [part.rpartition("=")[2].strip().strip('"') for part in re.split(r"[;,]", value)]


def _cookie_redacted(value: str) -> str:
    """``a=REDACTED; b=REDACTED``: every value goes (a bare one too), the names stay."""
    parts = []
    for part in re.split(r"([;,])", value):
        if part in (";", ","):
            parts.append(part)
        elif "=" in part:
            parts.append(part.partition("=")[0] + "=" + REDACTED)
        elif part.strip():
            parts.append((" " if part.startswith(" ") else "") + REDACTED)
        else:
            parts.append(part)
    return "".join(parts)


def credentials_in_handshake(
    headers: Mapping[str, str], subprotocols: Iterable[str] = ()
) -> list[str]:
    """The live credentials a client presented: bearer token, ``api-key``, gateway keys,
    cookie values, browser key."""
    found: list[str] = []
    for name, value in headers.items():
        lname = name.lower()
        if lname in _SCHEME_HEADERS:
            scheme, _, token = value.strip().partition(" ")
            found.append(token.strip() if token else scheme)
            if scheme.lower() == "basic" and token:  # user:password, base64
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    found.extend(base64.b64decode(token.strip(), validate=True).decode().split(":", 1))
        elif lname in _COOKIE_HEADERS:
            found.extend(_cookie_values(value))
        elif lname in SECRET_HEADERS and lname not in _ID_HEADERS:
            found.append(value.strip())
    for proto in subprotocols:
        if proto.startswith("openai-insecure-api-key."):
            found.append(proto[len("openai-insecure-api-key.") :])
    return [f for f in found if f]


def _user_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    """A pattern of the user's, compiled. One that matches the empty string is refused
    (:class:`ValueError`): it would put REDACTED between every two characters of every
    record, keys and structure included."""
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    if compiled.search("") is not None:
        raise ValueError(
            f"redaction pattern {compiled.pattern!r} matches the empty string, so it would put "
            f"{REDACTED} between every two characters: make it match at least one character"
        )
    return compiled


def _replace_nonempty(match: re.Match[str]) -> str:
    # A zero-width match (a pattern such as r"\b" or a lookahead) removes nothing.
    return REDACTED if match.end() > match.start() else ""


class Redactor:
    """Removes credentials from cassette records; one per recording.

    ``secrets`` are live credentials to hunt for everywhere (the recorder adds the ones
    each client presents, and the ``OPENAI_API_KEY`` it uses itself). ``headers``,
    ``query``, ``json_paths`` and ``patterns`` extend the built-in rules; ``event_hook`` is
    called as ``hook(event, direction)`` on every JSON event and returns the event to keep.
    A pattern that matches the empty string raises :class:`ValueError`.
    """

    def __init__(
        self,
        *,
        secrets: Iterable[str] = (),
        headers: Iterable[str] = (),
        query: Iterable[str] = (),
        json_paths: Iterable[str] = (),
        patterns: Iterable[str | re.Pattern[str]] = (),
        event_hook: EventHook | None = None,
    ) -> None:
        self.secret_headers = SECRET_HEADERS | {h.lower() for h in headers}
        self.secret_query = SECRET_QUERY | {q.lower() for q in query}
        self.json_paths = [tuple(p.split(".")) for p in json_paths]
        self.patterns = [_user_pattern(p) for p in patterns]
        self.event_hook = event_hook
        self.secrets: set[str] = set()
        # Every live credential and its encoded forms (:func:`encoded_forms`), as text.
        self._hunted: list[str] = []
        self._secret_bytes: list[bytes] = []
        # The forms a JSON message is searched for, by a byte each holds that base64 and
        # JSON punctuation never hold (the ``-`` of ``sk-...``): a message without that
        # byte cannot contain them, and a byte is found at memchr speed. (Forms with ``%``
        # or ``\`` are left out: a message holding either takes the full path.)
        # The forms no other form contains: enough to tell whether a credential is there.
        self._minimal: list[bytes] = []
        self._hunted_min: list[str] = []
        # For a text that ends with the beginning of a form (a credential still being
        # streamed): by that text's last MIN_SECRET_LENGTH characters, the forms and how
        # many of their first characters it would end with.
        self._heads: dict[str, list[tuple[str, int]]] = {}
        self._secret_re: re.Pattern[str] | None = None
        # Binary messages (_binary_windows): each hunted form's bytes (None if one is no
        # text bytes decode to: then a message is searched whole), and how many bytes
        # around a trigger a form with a byte that ends a run of text reaches.
        self._binary_forms: re.Pattern[bytes] | None = None
        self._binary_windowed = True
        self._binary_margin = 0
        # Forms without a probe byte, but for the base64 ones: searched in the bytes of a
        # message (its audio apart); the base64 ones are looked for decoded, as the
        # credential's bytes (but its first and last, which a form may leave out) in the
        # decoded audio: one pass over the audio instead of six.
        self._probed: list[tuple[bytes, list[bytes]]] = []
        self._unprobed: list[bytes] = []
        self._unprobed_plain: list[bytes] = []
        self._unprobed_text: list[tuple[str, str]] = []
        self._unprobed_numeric: list[bytes] = []
        self._unprobed_shortest = 0
        self._cores: list[bytes] = []
        # Audio: each live credential's bytes, their cores (without the first and last),
        # the heads of each (as _heads), and the last bytes of each stream's audio.
        self._secret_raw: list[bytes] = []
        self._longest_raw = 0
        self._byte_heads: dict[bytes, list[tuple[bytes, int]]] = {}
        self._audio_tails: dict[tuple[int, str], bytes] = {}
        # Whether a form holds whitespace: then no stream of deltas takes the quick join.
        self._gappy = False
        self._spans_runs = False  # whether a hunted form holds a byte that ends a run of text
        self._shortest = 0  # the length of the shortest form
        # Streams of text deltas, by connection and item: the last characters of those
        # that take the full join, and the last word (no whitespace) of those that take
        # the quick one, when it could begin a credential.
        self._streams: dict[tuple[Any, ...], str] = {}
        self._words: dict[tuple[Any, ...], str] = {}
        for secret in secrets:
            self.add_secret(secret)

    # -- live credentials -------------------------------------------------------------

    def add_secret(self, secret: str) -> None:
        """Hunt for this live credential in everything written from now on."""
        secret = secret.strip()
        if len(secret) < MIN_SECRET_LENGTH or secret in self.secrets or secret == REDACTED:
            return
        self.secrets.add(secret)
        hunted = {*self._hunted, secret, *encoded_forms(secret)}
        self._hunted = sorted(hunted, key=len, reverse=True)
        # Each form's bytes as they are, and as JSON escapes or percent-encoding write them.
        forms = {
            form
            for s in hunted
            for form in (
                s.encode(),
                msgspec.json.encode(s)[1:-1],
                urllib.parse.quote(s, safe="").encode(),
                urllib.parse.quote_plus(s, safe="").encode(),
            )
        }
        self._secret_bytes = sorted(forms, key=len, reverse=True)
        self._minimal = _minimal(self._secret_bytes)
        heads: dict[str, list[tuple[str, int]]] = {}
        for form in self._hunted:
            for m in range(len(form) - 1, MIN_SECRET_LENGTH - 1, -1):  # longest first
                heads.setdefault(form[m - MIN_SECRET_LENGTH : m], []).append((form, m))
        self._heads = heads
        self._hunted_min = _minimal(self._hunted)
        groups: dict[bytes | None, list[bytes]] = {}
        for spelt in self._minimal:
            if b"%" not in spelt and b"\\" not in spelt:
                groups.setdefault(_probe(spelt), []).append(spelt)
        self._secret_re = re.compile("|".join(re.escape(s) for s in self._hunted))
        # A form holding a byte that ends a run of text (whitespace, a quote, < or >).
        self._spans_runs = any(_RUN_GAP.search(f) for f in self._hunted)
        try:  # (as _binary decodes: a byte that is no UTF-8 is a lone surrogate)
            hunted_bytes = [f.encode("utf-8", "surrogateescape") for f in self._hunted_min]
            longest = max(len(f.encode("utf-8", "surrogateescape")) for f in self._hunted)
        except UnicodeEncodeError:  # a form no bytes decode to: the whole message is searched
            self._binary_windowed = False
        else:
            self._binary_forms = re.compile(b"|".join(map(re.escape, hunted_bytes)))
            gappy = any(_RUN_GAP.search(f) for f in self._hunted)
            self._binary_margin = longest if gappy else 0
        base64_forms = {f.encode() for s in self.secrets for f in _base64_forms(s.encode())}
        self._unprobed = groups.pop(None, [])
        self._probed = [(probe, spelt) for probe, spelt in groups.items() if probe is not None]
        self._unprobed_plain = [f for f in self._unprobed if f not in base64_forms]
        self._unprobed_text = [(_rarest(f.decode()), f.decode()) for f in self._unprobed]
        self._unprobed_numeric = [f for f in self._unprobed if re.fullmatch(rb"[0-9.eE+-]+", f)]
        self._unprobed_shortest = min((len(f) for _, f in self._unprobed_text), default=0)
        self._secret_raw = sorted({s.encode() for s in self.secrets}, key=len, reverse=True)
        self._cores = _minimal([s[1:-1] for s in self._secret_raw])
        self._longest_raw = max(map(len, self._secret_raw)) - 1
        byte_heads: dict[bytes, list[tuple[bytes, int]]] = {}
        for raw in self._secret_raw:
            for m in range(len(raw) - 1, MIN_SECRET_LENGTH - 1, -1):
                byte_heads.setdefault(raw[m - MIN_SECRET_LENGTH : m], []).append((raw, m))
        self._byte_heads = byte_heads
        self._gappy = any(re.search(r"\s", f) for f in self._hunted)
        self._shortest = min(map(len, self._hunted))

    def add_handshake(self, headers: Mapping[str, str], subprotocols: Iterable[str] = ()) -> None:
        """Learn the credentials a client presented in its handshake."""
        for secret in credentials_in_handshake(headers, subprotocols):
            self.add_secret(secret)

    def find_secret(self, data: bytes | bytearray, start: int = 0) -> bytes | None:
        """The first live credential (in any of its forms) present in ``data[start:]``, if any."""
        for secret in self._minimal:
            if data.find(secret, start) != -1:
                return secret
        return None

    def file_contains_secret(self, path: str | os.PathLike[str]) -> bool:
        """Whether any live credential's bytes (in any of its forms) appear in the file."""
        if not self._minimal:
            return False
        overlap = max(len(s) for s in self._minimal) - 1
        tail = b""
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                window = tail + chunk
                if self.find_secret(window) is not None:
                    return True
                tail = window[-overlap:] if overlap else b""
        return False

    # -- records ----------------------------------------------------------------------

    def record(self, record: Record) -> Record:
        """The record with every credential removed."""
        if isinstance(record, Frame):
            return self.frame(record)
        if isinstance(record, Open):
            return msgspec.structs.replace(
                record,
                path=self.text(record.path),
                query=self.query(record.query),
                subprotocol=self.subprotocol(record.subprotocol),
                headers=self.headers(record.headers),
            )
        if isinstance(record, Reject):
            return msgspec.structs.replace(
                record, headers=self.headers(record.headers), body=self.text(record.body)
            )
        if isinstance(record, Close):
            return msgspec.structs.replace(record, reason=self.text(record.reason))
        if isinstance(record, HttpExchange):
            return msgspec.structs.replace(
                record,
                request=self._http(record.request, "client"),
                response=self._http(record.response, "server"),
            )
        assert isinstance(record, Header)
        return record

    def _http(self, part: HttpRequest | HttpResponse, direction: Direction) -> Any:
        """An HTTP request or response with credentials removed, its body as a frame's."""
        changes: dict[str, Any] = {"headers": self.headers(part.headers)}
        if isinstance(part, HttpRequest):
            changes.update(path=self.text(part.path), query=self.query(part.query))
        if part.json is not msgspec.UNSET:
            body = self.frame(Frame(0, 0.0, direction, json=part.json))
            changes.update(json=body.json, text=body.text)
        elif part.text is not msgspec.UNSET:
            changes["text"] = self.text(part.text)
        return msgspec.structs.replace(part, **changes)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in headers.items():
            lname = name.lower()
            if lname in _SCHEME_HEADERS:
                scheme, sep, token = value.strip().partition(" ")
                # The scheme is kept only when it is one (a token): never part of the secret.
                shown = sep and token and re.fullmatch(r"[A-Za-z][A-Za-z0-9._~+/-]*", scheme)
                out[name] = f"{scheme} {REDACTED}" if shown else REDACTED
            elif lname in _COOKIE_HEADERS:
                # Every value goes, not only the last pair's: ``a=REDACTED; b=REDACTED``.
                out[name] = _cookie_redacted(value)
            elif lname in self.secret_headers:
                out[name] = REDACTED
            elif lname == "location":  # a redirect's target: its query may carry a key
                out[name] = self.target(value)
            elif lname == "sec-websocket-protocol":
                out[name] = ", ".join(self.subprotocol(p.strip()) or "" for p in value.split(","))
            else:
                out[name] = self.text(value)
        return out

    def subprotocol(self, proto: str | None) -> str | None:
        if proto is None:
            return None
        for prefix in SECRET_SUBPROTOCOL_PREFIXES:
            if proto.startswith(prefix):
                return prefix + REDACTED
        return self.text(proto)

    def query(self, query: Mapping[str, str]) -> dict[str, str]:
        return {
            k: REDACTED if k.lower() in self.secret_query else self.text(v) for k, v in query.items()
        }

    def text(self, text: str) -> str:
        """A string with live credentials, key-shaped strings and your patterns removed.

        A key written with percent-escapes (``sk%2Dproj...``, or after ``%20``) is found
        too: each run of URL-ish text holding one is decoded, and replaced by its redacted
        decoded form when that removed something.
        """
        if "%" in text:
            text = _PERCENT_RUN.sub(self._percent_run, text)
            if self._spans_runs and _PERCENT.search(text) is not None:
                text = self._percent_whole(text)
        if "&" in text:
            text = self._entities(text)
        if "\\" in text:
            text = self._escapes(text)
        if self._secret_re is not None and any(s in text for s in self._hunted_min):
            text = self._secret_re.sub(REDACTED, text)
        # The lookbehind that starts _KEY_SHAPES defeats the regex engine's literal search:
        # on a 6.5 KB audio delta the sub costs ~110 us, the containment tests ~1 us.
        if "sk-" in text or "ek_" in text:
            text = _KEY_SHAPES.sub(_shape_sub, text)
        for pattern in self.patterns:
            text = pattern.sub(_replace_nonempty, text)
        return text

    def _percent_run(self, match: re.Match[str]) -> str:
        run = match.group()
        # ``+`` is a space in a query string and itself elsewhere (a path, base64): both.
        for plus in (True, False):
            decoded = _unquote(run, plus)
            if decoded == run or ("%" in decoded and _PERCENT_RUN.fullmatch(decoded)):
                redacted = self._plain_text(decoded)
            else:
                redacted = self.text(decoded)
            if redacted != decoded:
                return redacted
        return run

    def _percent_whole(self, text: str) -> str:
        """The whole text percent-decoded, when that spells a live credential holding a
        space or a quote (``%6Fpen "sesame"``): the runs :meth:`_percent_run` decodes end at
        those, so no run holds it. Kept decoded when it does, as the runs are."""
        for plus in (True, False):
            redacted = self._whole_decoded(text, _unquote(text, plus))
            if redacted is not text:
                return redacted
        return text

    def _entities(self, text: str) -> str:
        """Each run of text holding HTML character references, decoded and redacted when
        that finds something (then kept decoded, as :meth:`_percent_run` does); the whole
        text so, if what it spells still holds a credential (one with a quote or a space
        in it, which the runs split)."""
        if _ENTITY.search(text) is None:
            return text
        return self._decoded_runs(text, html.unescape)

    def _escapes(self, text: str) -> str:
        """:meth:`_entities` for JSON string escapes written out as text (``\\u0073``:
        JSON quoted inside a header, a close reason, a body or a delta)."""
        if _JSON_ESCAPE.search(text) is None:
            return text
        return self._decoded_runs(text, _unescape_json)

    def _decoded_runs(self, text: str, decode: Callable[[str], str]) -> str:
        parts = _ENTITY_GAPS.split(text)
        for i in range(0, len(parts), 2):  # the runs; the gaps between them are odd
            run = parts[i]
            decoded = decode(run)
            if decoded != run:
                redacted = self.text(decoded)
                if redacted != decoded:
                    parts[i] = redacted
        text = "".join(parts)
        return self._whole_decoded(text, decode(text))

    def _whole_decoded(self, text: str, whole: str) -> str:
        """``whole`` (``text`` decoded) redacted, if that removed something; else ``text``
        itself. Once, without decoding again (each run went through every rule): a
        whole-text text() recursed through every level of decoding, ~25 s on a 15 MiB
        binary frame, whose random bytes always decode to something else."""
        if whole != text:
            redacted = self._plain_text(whole)
            if redacted != whole:
                return redacted
        return text

    def _binary(self, data: bytes) -> bytes:
        """A binary message with credentials removed: each live credential's bytes in any
        form, then read as text (UTF-8, any other byte kept as it is), every text rule,
        encodings included.

        Only the windows of it that :meth:`text` could change go through it: 15 MiB of
        random bytes are ~800,000 runs of "text", and decoding each for HTML references
        and JSON escapes took seconds. A few scans (:meth:`_binary_windows`) find them.
        """
        original = data
        if any(form in data for form in self._minimal):
            for secret in self._secret_bytes:
                data = data.replace(secret, REDACTED.encode())
        if not self._binary_windowed or self.patterns or len(data) < _WINDOWED:
            # (A pattern of yours may match anywhere.)
            text = data.decode("utf-8", "surrogateescape")
            redacted = self.text(text)
            return data if redacted == text else redacted.encode("utf-8", _BINARY_ERRORS)
        triggers = list(_BINARY_TRIGGERS)
        if data is not original and self._binary_forms is not None:
            # (Where REDACTED went in, what is around it could spell a form again.)
            triggers.append(self._binary_forms)
        pieces: list[bytes] = []
        pos = 0
        for start, end in self._binary_windows(data, triggers):
            text = data[start:end].decode("utf-8", "surrogateescape")
            redacted = self.text(text)
            if redacted != text:
                pieces += (data[pos:start], redacted.encode("utf-8", _BINARY_ERRORS))
                pos = end
        if not pieces:
            return data
        pieces.append(data[pos:])
        return b"".join(pieces)

    def _binary_windows(self, data: bytes, triggers: Sequence[re.Pattern[bytes]]) -> list[tuple[int, int]]:
        """The spans of ``data`` outside which :meth:`text` changes nothing, in order.

        What :meth:`text` changes starts at a trigger (:data:`_BINARY_TRIGGERS`: an
        escape, ``sk-``/``ek_``; a hunted form as it is). Every escape is one, so what a
        decoded text spells runs from trigger to trigger; decoding turns no byte between
        runs (whitespace, quotes, ``<``, ``>``) into another, so what holds none of those
        lies within one run. A window is each run holding a trigger; when a hunted form
        holds such a byte, the runs up to its length in bytes either side too. Windows
        start after such a byte (or at 0) and end at one (or at the end), so each decodes
        as it would in the whole, and are merged when close (fewer calls).
        """
        windows: list[tuple[int, int]] = []
        margin = self._binary_margin
        size = len(data)
        start = end = 0
        last_gap = _LAST_GAP.match
        gap = _GAP_BYTE.search
        # (One scan per pattern: each starts with a literal, which the regex engine skips
        # to; an alternation of them tries every position, ~4x slower.)
        spans = sorted(m.span() for pattern in triggers for m in pattern.finditer(data))
        for a, b in spans:
            if windows and b + margin <= end:  # (what it reaches is in the last window)
                continue
            found = gap(data, min(b + margin, size))
            e = found.start() if found is not None else size
            lo = a - margin
            if windows and lo <= end:  # it reaches into the last window: that grows
                end = max(end, e)
                windows[-1] = (start, end)
                continue
            found = last_gap(data, end, lo) if lo > 0 else None
            s = found.end() if found is not None else 0
            if windows and s - end < _WINDOW_JOIN:
                windows[-1] = (start, e)
            else:
                windows.append((s, e))
                start = s
            end = e
        return windows

    def _plain_text(self, text: str) -> str:
        if self._secret_re is not None:
            text = self._secret_re.sub(REDACTED, text)
        return _KEY_SHAPES.sub(_shape_sub, text)

    def target(self, target: str) -> str:
        """A request target (path and query) fit for a log line.

        Query values named like keys are replaced; live credentials and key-shaped strings
        are removed from every path segment, query name and value, however they were
        percent-encoded (the result is decoded, then encoded once).
        """
        path, sep, query = target.partition("?")
        shown = "/".join(
            urllib.parse.quote(self.text(_unquote(segment)), safe=_SAFE) for segment in path.split("/")
        )
        if not sep:
            return shown
        pairs = []
        for part in query.split("&"):
            name, eq, value = part.partition("=")
            name, value = self.text(_unquote(name)), _unquote(value)
            value = REDACTED if name.lower() in self.secret_query else self.text(value)
            pairs.append(urllib.parse.quote(name, safe=_SAFE) + eq + urllib.parse.quote(value, safe=_SAFE))
        return f"{shown}?{'&'.join(pairs)}"

    def frame(self, frame: Frame) -> Frame:
        """The frame with credentials removed; unchanged bytes when it holds none."""
        return self._frame(frame, None, join=True)

    def _frame(
        self, frame: Frame, event: Any, *, join: bool, changed: bool = False, audio: bool = True
    ) -> Frame:
        """:meth:`frame`, given the decoded event if there is one (and whether to join its
        deltas, or whether they were joined and changed it already; whether to look for
        credentials in its audio bytes, or whether that was done)."""
        if frame.binary is not msgspec.UNSET:
            data = self._binary(frame.binary)
            return frame if data == frame.binary else msgspec.structs.replace(frame, binary=data)
        if frame.text is not msgspec.UNSET:
            text = self._deep_text(frame.text)
            return frame if text == frame.text else msgspec.structs.replace(frame, text=text)
        assert frame.json is not msgspec.UNSET
        if join and event is None and (quick := self._quick_json(frame)) is not None:
            return quick
        data = bytes(frame.json)
        try:
            if event is None:
                event = _json_decoder.decode(data)
            changed = (join and self._join_delta(frame.conn, event)) or changed
            if audio and self._cores:
                changed = self._audio_event((frame.conn, frame.dir), event) or changed
            # Every string is redacted decoded, so escapes (``\n``, ``\u0073k-``) hide nothing.
            if type(event) is str:  # a frame that is one JSON string
                redacted = self.text(event)
                changed = changed or redacted != event
                event = redacted
            else:
                changed = _map_strings(event, self.text) or changed
            if self.json_paths or self.event_hook is not None or _suspicious_fields(event):
                scrubbed = self.event(event, frame.dir, conn=frame.conn)
                changed = changed or scrubbed != event
                event = scrubbed
            if not changed:
                return frame
            text = msgspec.json.encode(event).decode()
        except RecursionError:
            # Nested deeper than can be walked: redacted as text, and kept as text.
            return msgspec.structs.replace(
                frame, json=msgspec.UNSET, text=self._deep_text(data.decode())
            )
        raw = json_raw(text)
        if raw is None:  # a hook returned something that is not JSON-encodable text
            return msgspec.structs.replace(frame, json=msgspec.UNSET, text=text)
        return msgspec.structs.replace(frame, json=raw)

    def _deep_text(self, text: str) -> str:
        """Text redacted without decoding it: credentials, key shapes, secret fields' values."""
        text = self.text(text)
        if '"' in text and _FIELD_TRIGGER.search(text):
            text = _ESCAPED_FIELD_VALUE.sub(_field_value_sub, text)
        return text

    def frame_from_message(
        self, conn: int, t: float, direction: Direction, data: bytes, text: bool
    ) -> tuple[Frame, bool]:
        """The redacted record of a message as it passes, decoding its JSON once.

        ``data`` is the message as it came off the wire (UTF-8 for a text message).
        ``Frame.from_message`` followed by :meth:`frame` decodes a JSON message twice (to
        check it is JSON, then to look for secrets); here one decode does both. Returns the
        frame and whether it was proved free of live credentials (so the writer need not
        search its encoded line again). Raises ``UnicodeDecodeError`` for a text message
        that is not UTF-8 (a protocol error: websockets closes such a connection with 1007).
        """
        if not text:
            return self.frame(Frame(conn, round(t, 6), direction, binary=data)), False
        # The quick path: single-line JSON and no user rules (JSON spanning lines is
        # re-encoded, user rules need the full path, text that is not JSON is kept as text).
        custom = self._custom_rules
        if not custom and len(data) >= _AUDIO_SIZED:
            audio = self._audio_message((conn, direction), data)
            if audio is not None:
                clean, redacted = audio
                frame = Frame(conn, round(t, 6), direction, json=msgspec.Raw(redacted))
                if not clean:
                    return self._frame(frame, None, join=False), False
                return frame, redacted is data
        if not custom and b"\n" not in data and b"\r" not in data:
            try:
                event = _json_decoder.decode(data)
            except (msgspec.DecodeError, ValueError, RecursionError):
                pass
            else:
                if data.count(b"[") + data.count(b"{") > _MAX_JSON_DEPTH and _deep(event):
                    # Kept as text: a reader deeper in its own stack than this decode was
                    # could not read it back (msgspec counts nesting against the stack).
                    return Frame(conn, round(t, 6), direction, text=self._deep_text(data.decode())), False
                frame = Frame(conn, round(t, 6), direction, json=msgspec.Raw(data))
                clean = self._clean(data, event)
                joined = self._join_delta(conn, event, clean)
                if clean and not joined:
                    if not self._cores or not self._audio_event((conn, direction), event):
                        return frame, True
                    return self._frame(frame, event, join=False, changed=True, audio=False), False
                return self._frame(frame, event, join=False, changed=joined), False
        return self.frame(Frame.from_message(conn, t, direction, data.decode())), False

    # -- keys streamed across deltas --------------------------------------------------

    def _join_delta(self, conn: int, event: Any, clean: bool = False) -> bool:
        """Redact the part of a key that a stream of ``*.delta`` events spells across events.

        Each text delta of one item (``response.output_text.delta``, transcripts, tool
        arguments...) is joined to the tail of the ones before it. Where the joined text
        holds a live credential, a key shape or a secret field's value, or ends with the
        first :data:`MIN_SECRET_LENGTH` or more characters of a live credential, the part
        of it in this delta is replaced (the earlier deltas are already written): joining
        the recorded deltas never gives the key back, and no more than its first 7
        characters are kept. Returns whether the delta changed.

        ``clean``: the whole message was found to hold nothing to redact
        (:meth:`_clean`). Then, unless the stream had a quote or an escape, only a word
        that runs across the two deltas can spell something new: the stream keeps only
        its last word (none when the delta ends with whitespace), and the join looks at
        that word and the delta's first one (the quick join, a few hundred nanoseconds).
        """
        if type(event) is not dict:
            return False
        kind = event.get("type")
        if type(kind) is not str or not kind.endswith(".delta") or kind.endswith("audio.delta"):
            if type(kind) is str and kind.endswith(".done") and (self._streams or self._words):
                key = _stream_key(conn, kind[:-5], event)
                self._streams.pop(key, None)
                self._words.pop(key, None)
            return False
        delta = event.get("delta")
        if type(delta) is not str or not delta:
            return False
        key = _stream_key(conn, kind[:-6], event)
        streams = self._streams
        word = self._words.pop(key, "")
        if clean and key not in streams and '"' not in delta and not self._gappy:
            head = "" if delta[0].isspace() else delta.split(None, 1)[0]
            whole = len(head) == len(delta)  # a delta with no whitespace
            across = word + head if word and head else ""
            if not across or not self._spelt(across):
                last = "" if delta[-1].isspace() else across or delta if whole else delta.rsplit(None, 1)[-1]
                if not last:
                    return False
                if len(last) > _STREAM_TAIL:
                    last = last[-_STREAM_TAIL:]
                heads = self._heads.get(last[-MIN_SECRET_LENGTH:]) if self._heads else None
                if heads is None or not any(last.endswith(form[:m]) for form, m in heads):
                    words = self._words
                    words[key] = last
                    if len(words) > _STREAMS_MAX:  # the oldest stream goes first
                        del words[next(iter(words))]
                    return False
        tail = streams.pop(key, "") or word
        joined = tail + delta
        start = len(tail)
        marks = self._secret_spans(joined)
        self._streams[key] = joined[-_STREAM_TAIL:]
        while len(self._streams) > _STREAMS_MAX:  # the oldest stream goes first
            del self._streams[next(iter(self._streams))]
        cut = sorted((max(a, start) - start, b - start) for a, b in marks if b > start)
        if not cut:
            return False
        out, pos = [], 0
        for a, b in cut:
            a = max(a, pos)
            if b <= a:
                continue
            out.append(delta[pos:a])
            out.append(REDACTED)
            pos = b
        out.append(delta[pos:])
        event["delta"] = "".join(out)
        return True

    def _spelt(self, text: str) -> bool:
        """Whether a text without escapes, quotes or whitespace holds a live credential or
        a key shape (the quick join's test of a word across two deltas)."""
        if "sk-" in text or "ek_" in text:
            return True
        return len(text) >= self._shortest and any(form in text for form in self._hunted_min)

    def _secret_spans(self, text: str) -> list[tuple[int, int]]:
        """Where ``text`` holds a credential, a key, a secret field's value, or a credential's start."""
        spans: list[tuple[int, int]] = []
        for secret in self._hunted_min:
            if secret in text:
                for form in self._hunted:  # the forms that hold it: mark each one found
                    start = text.find(form) if secret in form else -1
                    while start != -1:
                        spans.append((start, start + len(form)))
                        start = text.find(form, start + 1)
        # A credential still being spelt: the text ends with the first m characters of a
        # form, MIN_SECRET_LENGTH <= m < its length.
        for form, m in self._heads.get(text[-MIN_SECRET_LENGTH:], ()):
            if text.endswith(form[:m]):
                spans.append((len(text) - m, len(text)))
        if "sk-" in text or "ek_" in text:
            spans.extend(m.span() for m in _KEY_SHAPES.finditer(text))
        if '"' in text:
            spans.extend(m.span(2) for m in _NESTED_FIELD_VALUE.finditer(text))
        for guard, escape, partial, decode in _ESCAPINGS:
            if guard in text and escape.search(text) is not None:
                spans.extend(self._escaped_spans(text, partial, decode))
        return spans

    def _escaped_spans(
        self, text: str, partial: re.Pattern[str], decode: Callable[[str], str]
    ) -> list[tuple[int, int]]:
        """Behind escapes (character references, JSON escapes, percent-escapes): a run
        whose decoded text holds (or, at the end, starts spelling) a credential is marked
        whole; all of the text if only the whole spells one (a credential with a quote or
        a space in it, which the runs split). An escape the delta cut short is no
        character yet."""
        spans: list[tuple[int, int]] = []
        at = 0
        for i, part in enumerate(_ENTITY_GAPS.split(text)):
            if i % 2 == 0:
                decoded = decode(partial.sub("", part))
                if decoded != part and self._secret_spans(decoded):
                    spans.append((at, at + len(part)))
            at += len(part)
        if not spans:
            decoded = decode(partial.sub("", text))
            if decoded != text and self._secret_spans(decoded):
                spans.append((0, len(text)))
        return spans

    @property
    def _custom_rules(self) -> bool:
        """Whether user rules are set, which only the full path applies."""
        return bool(self.patterns or self.json_paths or self.event_hook is not None)

    def _clean(self, data: bytes, event: Any) -> bool:
        """Whether a JSON message (its bytes and its decoded event) needs no redaction.

        Conservative: no live credential in the bytes in any of its forms, no escape that
        could hide one (``\\u``, ``%``, ``&``), and no secret-named field or key-shaped
        string anywhere in the event. A message that passes is written as it is.
        """
        if b"%" in data or b"&" in data or (self.secrets and b"\\" in data):
            # A key may hide behind a percent-escape or a character reference (or a live
            # one behind \u).
            return False
        for probe, forms in self._probed:
            if probe in data:
                for form in forms:
                    if form in data:
                        return False
        for form in self._unprobed_numeric:  # (a JSON number is no string)
            if form in data:
                return False
        return not _suspicious(event, self._unprobed_text, self._unprobed_shortest)

    def _audio_message(self, stream: tuple[int, str], data: bytes) -> tuple[bool, bytes] | None:
        """An audio event redacted without decoding its audio as JSON: whether it needs
        nothing more (else the full path takes it), and its bytes, with a credential's
        bytes in its audio zeroed (the audio keeps its length; ``data`` itself when they
        were not there). ``None`` when the message is no such event (its audio is not plain canonical base64, is not
        where it can be cut out, or it is a text delta, which is joined to its stream).

        Decoding 6.5 KB of audio as a JSON string costs more than the rest of the
        message; searching it for six base64 forms of each credential, ~1 us apiece.
        Instead the audio is cut out of the message (the rest decoded alone), decoded as
        base64 once, and searched there for the credential's bytes (but its first and
        last, which a form may leave out): that finds every base64 form that sits where
        base64 decoding puts it. (A form elsewhere decodes to other bytes; the final
        check of the file still finds it.) The forms that are not base64 are searched
        in the audio's text.
        """
        # (Looked for where an event's small fields are first: a search of a whole
        # message for a name it lacks costs as much as the rest of this.)
        at = data.find(b'"delta"', 0, _HEAD)
        if at < 0:
            at = data.find(b'"audio"', 0, _HEAD)
            if at < 0:
                at = data.find(b'"delta"')
                if at < 0:
                    at = data.find(b'"audio"')
        found = _AUDIO_VALUE.match(data, at + 7) if at >= 0 else None
        if found is None:
            return None
        start = found.end()
        end = data.find(b'"', start)
        if end - start < _AUDIO_SIZED // 2:
            return None
        audio = memoryview(data)[start:end]  # (not copied)
        try:
            decoded = pybase64.b64decode(audio, validate=True)  # (a \\ escape is no base64)
        except (binascii.Error, ValueError):
            return None
        rest = data[:start] + data[end:]
        if b"\n" in rest or b"\r" in rest:  # JSON over lines is written on one
            return None
        try:
            event = _json_decoder.decode(rest)
        except (msgspec.DecodeError, RecursionError):
            return None
        kind = event.get("type") if type(event) is dict else None
        if type(kind) is str and kind.endswith(".delta") and not kind.endswith("audio.delta"):
            return None
        if not self._clean(rest, event):
            return False, data
        for form in self._unprobed_plain:
            if data.find(form, start, end) >= 0:
                return False, data
        if self._cores:
            zeroed = self._audio_bytes(stream, decoded)
            if zeroed is not None:
                return True, data[:start] + pybase64.b64encode(zeroed) + data[end:]
        return True, data

    def _audio_event(self, stream: tuple[int, str], event: Any) -> bool:
        """Zero live credentials' bytes in the audio of a decoded audio event (an
        ``*audio.delta`` or an ``*.append``), in place; whether it changed. Audio that is
        not canonical base64 is left to the text rules."""
        if type(event) is not dict:
            return False
        kind = event.get("type")
        if type(kind) is not str:
            return False
        name = "delta" if kind.endswith("audio.delta") else "audio" if kind.endswith(".append") else None
        audio = event.get(name) if name is not None else None
        if type(audio) is not str:
            return False
        try:
            decoded = pybase64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            return False
        zeroed = self._audio_bytes(stream, decoded)
        if zeroed is None:
            return False
        event[name] = pybase64.b64encode(zeroed).decode()
        return True

    def _audio_bytes(self, stream: tuple[int, str], decoded: bytes) -> bytearray | None:
        """The decoded audio of a message with every live credential's bytes zeroed, or
        ``None`` if it holds none: inside it (but the first and last byte, which a base64
        form may leave out), across it and the audio before it in its stream, and at its
        end, where the first :data:`MIN_SECRET_LENGTH` or more bytes of one may go on in
        the next message (as for text deltas, at most 7 bytes of one remain)."""
        tails = self._audio_tails
        tail = tails.pop(stream, b"")
        tails[stream] = decoded[-self._longest_raw :]
        if len(tails) > _STREAMS_MAX:
            del tails[next(iter(tails))]
        out: bytearray | None = None
        for secret in self._secret_raw:
            core = secret[1:-1]
            i = decoded.find(core)
            while i >= 0:
                out = out if out is not None else bytearray(decoded)
                out[i : i + len(core)] = bytes(len(core))
                i = decoded.find(core, i + 1)
            if tail:
                before = tail[-(len(secret) - 1) :]
                joined = before + decoded[: len(secret) - 1]
                j = joined.find(secret)
                while j >= 0:
                    end = j + len(secret) - len(before)
                    out = out if out is not None else bytearray(decoded)
                    out[:end] = bytes(end)
                    j = joined.find(secret, j + 1)
        end_bytes = decoded[-MIN_SECRET_LENGTH:]
        if len(end_bytes) < MIN_SECRET_LENGTH:
            end_bytes = (tail + decoded)[-MIN_SECRET_LENGTH:]
        heads = self._byte_heads.get(end_bytes)
        if heads:
            whole = tail + decoded
            for secret, m in heads:
                if whole.endswith(secret[:m]):
                    cut = min(m, len(decoded))
                    out = out if out is not None else bytearray(decoded)
                    out[len(out) - cut :] = bytes(cut)
        return out

    def _quick_json(self, frame: Frame) -> Frame | None:
        """The redacted frame, if a JSON frame is decided without the regexes.

        The regexes scan every character of a 6.5 KB audio delta at ~2 ns each (tens of
        microseconds, most of the recorder's cost per frame); decoding with msgspec and
        walking the event is several times cheaper. Custom rules take the full path.
        """
        if self._custom_rules or frame.json is msgspec.UNSET:
            return None
        data = bytes(frame.json)
        if len(data) < _AUDIO_SIZED:  # on small events the regexes cost no more than the walk
            return None
        audio = self._audio_message((frame.conn, frame.dir), data)
        if audio is not None:
            clean, redacted = audio
            if not clean:
                return None
            return frame if redacted is data else msgspec.structs.replace(frame, json=msgspec.Raw(redacted))
        try:
            event = _json_decoder.decode(data)
        except msgspec.DecodeError:  # pragma: no cover - Frame.from_message checked it
            return None
        return frame if self._clean(data, event) else None

    def event(self, event: Any, direction: str = "server", *, conn: int | None = None) -> Any:
        """A decoded event with secret fields, your JSON paths and your hook applied.

        Raises :class:`~rtreplay.errors.EventHookError` (naming the hook, the event and
        ``conn``) if the hook raises or returns something that is not a JSON event.
        """
        event = _scrub_fields(event)
        for path in self.json_paths:
            event = _redact_path(event, path)
        hook = self.event_hook
        if hook is not None:
            before = event
            try:
                event = hook(event, direction)
            except Exception as exc:  # whatever the user's code raises: reported, with the event
                raise self._hook_error(before, direction, conn, f"raised {type(exc).__name__}: {exc}", exc) from None
            if not isinstance(event, (dict, list)):
                raise self._hook_error(
                    before, direction, conn, f"returned {type(event).__name__}, not the event (a dict)", None
                )
            try:
                msgspec.json.encode(event)
            except (TypeError, msgspec.EncodeError) as exc:
                raise self._hook_error(before, direction, conn, f"returned an event that is not JSON ({exc})", exc) from None
        return event

    def _hook_error(
        self, event: Any, direction: str, conn: int | None, problem: str, exc: BaseException | None
    ) -> EventHookError:
        hook = self.event_hook
        name = getattr(hook, "__qualname__", None) or type(hook).__name__
        module = getattr(hook, "__module__", None)
        where = None
        if exc is not None and exc.__traceback__ is not None:
            last = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{last.filename}:{last.lineno}"
        kind = event.get("type") if isinstance(event, dict) else None
        event_id = event.get("event_id") if isinstance(event, dict) else None
        return EventHookError(
            f"{module}.{name}" if module and module != "builtins" else name,
            self.text(problem[:500]),  # (the hook's message may quote the event: redacted)
            conn=conn,
            direction=direction,
            event_type=self.text(kind) if isinstance(kind, str) else None,
            event_id=self.text(event_id) if isinstance(event_id, str) else None,
            where=where,
            error=exc,
        )


def _minimal(forms: list[Any]) -> list[Any]:
    """``forms`` (longest first) without those that hold another: finding the shorter one
    is enough."""
    kept: list[Any] = []
    for form in reversed(forms):  # shortest first
        if not any(k in form for k in kept):
            kept.append(form)
    return kept


# JSON nested deeper than this is recorded as text (Realtime events nest < 10).
_MAX_JSON_DEPTH = 256


def _deep(event: Any) -> bool:
    from ._index import deeper_than  # (here: _index imports the codec, which imports this)

    return deeper_than(event, _MAX_JSON_DEPTH)


def _binary_errors(error: UnicodeError) -> tuple[bytes, int]:
    """Encoding a binary message's redacted text: a byte that was no UTF-8 (a lone
    surrogate U+DC80-U+DCFF, as ``surrogateescape`` decoded it) is that byte again; any
    other lone surrogate (what a decoded ``\\ud83d`` JSON escape leaves) its three bytes."""
    if not isinstance(error, UnicodeEncodeError):  # pragma: no cover - registered for encoding
        raise error
    out = bytearray()
    for char in error.object[error.start : error.end]:
        code = ord(char)
        out += bytes((code - 0xDC00,)) if 0xDC80 <= code <= 0xDCFF else char.encode("utf-8", "surrogatepass")
    return bytes(out), error.end


_BINARY_ERRORS = "rtreplay.binary"
codecs.register_error(_BINARY_ERRORS, _binary_errors)

# A binary message this long is redacted window by window (Redactor._binary).
_WINDOWED = 4096
# Windows closer than this are redacted as one.
_WINDOW_JOIN = 64
# An ASCII byte that ends a run of text (all of _ENTITY_GAPS that is one byte of UTF-8
# but \x1c-\x1f, which only cut runs shorter).
_GAP_BYTE = re.compile(rb"[\t\n\x0b\x0c\r \"'<>]")
_RUN_GAP = re.compile(r"[\s\"'<>]")
# What ends the text before a run's last gap byte (a match up to it, from the run's start).
_LAST_GAP = re.compile(rb"[\s\S]*[\t\n\x0b\x0c\r \"'<>]")


def _entity_starts() -> bytes:
    """After ``&``, the first two letters of a named character reference: html.unescape
    decodes a name, or its longest prefix, found in html.entities.html5, where every
    name has two letters or more (630 pairs, of 2,704: a quarter of ``&`` + letters)."""
    import html.entities

    seconds: dict[str, set[str]] = {}
    for name in html.entities.html5:
        seconds.setdefault(name[0], set()).add(name[1])
    return b"|".join(
        f"{first}[{''.join(sorted(rest))}]".encode() for first, rest in sorted(seconds.items())
    )


# Where Redactor.text() may change something: a percent-escape, the start of an HTML
# character reference, a JSON escape, a key's prefix (and each hunted form's bytes).
_BINARY_TRIGGERS = tuple(
    re.compile(p)
    for p in (
        rb"%[0-9A-Fa-f]{2}",
        rb"&(?:#[0-9]|#[xX][0-9A-Fa-f]|" + _entity_starts() + rb")",
        rb'\\(?:u[0-9A-Fa-f]{4}|["\\/bfnrt])',
        rb"sk-",
        rb"ek_",
    )
)

# How far into a message its audio field's name is looked for first.
_HEAD = 512
# What comes between an audio field's name and its value.
_AUDIO_VALUE = re.compile(rb'\s*:\s*"')
# A message this large is audio-sized: its audio is searched decoded (_audio_message).
_AUDIO_SIZED = 2048
# What a stream of deltas keeps of its text, and how many streams are followed at once.
_STREAM_TAIL = 256
_STREAMS_MAX = 1024


def _stream_key(conn: int, family: str, event: dict[str, Any]) -> tuple[Any, ...]:
    """A stream of deltas: its connection, its event type without ``.delta``/``.done``,
    and the IDs and indexes of its item."""
    get = event.get
    return (
        conn,
        family,
        get("response_id"),
        get("item_id"),
        get("output_index"),
        get("content_index"),
        get("call_id"),
    )


def _map_strings(value: Any, change: Callable[[str], str]) -> bool:
    """Apply ``change`` to every string of a decoded event (keys too), in place."""
    changed = False
    stack = [value] if type(value) is dict or type(value) is list else []
    while stack:
        v = stack.pop()
        if type(v) is dict:
            for key in list(v):
                item = v[key]
                if type(item) is str:
                    new = change(item)
                    if new != item:
                        v[key] = item = new
                        changed = True
                elif type(item) is dict or type(item) is list:
                    stack.append(item)
                new_key = change(key)
                if new_key != key:
                    del v[key]
                    v[new_key] = item
                    changed = True
        else:
            for i, item in enumerate(v):
                if type(item) is str:
                    new = change(item)
                    if new != item:
                        v[i] = new
                        changed = True
                elif type(item) is dict or type(item) is list:
                    stack.append(item)
    return changed


def _suspicious_fields(value: Any) -> bool:
    """Whether a decoded event has a secret-named field, or a string holding one, anywhere."""
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            for key, item in v.items():
                if type(key) is str and key.lower() in SECRET_FIELDS:
                    return True
                stack.append(item)
        elif type(v) is list:
            stack.extend(v)
        elif type(v) is str and '"' in v and _FIELD_TRIGGER.search(v):
            return True
    return False


def _field_value_sub(match: re.Match[str]) -> str:
    base = match.start()
    start, end = match.span("value")
    text = match.group()
    return text[: start - base] + REDACTED + text[end - base :]


# Characters a URL may show as they are (RFC 3986 unreserved, and a few sub-delims).
_SAFE = "-._~!$'()*,;:@"


def _unquote(text: str, plus: bool = True) -> str:
    """``text`` percent-decoded (``+`` as a space, unless not ``plus``) until nothing
    changes: double encoding too."""
    unquote = urllib.parse.unquote_plus if plus else urllib.parse.unquote
    for _ in range(4):
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    return text


def _scrub_fields(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in SECRET_FIELDS:
                out[key] = _redact_all(item)
            else:
                out[key] = _scrub_fields(item)
        return out
    if isinstance(value, list):
        return [_scrub_fields(v) for v in value]
    if isinstance(value, str) and '"' in value and _FIELD_TRIGGER.search(value):
        return _scrub_nested(value)
    return value


def _scrub_nested(text: str) -> str:
    """A string holding JSON, with its secret fields redacted (partial JSON by pattern)."""
    try:
        inner = _json_decoder.decode(text)
    except msgspec.DecodeError:
        inner = None
    if isinstance(inner, (dict, list)):
        scrubbed = _scrub_fields(inner)
        return text if scrubbed == inner else msgspec.json.encode(scrubbed).decode()
    return _NESTED_FIELD_VALUE.sub(lambda m: m.group(1) + REDACTED, text)


def _redact_all(value: Any) -> Any:
    """Every string inside ``value`` replaced (a client_secret object keeps its shape)."""
    if isinstance(value, str):
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact_all(v) if k != "expires_at" else v for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_all(v) for v in value]
    return value


def _redact_path(value: Any, path: tuple[str, ...]) -> Any:
    if not path:
        return _redact_all(value)
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {
            k: _redact_path(v, rest) if head in ("*", k) else v for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _redact_path(v, rest) if head == "*" or head == str(i) else v
            for i, v in enumerate(value)
        ]
    return value
