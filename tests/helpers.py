"""Shared test helpers (import them as ``from tests.helpers import ...``): the shared model cache, free
loopback ports, and the whole app served on one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The assembled default GGUF (1.1 GB) is shared between test runs instead of being rebuilt per test.
MODELS_CACHE = Path(os.environ.get("STUDYBOT_TEST_MODELS_CACHE", Path.home() / ".cache" / "studybot" / "models"))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served_app(service: Any) -> Iterator[dict[str, Any]]:
    """The whole app around ``service`` on a free 127.0.0.1 port: yields {service, url, app, client}."""
    from gradio_client import Client

    from ui.app import launch

    app, url = launch(service, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    try:
        yield {"service": service, "url": url, "app": app,
               "client": Client(url, verbose=False, analytics_enabled=False)}
    finally:
        app.close()
