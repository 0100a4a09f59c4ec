"""Our servers (serve-decisions, ui, serve) run on uvicorn's fast stack, uvloop + httptools, and fall
back to asyncio + h11 where those cannot be imported (issue 15 §2)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from battleground.cli._app import fast_stack, uvicorn_config

SRC = str(Path(__file__).resolve().parents[2] / "src")

# A server started the way the commands start theirs (_listen + _serve); its one route answers with
# the class of the event loop it runs on. argv: port, then "hide" to make uvloop and httptools unimportable.
_SERVER = """
import asyncio, sys
if sys.argv[2] == "hide":
    sys.modules["uvloop"] = sys.modules["httptools"] = None
from battleground.cli._app import _listen, _serve

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    loop = type(asyncio.get_running_loop())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"{loop.__module__}.{loop.__name__}".encode()})

_serve(app, _listen("127.0.0.1", int(sys.argv[1])), "stack test")
"""


async def _app(scope: object, receive: object, send: object) -> None:  # never called: configs only
    raise AssertionError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fast_stack_is_chosen_when_installed() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert fast_stack() == ("uvloop", "httptools")
    config = uvicorn_config(_app, port=1, log_level="warning")
    config.load()
    assert (config.loop, config.http, config.port) == ("uvloop", "httptools", 1)
    assert config.http_protocol_class is HttpToolsProtocol


def test_falls_back_to_asyncio_and_h11_when_not_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert fast_stack() == ("asyncio", "httptools")
    monkeypatch.setitem(sys.modules, "httptools", None)
    assert fast_stack() == ("asyncio", "h11")
    config = uvicorn_config(_app, log_level="warning")
    config.load()
    assert config.http_protocol_class is H11Protocol
    assert config.get_loop_factory() is not None  # asyncio's loop, not uvloop's


@pytest.mark.parametrize(("hide", "loop"), [("show", "uvloop.Loop"), ("hide", "asyncio.")])
def test_served_on_the_chosen_loop(tmp_path: Path, hide: str, loop: str) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), hide], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": SRC, "HOME": str(tmp_path)})
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    try:
        reader.join(timeout=120)
        assert first and f"stack test at http://127.0.0.1:{port}" in first[0], (first, proc.poll())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.read().decode().startswith(loop)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
