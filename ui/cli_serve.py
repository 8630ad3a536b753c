"""`studybot serve`: start the web UI (Gradio) on 127.0.0.1:7860 by default.

Order: the address and login are checked first (a refused start costs nothing), then ``--prepare`` (model,
index), then the llama.cpp runtime check (cached per build and model), then the app starts."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from rag.errors import StudybotError
from ui.commands import EXIT_OK, command

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
    """Refuse to serve on a non-loopback address without a login unless --no-auth (or STUDYBOT_ALLOW_NO_AUTH)
    says so on purpose."""
    if auth is not None and no_auth:
        raise StudybotError("use either --auth user:password or --no-auth, not both")
    if not is_loopback(host) and auth is None and not no_auth:
        raise StudybotError(
            f"refusing to serve on {host} without a login: anyone who can reach it could use the app; "
            "set STUDYBOT_AUTH=user:password or pass --auth user:password (or --no-auth / "
            "STUDYBOT_ALLOW_NO_AUTH=true if that is what you want)"
        )


def login(auth_arg: str | None, no_auth_arg: bool, settings: Any) -> tuple[tuple[str, str] | None, bool]:
    """(login, no-auth on purpose) from the flags, else STUDYBOT_AUTH / STUDYBOT_ALLOW_NO_AUTH (the Docker
    image's way): a flag wins over the environment."""
    auth = parse_auth(auth_arg if auth_arg is not None else settings.ui.auth)
    return auth, no_auth_arg or (bool(settings.ui.allow_no_auth) and auth is None)


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("serve", help="start the web UI (chat, library) and the /ask API")
    s.add_argument("--host", default=None, help="address to bind (default 127.0.0.1 = this machine only)")
    s.add_argument("--port", type=int, default=None, help="port (default 7860)")
    s.add_argument("--auth", default=None, metavar="USER:PASSWORD", help="require this login (default: "
                   "STUDYBOT_AUTH)")
    s.add_argument("--no-auth", action="store_true", help="allow a non-loopback address without a login")
    s.add_argument("--prepare", action="store_true", help="first assemble + verify the model and bring the index in "
                   "line with the library, as `doctor --fix` (what `make run` and the Docker image do)")


@command("serve")
def cmd_serve(args: argparse.Namespace, svc: Any) -> int:
    s = svc.settings
    host = args.host or s.ui.host
    port = args.port or s.ui.port
    auth, no_auth = login(args.auth, args.no_auth, s)
    check_bind(host, auth, no_auth)
    if args.prepare:
        from ui.cli_library import prepare

        prepare(svc)
    svc.check_runtime()  # once per llama.cpp build and model: a crashing runtime stops here with its fix
    import threading

    from ui.app import launch

    # Load the model while the UI starts, so the first question does not wait for it.
    threading.Thread(target=svc.warm_up, name="studybot-warm-up", daemon=True).start()
    launch(svc, host=host, port=port, auth=auth, block=True)
    return EXIT_OK
