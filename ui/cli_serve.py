"""`studybot serve`: start the web UI (Gradio) on 127.0.0.1:7860 by default.

Order: the address and login are checked first (a refused start costs nothing), then ``--prepare`` (model,
index), then the llama.cpp runtime check (cached per build and model), then the app starts; once it accepts
connections, one line on stdout says so with the URL to open ("studybot is ready: open http://..."), and the
question bank's worker starts (``quiz.bank_background``): it fills the bank while the app is idle, yields the
model to every student request (:mod:`rag.quiz.gate`), plans again after an ingest, and stops with the app."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from rag.errors import StudybotError
from ui.commands import EXIT_OK, command

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # bind-all address -> where to reach it here
# How long serve waits for the web app to accept connections before saying it did not (naming the port). Set by
# hand, not measured: the app does not wait for the model (its warm-up runs in a thread beside it), so a minute is
# room for a slow machine; past it another program most likely holds the port.
READY_TIMEOUT_S = 60.0
log = logging.getLogger(__name__)


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


def browse_url(host: str, port: int) -> str:
    """The URL to open on this machine for a server bound to ``host``:``port``."""
    host = host.strip().strip("[]")
    host = WILDCARD.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def ready_line(host: str, port: int, auth: tuple[str, str] | None) -> str:
    """The one line ``serve`` prints once the app accepts connections: the URL, the login to use (never the
    password), and how to stop it."""
    line = f"studybot is ready: open {browse_url(host, port)}"
    if host.strip().strip("[]") in WILDCARD:
        line += f" (from another machine: this machine's address, port {port})"
    if auth is not None:
        line += f"; sign in as {auth[0]} with the password given to --auth or STUDYBOT_AUTH"
    return line + "; Ctrl+C stops it"


def wait_accepting(host: str, port: int, timeout: float = READY_TIMEOUT_S) -> bool:
    """True once a TCP connection to the server succeeds (False after ``timeout`` seconds)."""
    target = WILDCARD.get(host.strip().strip("[]"), host.strip().strip("[]"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((target, port), timeout=2):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def stdout_line_writer() -> Callable[[str], None]:
    """Write a line to this process's stdout as it is *now*. llama.cpp's model load (the warm-up thread, while
    the app starts) points file descriptors 1 and 2 at /dev/null for its duration, so a line printed then is
    lost: that is how Gradio's "Running on local URL" never reached a `make run` terminal. The line goes to a
    duplicate of the descriptor taken before the warm-up starts."""
    try:
        sys.stdout.flush()
        fd = os.dup(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # stdout is not a file (an in-process caller capturing it)
        return lambda line: print(line, flush=True)
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"

    def write(line: str) -> None:
        os.write(fd, (line + "\n").encode(encoding, errors="replace"))

    return write


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
    say = stdout_line_writer()  # before the warm-up can silence stdout
    import threading

    # Load the model, the embedder and the index while the UI starts, so the first question waits for none of them.
    threading.Thread(target=svc.warm_up, kwargs={"search": True}, name="studybot-warm-up", daemon=True).start()
    serve_app(svc, host, port, auth, say)
    return EXIT_OK


def serve_app(svc: Any, host: str, port: int, auth: tuple[str, str] | None, say: Callable[[str], None],
              block: Callable[[Any], None] | None = None) -> None:
    """Start the app, say it is ready once it accepts connections, start the question bank's worker, and
    serve until ``block(app)`` returns (default: until Ctrl+C); the worker is stopped on the way out."""
    from ui.app import launch

    # Gradio's own "Running on local URL" line is left out (it also suggests share=True, which this app never
    # uses, and it is lost while the model loads): this line says it once the server accepts connections.
    app, _ = launch(svc, host=host, port=port, auth=auth, block=False, quiet=True)
    bound = int(app.server_port or port)
    if not wait_accepting(host, bound):
        app.close()
        raise StudybotError(f"the web app did not accept connections on {browse_url(host, bound)} within "
                            f"{READY_TIMEOUT_S:g} s; check that nothing else uses port {bound}")
    say(ready_line(host, bound, auth))
    try:
        # Only now, with the app up: it waits for `quiz.bank_idle_s` without a student request before each
        # model call (None when `quiz.bank_background` is off).
        if svc.start_bank_worker() is not None:
            log.info("question bank: filling in the background while the app is idle")
        (block or _block)(app)
    finally:
        svc.stop_bank_worker()
        app.close()


def _block(app: Any) -> None:
    app.block_thread()  # returns on Ctrl+C, the server closed
