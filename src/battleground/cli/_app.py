"""Top-level commands: ``serve``, ``ui`` and ``demo``."""

from __future__ import annotations

import errno
import socket
from typing import Any

import typer

from battleground.cli._common import load_settings


def serve_command(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to listen on."),
    model_name: str = typer.Option("churn", help="Registered MLflow model to serve (alias 'champion')."),
    require_token: bool = typer.Option(
        False, "--require-token", help="Every route but /health needs 'Authorization: Bearer $BATTLEGROUND_API_TOKEN'."
    ),
    docs: bool = typer.Option(True, "--docs/--no-docs", help="Serve the interactive API docs at /docs."),
) -> None:
    """Serve the champion model over HTTP (FastAPI)."""
    import uvicorn

    from battleground.cli._common import user_errors
    from battleground.model.serve import create_app

    settings = load_settings()
    with user_errors():  # no champion, or one the gate did not promote: one line, exit 1
        app = create_app(settings, model_name=model_name, require_token=require_token, docs=docs, hosts=(host,))
    uvicorn.Server(uvicorn_config(app, host=host, port=port, log_level="warning")).run()


def ui_command(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8080, help="Port to listen on."),
) -> None:
    """Open the battleground dashboard (experiments, leaderboard, bandit battles)."""
    import dataclasses

    from battleground.cli._common import user_errors

    settings = load_settings()
    with user_errors():
        from battleground.web import create_app

        # the host it binds is trusted as well
        web_app = create_app(dataclasses.replace(settings, allowed_hosts=(*settings.allowed_hosts, host)))
    _serve(web_app, _listen(host, port), "dashboard")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one clean line saying why not (port in use, ...)."""
    from battleground.cli._common import fail

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # what uvicorn does: restarts rebind
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is in use; stop what runs there or pick another with --port")
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --host or --port")
    return sock


def uvicorn_config(asgi_app: Any, **options: Any) -> Any:
    """uvicorn's ``Config`` for our servers: its fast stack, the uvloop event loop and the httptools
    HTTP/1.1 parser (dependencies: about 30 % less server CPU per ``GET /health`` than asyncio + h11),
    each falling back to the pure-Python one where it cannot be imported (uvloop has no Windows build)."""
    import uvicorn

    loop, http = fast_stack()
    return uvicorn.Config(asgi_app, loop=loop, http=http, **options)


def fast_stack() -> tuple[str, str]:
    """The ``(loop, http)`` uvicorn settings :func:`uvicorn_config` serves with."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        loop = "asyncio"
    else:
        loop = "uvloop"
    try:
        import httptools  # noqa: F401
    except ImportError:
        http = "h11"
    else:
        http = "httptools"
    return loop, http


def _serve(asgi_app: Any, sock: socket.socket, what: str) -> None:
    """Run ``asgi_app`` on ``sock`` and print its URL once it accepts connections."""
    import uvicorn

    from battleground.cli._common import console

    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                console.print(f"{what} at {url}  (Ctrl+C to stop)", soft_wrap=True, highlight=False)

    Server(uvicorn_config(asgi_app, log_level="warning")).run(sockets=[sock])


def demo_command(
    fast: bool = typer.Option(False, help="Smaller data everywhere (used by the tests)."),
) -> None:
    """Run the whole battleground on embedded defaults, with progress bars."""
    from battleground.demo import run_demo

    run_demo(load_settings(), fast=fast)
