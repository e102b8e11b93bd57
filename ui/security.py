"""Who the web UI answers. It starts processes as the person who ran ``ffc ui``, so it answers only them:

- a password (Gradio's own login) whenever it listens beyond the loopback interface;
- only requests addressed to it by a name it serves. A web page elsewhere can make a browser on this
  machine send requests to 127.0.0.1; with DNS rebinding they even look same-origin to the browser, but
  they carry the attacker's name in ``Host``. Cross-site requests (CSRF) carry a foreign ``Origin``.
  Both are refused with 403 before Gradio sees them.

No Gradio or Starlette import here: ``ffc ui`` refuses a bad setup at once, before loading Gradio.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost",)
WILDCARDS = ("0.0.0.0", "::", "")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _ip(name: str) -> Optional[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    ip = _ip(host)
    return host.lower() in LOOPBACK_NAMES or bool(ip and ip.is_loopback)


def parse_auth(value: Optional[str]) -> Optional[tuple[str, str]]:
    """``USER:PASS`` (the password may contain colons) -> (user, password); empty -> None."""
    if not value:
        return None
    user, colon, password = value.partition(":")
    if not (colon and user.strip() and password):
        raise ValueError("--auth / FFC_UI_AUTH: give USER:PASS, a user name and a password separated by a colon")
    return user.strip(), password


def _name_and_port(netloc: str, default_port: Optional[int]) -> tuple[str, Optional[int]]:
    """('host', port) of ``host[:port]`` ([v6]:port too); ValueError when it is not one."""
    if not netloc or any(c in netloc for c in "/?#@ "):
        raise ValueError(netloc)
    parts = urlsplit("//" + netloc)
    name = (parts.hostname or "").rstrip(".")
    if not name:
        raise ValueError(netloc)
    return name, parts.port if parts.port is not None else default_port  # .port raises on a bad port


@dataclass(frozen=True)
class Access:
    host: str  # the address it listens on
    port: int
    auth: Optional[tuple[str, str]] = None
    allowed_hosts: tuple[tuple[str, Optional[int]], ...] = ()  # (name, port or None for any port)

    @classmethod
    def check(cls, host: str, port: int, auth: Optional[str] = None, allowed_hosts=()) -> "Access":
        """The access rules of ``ffc ui`` with these options, or ValueError saying what to change."""
        credentials = parse_auth(auth)
        if credentials is None and not is_loopback(host):
            raise ValueError(
                f"--host {host} lets other machines reach the UI, which starts processes as you: set a password "
                "with FFC_UI_AUTH=USER:PASS (or --auth USER:PASS), or listen on 127.0.0.1"
            )
        allowed = []
        for entry in allowed_hosts or ():
            try:
                allowed.append(_name_and_port(entry.strip().lower(), None))
            except ValueError:
                raise ValueError(f"--allowed-host {entry!r}: give a host name, optionally with :PORT") from None
        return cls(host, port, credentials, tuple(allowed))

    def allows(self, netloc: str, default_port: Optional[int]) -> bool:
        """Whether ``netloc`` (a Host header, or the host of an Origin) names this server."""
        try:
            name, port = _name_and_port(netloc.lower(), default_port)
        except ValueError:
            return False
        if any(name == allowed and allowed_port in (None, port) for allowed, allowed_port in self.allowed_hosts):
            return True
        if port != self.port:
            return False
        # An address written as digits cannot be rebound by DNS; names can, so only ours are accepted.
        return bool(_ip(name)) or name in LOOPBACK_NAMES or name == self.host.lower().rstrip(".")

    def refusal(self, host: Optional[str], origin: Optional[str]) -> Optional[str]:
        """Why a request with these headers is refused, or None."""
        if not host or not self.allows(host, 80):
            return (
                f"Host {host!r} is not an address this UI serves (DNS rebinding?); "
                "open it at its address, or start it with --allowed-host NAME"
            )
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in DEFAULT_PORTS or not self.allows(parts.netloc, DEFAULT_PORTS[parts.scheme]):
                return f"requests from the page {origin!r} are refused: only this UI's own pages may call it"
        return None


class HostGuard:
    """ASGI middleware: 403 for requests ``Access.refusal`` refuses (HTTP and WebSocket)."""

    def __init__(self, app, access: Access):
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {}
        for key, value in scope.get("headers") or ():
            headers.setdefault(key.lower(), value.decode("latin-1"))
        reason = self.access.refusal(headers.get(b"host"), headers.get(b"origin"))
        if reason is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # closing before accepting makes the server answer 403
            return await send({"type": "websocket.close", "code": 1008})
        body = reason.encode("utf-8")
        await send({
            "type": "http.response.start", "status": 403,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})
