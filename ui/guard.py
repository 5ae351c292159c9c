"""Who may reach a server: the rules ``serve`` (REST) and ``app`` (Gradio) share.

- ``require_token_beyond_loopback``: a server that anyone else can reach (a non-loopback host, or
  a public share link) must have a token; without one it refuses to start.
- ``TokenGate``: every request needs the token — ``Authorization: Bearer TOKEN``, or, for a
  browser, the cookie it gets by opening the page once as ``/?token=TOKEN``. Used by the Gradio
  app, whose page, API and MCP endpoints all change the knowledge base.
- ``LocalOnly``: a loopback server without a token answers only requests addressed to a loopback
  name (``Host``) and, when a browser sends an ``Origin``, only pages served from one. A web page
  elsewhere that rebinds its DNS name to 127.0.0.1 (DNS rebinding) is refused with 403.

All three are plain ASGI wrappers, so they cover every route, websockets and streams included.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from knowledge_base.errors import InputError

COOKIE = "llm4tag_token"


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_token_beyond_loopback(host: str, token: str | None, share: bool = False, flag: str = "--token") -> None:
    if token:
        return
    if share:
        raise InputError(
            f"refusing a public share link without a token: anyone with the link could change the knowledge base. "
            f"Give {flag} TOKEN (or set LLM4TAG_API_TOKEN)"
        )
    if not is_loopback(host):
        raise InputError(
            f"refusing to listen on {host} without a token: anyone who can reach it could change the knowledge base. "
            f"Give {flag} TOKEN (or set LLM4TAG_API_TOKEN), or listen on 127.0.0.1"
        )


def _headers(scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers") or []}


async def _refuse(scope, receive, send, status: int, detail: str, extra: list | None = None, body: dict | None = None) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps(body if body is not None else {"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


class TokenGate:
    """Every request needs the token (bearer header, the cookie, or ``?token=`` which sets the cookie)."""

    def __init__(self, app, token: str):
        if not token:
            raise ValueError("TokenGate needs a token")
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        auth = headers.get(b"authorization", b"").decode("latin-1")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # a malformed cookie header is no credential
            cookies = SimpleCookie()
        cookie = cookies[COOKIE].value if COOKIE in cookies else None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if _same(bearer, self.token) or _same(cookie, self.token):
            return await self.app(scope, receive, send)
        if _same(query, self.token):
            if scope["type"] == "websocket":
                return await self.app(scope, receive, send)

            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    message = {
                        **message,
                        "headers": [
                            *message.get("headers", []),
                            (b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()),
                        ],
                    }
                await send(message)

            return await self.app(scope, receive, send_with_cookie)
        await _refuse(
            scope,
            receive,
            send,
            401,
            "this server needs its token: send 'Authorization: Bearer <token>', or open the page once as /?token=<token>",
            [(b"www-authenticate", b"Bearer")],
        )


class LocalOnly:
    """Answer only requests addressed to a loopback name, from no page or a loopback page (DNS rebinding)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        host = headers.get(b"host", b"").decode("latin-1")
        hostname = urlsplit(f"//{host}").hostname or ""
        if not is_loopback(hostname):
            return await _refuse(
                scope,
                receive,
                send,
                403,
                f"this server listens on loopback without a token and answers only requests to localhost or 127.0.0.1, "
                f"not to {host[:100]!r} (a web page rebinding its name to this machine); use http://127.0.0.1:PORT, "
                "or start the server with --token",
            )
        origin = headers.get(b"origin")
        if origin is not None:
            origin_host = urlsplit(origin.decode("latin-1")).hostname or ""
            if not is_loopback(origin_host):
                return await _refuse(
                    scope,
                    receive,
                    send,
                    403,
                    f"requests from web pages at {origin.decode('latin-1')[:100]!r} are refused: this server "
                    "listens on loopback without a token; start it with --token to serve other origins",
                )
        return await self.app(scope, receive, send)


class ValidJsonText:
    """A JSON request body that is not UTF-8, holds NaN or Infinity (which Python's reader takes and
    JSON does not have), or a string that is not valid Unicode — a lone surrogate, which JSON can
    spell (``"\\udc80"``) and UTF-8 cannot carry — is refused with 400 and what to send instead,
    before the app behind it reads it (Gradio answered such calls with a bare 500 or dropped the
    connection; ``bench/hostile_corpus.py``); a JSON-RPC request (the MCP endpoint) gets the error
    in JSON-RPC's shape. Other bodies pass unchanged."""

    def __init__(self, app, max_bytes: int = 64 * 2**20):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope.get("method") not in ("POST", "PUT", "PATCH")
            or not _headers(scope).get(b"content-type", b"").lower().startswith(b"application/json")
        ):
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:  # too large to check here: the app's own limits answer it
                return await self.app(
                    scope, _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": more}], receive), send
                )
        body = b"".join(chunks)
        problem, rpc_id = _unusable_text(body)
        if problem and rpc_id is not False:  # a JSON-RPC request (the MCP endpoint): its error in JSON-RPC's shape
            error = {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": -32600, "message": problem}}
            return await _refuse(scope, receive, send, 400, problem, body=error)
        if problem:
            return await _refuse(scope, receive, send, 400, problem)
        return await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _unusable_text(body: bytes) -> tuple[str | None, object]:
    """What makes a JSON body unusable (None: nothing), and its JSON-RPC request id (False: not JSON-RPC)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the request body is not UTF-8 (byte {exc.start}); send JSON encoded as UTF-8", False
    constants = []
    try:
        data = json.loads(text, parse_constant=lambda name: constants.append(name))
    except (ValueError, RecursionError):
        return None, False  # not JSON: the app says so itself
    rpc_id = data.get("id") if isinstance(data, dict) and "jsonrpc" in data else False
    if constants:
        return (
            f"the request holds {constants[0]}, which is not JSON (nor a number any argument takes); send a finite number or null"
        ), rpc_id
    return _lone_surrogate(data), rpc_id


def _lone_surrogate(data) -> str | None:
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return (
                    f"the request holds a lone surrogate (\\u{ord(value[exc.start]):04x}) in a string, which is not text; "
                    "send valid Unicode (a character outside the BMP as its surrogate pair, or as UTF-8)"
                )
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def _replay(messages: list, then):
    """A ``receive`` that gives ``messages`` first, then waits on ``then`` (the client's own): a
    streamed answer (the MCP endpoint's) listens there for the client going away, and must not be
    told it went away when the body was merely read."""

    async def receive():
        if messages:
            return messages.pop(0)
        return await then()

    return receive
