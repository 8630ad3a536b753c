"""`studybot serve`: start the web UI (Gradio) on 127.0.0.1:7860 by default."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from rag.errors import StudybotError
from ui.cli import EXIT_OK, command

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise StudybotError("--auth must look like user:password (both parts non-empty)")
    return user, password


def check_bind(host: str, auth: tuple[str, str] | None, no_auth: bool) -> None:
    """Refuse to serve on a non-loopback address without a login unless --no-auth says so on purpose."""
    if auth is not None and no_auth:
        raise StudybotError("use either --auth user:password or --no-auth, not both")
    if not is_loopback(host) and auth is None and not no_auth:
        raise StudybotError(
            f"refusing to serve on {host} without a login: anyone who can reach it could use the app; "
            "add --auth user:password (or --no-auth if that is what you want)"
        )


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("serve", help="start the web UI (chat, library) and the /ask API")
    s.add_argument("--host", default=None, help="address to bind (default 127.0.0.1 = this machine only)")
    s.add_argument("--port", type=int, default=None, help="port (default 7860)")
    s.add_argument("--auth", default=None, metavar="USER:PASSWORD", help="require this login")
    s.add_argument("--no-auth", action="store_true", help="allow a non-loopback address without a login")


@command("serve")
def cmd_serve(args: argparse.Namespace, svc: Any) -> int:
    host = args.host or svc.settings.host
    port = args.port or svc.settings.port
    auth = parse_auth(args.auth)
    check_bind(host, auth, args.no_auth)
    import threading

    from ui.app import launch

    # Load the model while the UI starts, so the first question does not wait for it.
    threading.Thread(target=svc.warm_up, name="studybot-warm-up", daemon=True).start()
    launch(svc, host=host, port=port, auth=auth, block=True)
    return EXIT_OK
