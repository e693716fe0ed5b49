"""FakeVidgo: a stateful stand-in for the Vidgo API, served over a real socket.

It depends on nothing else in ``vidgo_async``: it follows the vendor's
documented behaviour, not the client's expectations.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal

from aiohttp import web
from yarl import URL

from ._app import FakeApi
from ._delivery import CallbackBody, CallbackDelivery, CallbackFaults
from ._extras import TaskShaping
from ._faults import Fault, FaultPlan, RouteName
from ._log import RecordedRequest, RequestLog
from ._state import FakeTask, TaskBook
from ._wav import HEADER_SIZE

DEFAULT_WAV_SIZE = HEADER_SIZE + 44100 * 2 * 2
"""One second of 16-bit stereo silence at 44.1 kHz."""

_SHUTDOWN_TIMEOUT = 0.25


class FakeVidgo(TaskShaping):
    """The Vidgo API as an in-process aiohttp server, with scripted faults.

    Use it as an async context manager (or call :meth:`start` and
    :meth:`close`); it serves on ``host:port`` (an ephemeral port by default)
    and its :attr:`url` is the base URL for a client::

        async with FakeVidgo(api_key="test-key") as fake:
            fake.fail("audio-2")
            fake.inject(Fault.server_error(502, body="html"), route="submit")
            ...  # drive a client at fake.url
            assert fake.accept_count["audio-1"] == 1

    Args:
        api_key: The only key accepted in ``Authorization: Bearer <key>``.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        queue_time: Seconds a task stays ``not_started``.
        run_time: Seconds a task stays ``running``.
        report_progress: Whether running tasks report ``progress`` in the detail answer.
        credits: Starting balance; each accepted conversion costs one, failed ones are refunded.
        wav_size: Size in bytes of every WAV file served.
        conflict_includes_task_id: Whether a 409 carries ``data.task_id`` of the earlier task.
        strict_parents: Whether a conversion's parent ``task_id`` must be a known task.
        seed: Seed for task ids, random faults and callback faults. With a
            seed, task ids (so ``wav_url`` values) repeat from run to run: the
            epoch in ``task-unified-<epoch>-<8 chars>`` is then fixed at
            1757165031 (``created_time`` stays the wall clock).
        clock: Monotonic clock in seconds that drives the task life cycle.
            Callback timers still run in real seconds: with a clock of your
            own, a callback due on it goes out when the fake handles its next
            request (or when its real-seconds timer fires, if sooner).
        callback_body: Callbacks send the vendor's ``{"code": 200, "data": ...}``
            (``"wrapped"``) or the bare ``data`` object (``"bare"``).
        callback_retry_scale: Factor on the vendor's 1, 2, 4 s callback
            retry delays (the fake's clock runs fast).
        callback_timeout: Seconds a receiver has to answer a callback.
        callback_hosts: ``"loopback"`` delivers callbacks only to this
            machine (others are recorded as skipped), ``"any"`` everywhere.
        callback_proxy: An origin such as ``"http://127.0.0.1:8081"``: every
            callback goes there, its URL's path and query kept, as the reverse proxy in
            front of a receiver whose ``public_url`` is a public name would
            send it (``callback_hosts`` then does not apply).
        callback_faults: Scripted callback misbehaviour (also :attr:`callbacks`).
        files_lag: Seconds a finished conversion answers ``files: []`` before
            its ``wav_url`` appears (also per audio via :meth:`set_duration`).
        visibility_lag: Seconds after acceptance during which a task's detail
            answers 404 ``Task not found`` (eventual consistency).
        integer_task_ids: Task ids are JSON integers (see :attr:`integer_task_ids`).
        status_aliases: Status words answered in place of the documented ones.
    """

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        queue_time: float = 0.02,
        run_time: float = 0.1,
        report_progress: bool = True,
        credits: int = 10_000,
        wav_size: int = DEFAULT_WAV_SIZE,
        conflict_includes_task_id: bool = False,
        strict_parents: bool = False,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        callback_body: CallbackBody = "wrapped",
        callback_retry_scale: float = 0.01,
        callback_timeout: float = 10.0,
        callback_hosts: Literal["loopback", "any"] = "loopback",
        callback_proxy: str | None = None,
        callback_faults: CallbackFaults | None = None,
        files_lag: float = 0.0,
        visibility_lag: float = 0.0,
        integer_task_ids: bool = False,
        status_aliases: Mapping[str, str] | None = None,
    ) -> None:
        if wav_size < HEADER_SIZE:
            raise ValueError(f"wav_size must be at least {HEADER_SIZE}, got {wav_size}")
        self._host = host
        self._port = port
        self._url: str | None = None
        self._runner: web.AppRunner | None = None
        self._closed = False
        self._book = TaskBook(
            clock=clock, queue_time=queue_time, run_time=run_time, credits=credits, seed=seed
        )
        self._book.strict_parents = strict_parents
        self._book.conflict_includes_task_id = conflict_includes_task_id
        self.files_lag = files_lag
        self.visibility_lag = visibility_lag
        self.integer_task_ids = integer_task_ids
        self.status_aliases = status_aliases or {}
        self._plan = FaultPlan(seed)
        self._log = RequestLog()
        self._api = FakeApi(
            api_key=api_key,
            book=self._book,
            plan=self._plan,
            log=self._log,
            wav_size=wav_size,
            report_progress=report_progress,
        )
        self._delivery = CallbackDelivery(
            clock=clock,
            body=callback_body,
            retry_scale=callback_retry_scale,
            timeout=callback_timeout,
            loopback_only=callback_hosts == "loopback",
            seed=seed,
            proxy=callback_proxy,
        )
        self._delivery.faults = callback_faults or CallbackFaults()
        self._api.on_accept = self._delivery.accepted
        self._api.on_request = self._delivery.catch_up

    # -- serving ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving; :attr:`url` is known afterwards.

        Raises:
            RuntimeError: Already started, or closed (a fake serves once).
        """
        if self._runner is not None or self._closed:
            raise RuntimeError("a FakeVidgo can be started once; create a new one")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = str(URL.build(scheme="http", host=host, port=port))  # [::1] bracketed
        self._api.base_url = self._url
        self._delivery.base_url = self._url

    async def close(self) -> None:
        """Stop serving: end stalls and callback deliveries, drop connections. Safe twice."""
        self._closed = True
        self._api.wake_stalls()
        await self._delivery.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeVidgo:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """Base URL of the running server, such as ``http://127.0.0.1:54321``.

        Raises:
            RuntimeError: The server was never started.
        """
        if self._url is None:
            raise RuntimeError("FakeVidgo has no URL before start(); use `async with FakeVidgo()`")
        return self._url

    @property
    def app(self) -> web.Application:
        """The aiohttp application, for mounting in another server."""
        return self._api.app

    @property
    def api_key(self) -> str:
        """The API key the fake accepts."""
        return self._api.api_key

    # -- settings ---------------------------------------------------------------------------

    @property
    def credits(self) -> int:
        """Credits left (settable)."""
        return self._book.credits

    @credits.setter
    def credits(self, value: int) -> None:
        self._book.credits = value

    @property
    def strict_parents(self) -> bool:
        """Whether conversions must name a known parent task (settable)."""
        return self._book.strict_parents

    @strict_parents.setter
    def strict_parents(self, value: bool) -> None:
        self._book.strict_parents = value

    @property
    def conflict_includes_task_id(self) -> bool:
        """Whether a 409 carries ``data.task_id`` (settable)."""
        return self._book.conflict_includes_task_id

    @conflict_includes_task_id.setter
    def conflict_includes_task_id(self, value: bool) -> None:
        self._book.conflict_includes_task_id = value

    def fail(self, audio_id: str, message: str = "Audio processing failed") -> None:
        """Make the conversions of ``audio_id`` (already accepted or to come) end ``failed``."""
        self._book.set_failure(audio_id, message)

    def set_owner_forbidden(self, task_id: str) -> None:
        """Make detail and status requests for ``task_id`` answer 403 (another user's task)."""
        self._book.forbidden.add(task_id)

    @property
    def callbacks(self) -> CallbackDelivery:
        """Callback delivery: its ``faults`` and ``body`` (settable), ``attempts`` made."""
        return self._delivery

    # -- tasks ------------------------------------------------------------------------------

    @property
    def tasks(self) -> Mapping[str, FakeTask]:
        """Every task by id (read-only view)."""
        return MappingProxyType(self._book.tasks)

    @property
    def accepted(self) -> Mapping[str, list[str]]:
        """``audio_id`` → ids of the conversions accepted for it (read-only view)."""
        return MappingProxyType(self._book.accepted)

    @property
    def accept_count(self) -> Counter[str]:
        """Accepted conversions per ``audio_id`` (a copy)."""
        return Counter(self._book.accept_count)

    @property
    def undelivered_accepts(self) -> int:
        """Submits accepted whose success answer was never delivered (reset or stalled)."""
        return self._api.undelivered_accepts

    # -- faults -----------------------------------------------------------------------------

    def inject(self, fault: Fault, route: RouteName = "*", times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` requests to ``route``, in FIFO order.

        Queued faults take precedence over random rates; a route's own queue
        over the ``"*"`` queue.

        Raises:
            ValueError: Unknown route or ``times`` below 1.
        """
        self._plan.inject(fault, route, times)

    def set_fault_rates(
        self,
        rates: Mapping[str, float],
        *,
        routes: Iterable[RouteName] = ("submit", "detail"),
        stall_seconds: float = 30.0,
        retry_after: str = "0",
    ) -> None:
        """Apply random faults to requests to ``routes``, reproducibly for a given seed.

        Args:
            rates: Probability per request of each kind: ``server_error`` (half
                JSON 500, half HTML 502), ``rate_limited`` (half with
                ``Retry-After: retry_after``), ``reset_before``, ``reset_after``,
                ``stall``, ``garbage``, ``code_in_200``. They sum to at most 1.
            routes: The routes affected.
            stall_seconds: How long a random stall lasts.
            retry_after: The ``Retry-After`` value of random 429s that send one.

        Raises:
            ValueError: Unknown kind or route, or rates outside [0, 1].
        """
        self._plan.set_rates(rates, routes, stall_seconds, retry_after)

    def clear_faults(self) -> None:
        """Drop queued faults and random rates."""
        self._plan.clear()

    # -- request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order (a copy)."""
        return self._log.snapshot()

    def requests_to(self, path_or_route: str) -> list[RecordedRequest]:
        """The requests to a route name (``"submit"``, ``"files"``, ...) or an exact path."""
        return self._log.matching(path_or_route)

    def request_count(self, path_or_route: str) -> int:
        """How many requests went to a route name or an exact path."""
        return len(self._log.matching(path_or_route))

    def reset_log(self) -> None:
        """Forget the recorded requests (tasks and counters stay)."""
        self._log.clear()


async def serve(port: int, host: str = "127.0.0.1", **kwargs: Any) -> None:
    """Serve a :class:`FakeVidgo` until cancelled, printing its URL and API key.

    Args:
        port: Port to listen on (0 picks a free one).
        host: Interface to listen on.
        **kwargs: Further :class:`FakeVidgo` arguments.
    """
    async with FakeVidgo(host=host, port=port, **kwargs) as fake:
        print(f"FakeVidgo serving at {fake.url} (API key: {fake.api_key})", flush=True)
        print(
            f"  export VIDGO_BASE_URL={fake.url} VIDGO_API_KEY={fake.api_key}\n"
            "  (then e.g. vidgo-async batch pairs.csv --max-polls-per-second 500)",
            flush=True,
        )
        await asyncio.Event().wait()
