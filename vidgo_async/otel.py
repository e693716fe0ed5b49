"""OpenTelemetry traces and metrics of a client (the extra ``otel``: ``opentelemetry-api``).

Nothing is instrumented unless you ask: give a client a :class:`Telemetry` as
its ``on_event`` hook. It uses the providers you pass, else the global ones
(``opentelemetry.trace.get_tracer_provider()``, which record nothing until
your application sets them)::

    from vidgo_async import VidgoClient
    from vidgo_async.otel import Telemetry

    async with VidgoClient(on_event=Telemetry()) as client:
        url = await client.convert_to_wav(task_id, audio_id)

Spans (``vidgo.*`` internal, HTTP ones of kind client, named ``{method} {url.template}``
or, for the storage host, ``{method}``)::

    vidgo.convert_to_wav                   (a child of your current span, if any)
    ├── vidgo.submit
    │   └── POST /api/generate/submit      (one per attempt)
    └── vidgo.wait
        └── GET /api/generate/detail/music (one per poll)

    vidgo.batch                            (convert_many, from start to its last pair)
    vidgo.batch.pair                       (a trace of its own, linked to vidgo.batch)
    ├── vidgo.submit ── POST ...
    ├── vidgo.wait ──── GET ...
    └── vidgo.download
        └── GET                            (storage; one per attempt and redirect hop)

A batch's pairs are linked to the batch's span rather than its children: a
batch of thousands of pairs, hours long, would otherwise be one trace whose
root ends last, beyond the span limits of most trace stores; each pair is a
small trace, complete when the pair is, and sampled on its own.

Attributes follow OpenTelemetry's semantic conventions where they have one
(``http.request.method``, ``url.template``, ``url.path``, ``server.address``,
``server.port``, ``http.response.status_code``, ``error.type``); ``url.full``
is left out, since storage URLs are signed in their query. The SDK's own:
``vidgo.task_id``, ``vidgo.model``, ``vidgo.source_task_id``, ``vidgo.audio_id``,
``vidgo.task.status`` and ``vidgo.status_reads`` (waits),
``vidgo.submit.attempts``, ``vidgo.batch.pairs`` and ``vidgo.batch.failed``.
A failed operation or request has status ERROR and ``error.type`` (the
error's class name, or the HTTP status). Retries, status changes and
callback hints are span events. The API key is in no span, attribute or
metric: events never carry it.

Metrics:

=============================  =============  ==============================================
``vidgo.client.requests``      counter        HTTP requests, by ``http.request.method``,
                                              ``url.template``, ``server.address`` and
                                              ``vidgo.status_class`` (``2xx`` ... or ``none``
                                              with ``error.type`` when no answer came)
``http.client.request.duration``  histogram   seconds per request, the semantic conventions'
``vidgo.client.retries``       counter        failed attempts about to be repeated, by
                                              ``error.type`` (submits, reads, polls, downloads)
``vidgo.client.rate_limited``  counter        answers asking to slow down (429, or a sister
                                              platform's code for "too frequent"; not a 429
                                              saying the credits ran out), by
                                              ``url.template``/``server.address``
``vidgo.task.status_reads``    histogram      status reads per wait (requests per task), by
                                              the last ``vidgo.task.status`` seen
``vidgo.task.detection_window``  histogram    seconds between the last read that saw the
                                              task unfinished (or its submit's answer) and
                                              the read that saw it done, by
                                              ``vidgo.detected_by`` (``callback``, ``poll``)
``vidgo.callback.wins``        counter        waits whose task was seen done by the read a
                                              callback hint prompted
``vidgo.poll.wins``            counter        waits whose task was seen done by a scheduled poll
``vidgo.tasks.in_flight``      up-down        tasks being waited on
=============================  =============  ==============================================

The API reports no time at which a task finished, so the detection delay
itself cannot be measured; ``vidgo.task.detection_window`` is its upper bound
(the delay lies between zero and the window). A wait whose first read
already finds the task done records no window unless the same operation
submitted it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextvars import Token
from typing import Any

import attrs
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from . import __version__
from ._events import Event, EventKind
from ._models import TaskStatus

__all__ = ["SCHEMA_URL", "Telemetry"]

#: The semantic conventions the attribute names follow.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"

_SPAN_NAMES = {"pair": "vidgo.batch.pair"}  # the others: vidgo.{operation}
# Event fields given to a span when it starts, and their attribute names.
_ATTRIBUTES = (
    ("task_id", "vidgo.task_id"),
    ("model", "vidgo.model"),
    ("source_task_id", "vidgo.source_task_id"),
    ("audio_id", "vidgo.audio_id"),
    ("method", "http.request.method"),
    ("route", "url.template"),
    ("path", "url.path"),
    ("server_address", "server.address"),
    ("server_port", "server.port"),
)
# The semantic conventions' advice for HTTP durations, in seconds.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_WINDOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60, 120)
_READ_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100)


@attrs.define(eq=False)
class _Scope:
    """What is kept of one operation or request while it runs (in the OTel context)."""

    kind: str  # the operation's name, or "request"
    span: Span
    parent: _Scope | None  # the enclosing scope (for a pair: its batch)
    token: Token[otel_context.Context] | None = None  # of the context attached at its start
    submitted: float | None = None  # convert_to_wav, pair: when its submit was answered
    # A wait's reads: how many, the last status, when one last saw the task
    # unfinished, whether a callback hint prompted the next one, whether it saw it done.
    reads: int = 0
    status: TaskStatus | None = None
    unfinished_at: float | None = None
    hinted: bool = False
    detected: bool = False
    pairs: int = 0  # a batch's pairs done
    failed: int = 0  # those without a WAV


class Telemetry:
    """An ``on_event`` hook that turns a client's events into spans and metrics.

    One instance may serve several clients. Spans nest through the OTel
    context of the asyncio task that runs each operation, as the events of an
    operation all come from its task.

    Args:
        tracer_provider: Where spans go; default: the global tracer provider.
        meter_provider: Where metrics go; default: the global meter provider.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(
            "vidgo_async", __version__, tracer_provider=tracer_provider, schema_url=SCHEMA_URL
        )
        meter = metrics.get_meter(
            "vidgo_async", __version__, meter_provider=meter_provider, schema_url=SCHEMA_URL
        )
        self._key = otel_context.create_key("vidgo_async.otel.scope")  # unique per instance
        self._requests = meter.create_counter(
            "vidgo.client.requests", "{request}", "HTTP requests sent, by route and status class"
        )
        self._durations = _histogram(
            meter, "http.client.request.duration", "s", "Duration of HTTP requests", _HTTP_BUCKETS
        )
        self._retries = meter.create_counter(
            "vidgo.client.retries", "{retry}", "Failed attempts about to be repeated, by cause"
        )
        self._rate_limited = meter.create_counter(
            "vidgo.client.rate_limited", "{response}", "answers asking to slow down"
        )
        self._reads = _histogram(
            meter, "vidgo.task.status_reads", "{request}", "Status reads per wait", _READ_BUCKETS
        )
        self._windows = _histogram(
            meter,
            "vidgo.task.detection_window",
            "s",
            "Upper bound of the delay between a task's end and its detection",
            _WINDOW_BUCKETS,
        )
        self._callback_wins = meter.create_counter(
            "vidgo.callback.wins", "{task}", "Tasks seen done by the read a callback prompted"
        )
        self._poll_wins = meter.create_counter(
            "vidgo.poll.wins", "{task}", "Tasks seen done by a scheduled poll"
        )
        self._in_flight = meter.create_up_down_counter(
            "vidgo.tasks.in_flight", "{task}", "Tasks being waited on"
        )
        self._handlers: dict[EventKind, Callable[[Event], None]] = {
            "operation_start": self._operation_start,
            "operation_end": self._operation_end,
            "request_start": self._request_start,
            "request_end": self._request_end,
            "retry": self._retry,
            "poll": self._poll,
            "status": self._status,
            "callback": self._callback,
            "submit": self._submit,
        }

    def __repr__(self) -> str:
        return "Telemetry()"

    def __call__(self, event: Event) -> None:
        """Record ``event``."""
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def _current(self) -> _Scope | None:
        scope = otel_context.get_value(self._key)
        return scope if isinstance(scope, _Scope) else None

    def _enter(self, kind: str, span: Span, parent: _Scope | None) -> _Scope:
        scope = _Scope(kind, span, parent)
        context = otel_context.set_value(self._key, scope, trace.set_span_in_context(span))
        scope.token = otel_context.attach(context)
        return scope

    def _leave(self, kind: str | None) -> _Scope | None:
        """The current scope, made no longer current, if it is a ``kind`` one."""
        scope = self._current()
        if scope is None or scope.kind != kind:
            return None  # its start was not seen (the hook was given to a client mid-way)
        if scope.token is not None:
            otel_context.detach(scope.token)
        return scope

    def _operation_start(self, event: Event) -> None:
        name = event.operation or "operation"
        parent = self._current()
        links: Sequence[Link] = ()
        context = None  # the current one: a child of what runs now
        if name == "pair" and parent is not None and parent.kind == "batch":
            links = [Link(parent.span.get_span_context())]
            context = otel_context.Context()  # the root of a trace of its own
        span = self._tracer.start_span(
            _SPAN_NAMES.get(name, f"vidgo.{name}"),
            context=context,
            links=links,
            attributes=_attributes(event),
        )
        scope = self._enter(name, span, parent)
        if name == "wait":
            # The submit's answer (status not_started) is the first read of the task.
            scope.unfinished_at = None if parent is None else parent.submitted
            self._in_flight.add(1)

    def _operation_end(self, event: Event) -> None:
        scope = self._leave(event.operation)
        if scope is None:
            return
        span, parent = scope.span, scope.parent
        if event.task_id is not None:
            span.set_attribute("vidgo.task_id", event.task_id)
        if scope.kind == "wait":
            self._end_wait(scope)
        elif scope.kind == "submit" and event.error is None and parent is not None:
            parent.submitted = time.monotonic()
        elif scope.kind == "pair" and parent is not None and parent.kind == "batch":
            parent.pairs += 1
            parent.failed += event.error is not None
        elif scope.kind == "batch":
            span.set_attributes(
                {"vidgo.batch.pairs": scope.pairs, "vidgo.batch.failed": scope.failed}
            )
        _end(span, event.error)

    def _end_wait(self, scope: _Scope) -> None:
        self._in_flight.add(-1)
        status = {} if scope.status is None else {"vidgo.task.status": scope.status.value}
        self._reads.record(scope.reads, status)
        scope.span.set_attributes({"vidgo.status_reads": scope.reads, **status})

    def _request_start(self, event: Event) -> None:
        method = event.method or "_OTHER"
        name = method if event.route is None else f"{method} {event.route}"
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=_attributes(event))
        self._enter("request", span, self._current())

    def _request_end(self, event: Event) -> None:
        scope = self._leave("request")
        code, error = event.status_code, event.error
        if code is not None and code >= 400:
            error = str(code)  # as the conventions ask, when there is a status
        where: dict[str, Any] = {"http.request.method": event.method or "_OTHER"}
        if event.route is not None:
            where["url.template"] = event.route
        if event.server_address is not None:
            where["server.address"] = event.server_address
        status: dict[str, Any] = {} if code is None else {"http.response.status_code": code}
        failure = {} if error is None else {"error.type": error}
        if code is None:
            self._requests.add(1, {**where, "vidgo.status_class": "none", **failure})
        else:
            self._requests.add(1, {**where, "vidgo.status_class": f"{code // 100}xx"})
        if event.error == "RateLimitError":  # a 429, or a sister platform's "too frequent"
            self._rate_limited.add(1, where)
        if event.duration is not None:
            port = {} if event.server_port is None else {"server.port": event.server_port}
            self._durations.record(event.duration, {**where, **port, **status, **failure})
        if scope is not None:
            scope.span.set_attributes(status)
            _end(scope.span, error)

    def _retry(self, event: Event) -> None:
        cause = event.error or "_OTHER"
        self._retries.add(1, {"error.type": cause})
        scope = self._current()
        if scope is not None:
            details: dict[str, Any] = {"error.type": cause}
            if event.attempt is not None:
                details["vidgo.attempt"] = event.attempt
            if event.delay is not None:
                details["vidgo.retry.delay"] = event.delay
            scope.span.add_event("vidgo.retry", details)

    def _poll(self, event: Event) -> None:
        scope = self._current()
        if scope is None or scope.kind != "wait":
            return
        scope.reads += 1
        prompted, scope.hinted = scope.hinted, False
        status = event.status
        if status is None:  # the read failed
            return
        scope.status = status
        now = time.monotonic()
        if not status.is_terminal:
            scope.unfinished_at = now
            return
        if scope.detected:  # a re-read of a finished task (its files lagging)
            return
        scope.detected = True
        by = "callback" if prompted else "poll"
        (self._callback_wins if prompted else self._poll_wins).add(1)
        if scope.unfinished_at is not None:
            self._windows.record(now - scope.unfinished_at, {"vidgo.detected_by": by})

    def _status(self, event: Event) -> None:
        scope = self._current()
        if scope is not None and event.status is not None:
            scope.span.add_event("vidgo.status", {"vidgo.task.status": event.status.value})

    def _callback(self, event: Event) -> None:
        scope = self._current()
        if scope is not None and scope.kind == "wait":
            scope.hinted = True
            scope.span.add_event("vidgo.callback")

    def _submit(self, event: Event) -> None:
        scope = self._current()
        if scope is not None and scope.kind == "submit" and event.attempt is not None:
            scope.span.set_attribute("vidgo.submit.attempts", event.attempt)


def _attributes(event: Event) -> dict[str, Any]:
    return {
        name: value for field, name in _ATTRIBUTES if (value := getattr(event, field)) is not None
    }


def _end(span: Span, error: str | None) -> None:
    if error is not None:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


def _histogram(
    meter: metrics.Meter, name: str, unit: str, description: str, buckets: Sequence[float]
) -> metrics.Histogram:
    """A histogram with bucket advice, where the API takes it (``opentelemetry-api`` 1.30)."""
    try:
        return meter.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:
        return meter.create_histogram(name, unit, description)
