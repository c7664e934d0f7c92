"""Helpers to execute the examples in docs/ so the docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"

_FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)


def code_blocks(page: str, language: str) -> list[str]:
    """The fenced code blocks of ``docs/<page>`` written in ``language``, in order."""
    text = (DOCS / page).read_text()
    return [body for lang, body in _FENCE.findall(text) if lang == language]
