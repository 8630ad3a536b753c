"""Whose study state a web request works on: the ``--auth`` user name when the app has a login, else the one
local user (the CLI's default ``--user``)."""

from __future__ import annotations

from typing import Any

from rag.study.store import LOCAL_USER


def user_of(request: Any) -> str:
    """The signed-in user name of a ``gr.Request`` (``LOCAL_USER`` without a login or a request)."""
    name = getattr(request, "username", None) if request is not None else None
    return str(name) if name else LOCAL_USER
