"""The public surface is what it claims to be."""

from __future__ import annotations

import importlib

import rtreplay


def test_everything_in_all_exists_once() -> None:
    for name in rtreplay.__all__:
        assert hasattr(rtreplay, name), name
    assert len(set(rtreplay.__all__)) == len(rtreplay.__all__)


def test_all_public_names_are_exported() -> None:
    public = {n for n in vars(rtreplay) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(rtreplay, n)).__name__ == "module"}
    assert public - modules <= set(rtreplay.__all__), public - modules - set(rtreplay.__all__)


def test_every_error_descends_from_rtreplay_error() -> None:
    errors = importlib.import_module("rtreplay.errors")
    for name in errors.__all__:
        obj = getattr(errors, name)
        if name.endswith("Warning"):
            assert issubclass(obj, UserWarning)
        else:
            assert issubclass(obj, rtreplay.RtreplayError), name
            assert name in errors.__doc__, f"{name} is missing from the tree in the docstring"


def test_py_typed_ships() -> None:
    from pathlib import Path

    assert (Path(rtreplay.__file__).parent / "py.typed").exists()
