"""Scripted and random faults: what a flaky API or the proxy in front of it does.

A :class:`Fault` is a value; :class:`FaultPlan` decides which fault, if any,
hits each request: first the FIFO queue of the request's route, then the
queue of ``"*"``, then the seeded random rates.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs
from aiohttp import web

FaultKind = Literal[
    "server_error",
    "rate_limited",
    "reset_before",
    "reset_after",
    "stall",
    "slow",
    "garbage",
    "code_in_200",
    "http_error",
    "redirect",
    "malformed",
]
RouteName = Literal["submit", "detail", "status", "balance", "files", "*"]

ROUTES: frozenset[str] = frozenset({"submit", "detail", "status", "balance", "files", "*"})
# The order in which random rates are laid out on [0, 1): fixed, so that a
# seed reproduces the same faults whatever order the caller's dict has.
RANDOM_KINDS: tuple[str, ...] = (
    "server_error",
    "rate_limited",
    "reset_before",
    "reset_after",
    "stall",
    "garbage",
    "code_in_200",
)

_HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)
_MALFORMED = b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}"
_Headers = tuple[tuple[str, str], ...]


@attrs.frozen(kw_only=True)
class Fault:
    """One misbehaviour applied to one request. Build it with the class methods.

    Attributes:
        kind: What happens; see the class methods.
        status: HTTP status of an answering fault.
        body: Raw body of an answering fault.
        content_type: Content-Type of that body, or None for none.
        headers: Extra response headers.
        seconds: How long a stall lasts.
        after_accept: For a stall, process the request first (a submit is
            accepted) and stall instead of answering.
    """

    kind: FaultKind
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: _Headers = ()
    seconds: float = 0.0
    after_accept: bool = False

    @classmethod
    def server_error(
        cls, status: int = 500, *, body: Literal["html", "json", "empty"] = "json"
    ) -> Fault:
        """A 5xx with a JSON envelope, a proxy's HTML page, or an empty body."""
        if body == "html":
            return cls(kind="server_error", status=status, body=_HTML_502, content_type="text/html")
        if body == "empty":
            return cls(kind="server_error", status=status)
        payload = {"code": status, "message": "Internal server error"}
        return cls(kind="server_error", status=status, **_json(payload))

    @classmethod
    def rate_limited(cls, retry_after: str | None = None) -> Fault:
        """A 429, with a ``Retry-After`` header when ``retry_after`` is given."""
        headers: _Headers = () if retry_after is None else (("Retry-After", retry_after),)
        payload = {"code": 429, "message": "Too many requests"}
        return cls(kind="rate_limited", status=429, headers=headers, **_json(payload))

    @classmethod
    def reset_before(cls) -> Fault:
        """Reset the connection before processing: nothing happens server-side."""
        return cls(kind="reset_before")

    @classmethod
    def reset_after(cls) -> Fault:
        """Process the request (a submit is accepted), then reset instead of answering.

        On the files route, half of the body is sent before the reset.
        """
        return cls(kind="reset_after")

    @classmethod
    def stall(cls, seconds: float = 30.0, *, after_accept: bool = False) -> Fault:
        """Say nothing for ``seconds`` (or until the fake closes), then close the connection."""
        return cls(kind="stall", seconds=seconds, after_accept=after_accept)

    @classmethod
    def slow(cls, seconds: float = 1.0) -> Fault:
        """Process the request at once (a submit is accepted), answer it ``seconds`` later."""
        return cls(kind="slow", seconds=seconds)

    @classmethod
    def garbage(cls, variant: Literal["html", "truncated"] = "html") -> Fault:
        """HTTP 200 labelled ``application/json`` whose body is not JSON."""
        body = b"<html>oops" if variant == "html" else b'{"code": 200, "data": {"task_id": "'
        return cls(kind="garbage", body=body, content_type="application/json")

    @classmethod
    def code_in_200(cls, code: int = 500, message: str = "internal") -> Fault:
        """HTTP 200 whose envelope carries an error: ``{"code": code, "msg": message}``."""
        return cls(kind="code_in_200", **_json({"code": code, "msg": message}))

    @classmethod
    def http_error(
        cls,
        status: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Any answer: ``body`` is sent as is when bytes, as JSON otherwise (None: empty)."""
        extra: _Headers = tuple((headers or {}).items())
        if isinstance(body, bytes):
            return cls(kind="http_error", status=status, body=body, headers=extra)
        if body is None:
            return cls(kind="http_error", status=status, headers=extra)
        return cls(kind="http_error", status=status, headers=extra, **_json(body))

    @classmethod
    def redirect(cls, status: int = 302, *, location: str) -> Fault:
        """A 3xx pointing at ``location`` (absolute, or a path on the fake); empty body.

        Raises:
            ValueError: ``status`` is not a 3xx.
        """
        if not 300 <= status < 400:
            raise ValueError(f"a redirect status is 3xx, got {status}")
        return cls(kind="redirect", status=status, headers=(("Location", location),))

    @classmethod
    def malformed(cls, raw: bytes = _MALFORMED) -> Fault:
        """Write ``raw`` on the socket instead of an HTTP answer, then close it.

        The request is not processed (a submit is not accepted). The default is
        a status line and a ``Content-Length: nope`` header no parser accepts.
        """
        return cls(kind="malformed", body=raw)

    @property
    def answers(self) -> bool:
        """Whether the fault is an answer of its own (not a broken connection, not the real
        answer late)."""
        return self.kind not in {"reset_before", "reset_after", "stall", "slow", "malformed"}

    def response(self) -> web.Response:
        """The HTTP answer of an answering fault."""
        response = web.Response(status=self.status, body=self.body, headers=dict(self.headers))
        if self.content_type is not None:
            response.content_type = self.content_type
        return response


def _json(payload: Any) -> dict[str, Any]:
    return {"body": json.dumps(payload).encode(), "content_type": "application/json"}


class FaultPlan:
    """Chooses the fault for each request: queued faults first, then random rates."""

    def __init__(self, seed: int | None = None) -> None:
        self._queues: dict[str, deque[Fault]] = {}
        self._rng = random.Random(seed)
        self._rates: dict[str, float] = {}
        self._routes: frozenset[str] = frozenset()
        self._stall_seconds = 30.0
        self._retry_after = "0"

    def inject(self, fault: Fault, route: str = "*", times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests to ``route``."""
        _check_route(route)
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        self._queues.setdefault(route, deque()).extend([fault] * times)

    def set_rates(
        self,
        rates: Mapping[str, float],
        routes: Iterable[str],
        stall_seconds: float,
        retry_after: str,
    ) -> None:
        """Replace the random rates (probability per request of each fault kind)."""
        unknown = set(rates) - set(RANDOM_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {RANDOM_KINDS}")
        if any(rate < 0 for rate in rates.values()) or sum(rates.values()) > 1:
            raise ValueError("rates must be non-negative and sum to at most 1")
        chosen = frozenset(routes)
        for route in chosen:
            _check_route(route)
        self._rates = dict(rates)
        self._routes = chosen
        self._stall_seconds = stall_seconds
        self._retry_after = retry_after

    def clear(self) -> None:
        """Forget queued faults and random rates."""
        self._queues.clear()
        self._rates = {}

    def pending(self, route: str = "*") -> int:
        """How many queued faults are still waiting for ``route``."""
        return len(self._queues.get(route, ()))

    def next_for(self, route: str | None) -> Fault | None:
        """The fault for one request to ``route`` (None for an unknown path)."""
        for name in ("*",) if route is None else (route, "*"):
            queue = self._queues.get(name)
            if queue:
                return queue.popleft()
        if route is None or not self._rates:
            return None
        if route not in self._routes and "*" not in self._routes:
            return None
        return self._draw()

    def _draw(self) -> Fault | None:
        point = self._rng.random()
        for kind in RANDOM_KINDS:
            point -= self._rates.get(kind, 0.0)
            if point < 0:
                return self._random_fault(kind)
        return None

    def _random_fault(self, kind: str) -> Fault:
        coin = self._rng.random() < 0.5
        if kind == "server_error":
            return (
                Fault.server_error(500, body="json")
                if coin
                else Fault.server_error(502, body="html")
            )
        if kind == "rate_limited":
            return Fault.rate_limited(self._retry_after if coin else None)
        if kind == "stall":
            return Fault.stall(self._stall_seconds)
        if kind == "garbage":
            return Fault.garbage("html" if coin else "truncated")
        if kind == "code_in_200":
            return Fault.code_in_200()
        return Fault.reset_before() if kind == "reset_before" else Fault.reset_after()


def _check_route(route: str) -> None:
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; known: {sorted(ROUTES)}")
