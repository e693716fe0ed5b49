"""vidgo_async.otel: spans and metrics, read back through the SDK's in-memory exporters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.trace", reason="needs the otel extra and opentelemetry-sdk")

import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode
from support import FAST_RETRY, FAST_TIMEOUTS, MakeClient

from vidgo_async import InsufficientCreditsError, PollPolicy, TaskFailedError, VidgoClient
from vidgo_async.otel import Telemetry
from vidgo_async.testing import FakeVidgo, Fault
from vidgo_async.webhooks import CallbackReceiver

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

SUBMIT = "/api/generate/submit"
DETAIL = "/api/generate/detail/music"


class Recorded:
    """A :class:`Telemetry` hook whose spans and metrics stay in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider([self.reader])
        self.hook = Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        return [span for span in spans if name is None or span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.spans(name)
        return span

    def children(self, parent: ReadableSpan, name: str | None = None) -> list[ReadableSpan]:
        return [
            span
            for span in self.spans(name)
            if span.parent is not None and span.parent.span_id == _id(parent)
        ]

    def metrics_json(self) -> str:
        data = self.reader.get_metrics_data()
        return "" if data is None else data.to_json()

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of a counter's points (or a histogram's counts) having ``attributes``."""
        found = 0.0
        for point in self.points(name):
            if attributes.items() <= dict(point.attributes).items():
                found += point.value if hasattr(point, "value") else point.count
        return found


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def _trace(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


@pytest.fixture
def otel() -> Iterator[Recorded]:
    """Spans and metrics recorded in memory, through providers of this test only."""
    recorded = Recorded()
    yield recorded
    recorded.tracer_provider.shutdown()
    recorded.meter_provider.shutdown()


@pytest_asyncio.fixture
async def traced(make_client: MakeClient, otel: Recorded) -> VidgoClient:
    """A fast client of the fake, instrumented by ``otel``."""
    return make_client(on_event=otel.hook)


async def test_nothing_is_instrumented_unless_asked(make_client: MakeClient) -> None:
    """Importing the module and building a hook leave the global providers untouched."""
    Telemetry()
    async with make_client() as client:
        await client.convert_to_wav("music", "audio-1")
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


async def test_one_conversion_is_one_trace_of_a_submit_and_a_wait(
    traced: VidgoClient, fake: FakeVidgo, otel: Recorded
) -> None:
    """convert_to_wav: a root span over a submit (its POST) and a wait (a GET per poll)."""
    await traced.convert_to_wav("music", "audio-1")
    root = otel.one("vidgo.convert_to_wav")
    assert root.parent is None
    assert {span.name for span in otel.children(root)} == {"vidgo.submit", "vidgo.wait"}
    submit, wait = otel.one("vidgo.submit"), otel.one("vidgo.wait")
    assert [span.name for span in otel.children(submit)] == [f"POST {SUBMIT}"]
    polls = otel.children(wait)
    assert {span.name for span in polls} == {f"GET {DETAIL}"}
    assert len(polls) == fake.request_count("detail")
    assert len(otel.spans()) == 3 + 1 + len(polls)
    assert {_trace(span) for span in otel.spans()} == {_trace(root)}
    assert all(span.status.status_code is StatusCode.UNSET for span in otel.spans())


async def test_operation_spans_carry_the_task_and_the_track(
    traced: VidgoClient, otel: Recorded
) -> None:
    """The ids of the track and of the task it became are on the operations' spans."""
    await traced.convert_to_wav("music", "audio-1")
    root, submit, wait = (otel.one(f"vidgo.{n}") for n in ("convert_to_wav", "submit", "wait"))
    task_id = root.attributes["vidgo.task_id"]
    assert str(task_id).startswith("task-")
    for span in (root, submit):
        assert span.attributes["vidgo.model"] == "convert-to-wav"
        assert span.attributes["vidgo.source_task_id"] == "music"
        assert span.attributes["vidgo.audio_id"] == "audio-1"
        assert span.attributes["vidgo.task_id"] == task_id
    assert submit.attributes["vidgo.submit.attempts"] == 1
    assert wait.attributes["vidgo.task_id"] == task_id
    assert wait.attributes["vidgo.task.status"] == "finished"
    assert wait.attributes["vidgo.status_reads"] == len(otel.children(wait))
    assert [event.name for event in wait.events][-1] == "vidgo.status"


async def test_http_spans_follow_the_semantic_conventions(
    traced: VidgoClient, fake: FakeVidgo, otel: Recorded
) -> None:
    """Each request is a client span with method, route template, server and status."""
    await traced.convert_to_wav("music", "audio-1")
    (post,) = otel.spans(f"POST {SUBMIT}")
    assert post.kind is SpanKind.CLIENT
    host, port = fake.url.removeprefix("http://").split(":")
    assert dict(post.attributes) == {
        "http.request.method": "POST",
        "url.template": SUBMIT,
        "server.address": host,
        "server.port": int(port),
        "http.response.status_code": 200,
    }
    assert all(s.attributes["url.template"] == DETAIL for s in otel.spans(f"GET {DETAIL}"))


async def test_the_callers_span_is_the_parent(traced: VidgoClient, otel: Recorded) -> None:
    """A conversion inside the caller's span is its child, and leaves it current afterwards."""
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("job") as job:
        await traced.convert_to_wav("music", "audio-1")
        assert trace.get_current_span() is job
    assert otel.one("vidgo.convert_to_wav").parent.span_id == _id(otel.one("job"))  # type: ignore[union-attr]
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_a_batch_links_a_trace_per_pair_to_its_span(
    traced: VidgoClient, otel: Recorded, tmp_path: Path
) -> None:
    """A batch of 20: its span, and 20 pair traces linked to it, each a submit, wait, download."""
    pairs = [("music", f"audio-{index}") for index in range(20)]
    results = [r async for r in traced.convert_many(pairs, concurrency=8, download_to=tmp_path)]
    assert all(result.ok for result in results)
    batch = otel.one("vidgo.batch")
    assert batch.parent is None
    assert dict(batch.attributes) == {"vidgo.batch.pairs": 20, "vidgo.batch.failed": 0}
    pair_spans = otel.spans("vidgo.batch.pair")
    assert sorted(str(s.attributes["vidgo.audio_id"]) for s in pair_spans) == sorted(
        audio for _, audio in pairs
    )
    traces = {_trace(span) for span in pair_spans}
    assert len(traces) == 20 and _trace(batch) not in traces
    for pair in pair_spans:
        assert pair.parent is None
        assert [link.context.span_id for link in pair.links] == [_id(batch)]
        steps = {span.name: span for span in otel.children(pair)}
        assert sorted(steps) == ["vidgo.download", "vidgo.submit", "vidgo.wait"]
        assert steps["vidgo.submit"].attributes["vidgo.task_id"] == pair.attributes["vidgo.task_id"]
        (get,) = otel.children(steps["vidgo.download"])
        assert get.name == "GET" and str(get.attributes["url.path"]).endswith(".wav")
        assert "url.template" not in get.attributes
    assert len(otel.spans()) == 1 + 20 * 6 + len(otel.spans(f"GET {DETAIL}"))


async def test_a_batch_stopped_early_ends_every_span(traced: VidgoClient, otel: Recorded) -> None:
    """Leaving a batch's loop ends its span and its pairs' (cancelled), and leaks no context."""
    pairs = [("music", f"audio-{index}") for index in range(20)]
    async with contextlib.aclosing(traced.convert_many(pairs, concurrency=4)) as results:
        async for _ in results:
            break
    await asyncio.sleep(0.05)  # submits in flight, shielded, end on their own
    batch = otel.one("vidgo.batch")
    assert batch.attributes["error.type"] == "CancelledError"
    started = int(otel.total("vidgo.client.requests", **{"url.template": SUBMIT}))
    assert len(otel.spans("vidgo.submit")) == started
    assert len(otel.spans("vidgo.batch.pair")) >= started
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_a_failed_task_marks_its_spans_with_the_error(
    traced: VidgoClient, fake: FakeVidgo, otel: Recorded
) -> None:
    """A failed conversion: the wait and the conversion spans are ERROR, with error.type."""
    fake.fail("audio-1")
    with pytest.raises(TaskFailedError):
        await traced.convert_to_wav("music", "audio-1")
    for name in ("vidgo.wait", "vidgo.convert_to_wav"):
        span = otel.one(name)
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "TaskFailedError"
    assert otel.one("vidgo.wait").attributes["vidgo.task.status"] == "failed"
    assert otel.one("vidgo.submit").status.status_code is StatusCode.UNSET


async def test_an_error_status_is_the_http_spans_error_type(
    traced: VidgoClient, fake: FakeVidgo, otel: Recorded
) -> None:
    """A 503 on a submit: its POST span is ERROR with error.type "503"; the retry is an event."""
    fake.inject(Fault.server_error(503), route="submit")
    await traced.convert_to_wav("music", "audio-1")
    failed, accepted = otel.spans(f"POST {SUBMIT}")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "503"
    assert failed.attributes["http.response.status_code"] == 503
    assert accepted.status.status_code is StatusCode.UNSET
    submit = otel.one("vidgo.submit")
    (retry,) = [event for event in submit.events if event.name == "vidgo.retry"]
    assert retry.attributes is not None and retry.attributes["error.type"] == "ServerError"
    assert submit.attributes["vidgo.submit.attempts"] == 2
    assert otel.total("vidgo.client.retries", **{"error.type": "ServerError"}) == 1


async def test_a_connection_failure_has_no_status_and_its_class_as_error_type(
    make_client: MakeClient, otel: Recorded
) -> None:
    """A request that got no answer: error.type is our error's class, status class "none"."""
    async with FakeVidgo() as gone:
        url = gone.url
    client = make_client(base_url=url, on_event=otel.hook, retry=FAST_RETRY)
    with pytest.raises(Exception, match="cannot reach"):
        await client.submit_wav("music", "audio-1")
    spans = otel.spans(f"POST {SUBMIT}")
    assert spans and all(s.attributes["error.type"] == "TransportError" for s in spans)
    assert "http.response.status_code" not in spans[0].attributes
    assert otel.total("vidgo.client.requests", **{"vidgo.status_class": "none"}) == len(spans)


async def test_requests_status_reads_and_tasks_in_flight_are_measured(
    traced: VidgoClient, fake: FakeVidgo, otel: Recorded
) -> None:
    """Requests by route and status class, reads per wait, detection window, none left in flight."""
    await traced.convert_to_wav("music", "audio-1")
    reads = fake.request_count("detail")
    assert otel.total("vidgo.client.requests", **{"url.template": SUBMIT}) == 1
    ok = {"url.template": DETAIL, "vidgo.status_class": "2xx", "http.request.method": "GET"}
    assert otel.total("vidgo.client.requests", **ok) == reads
    assert otel.total("http.client.request.duration") == 1 + reads
    (per_task,) = otel.points("vidgo.task.status_reads")
    assert (per_task.count, per_task.sum) == (1, reads)
    assert dict(per_task.attributes) == {"vidgo.task.status": "finished"}
    (window,) = otel.points("vidgo.task.detection_window")
    assert window.count == 1 and 0 <= window.sum < 5
    assert dict(window.attributes) == {"vidgo.detected_by": "poll"}
    assert otel.total("vidgo.poll.wins") == 1 and otel.total("vidgo.callback.wins") == 0
    assert [point.value for point in otel.points("vidgo.tasks.in_flight")] == [0]


async def test_tasks_in_flight_count_the_waits_under_way(
    traced: VidgoClient, otel: Recorded
) -> None:
    """While waits run, vidgo.tasks.in_flight counts them."""
    tasks = [await traced.submit_wav("music", f"audio-{index}") for index in range(3)]
    waits = [asyncio.create_task(traced.wait(task.task_id, timeout=30)) for task in tasks]
    await asyncio.sleep(0)  # each wait starts
    assert otel.total("vidgo.tasks.in_flight") == 3
    await asyncio.gather(*waits)
    assert otel.total("vidgo.tasks.in_flight") == 0


async def test_rate_limited_answers_are_counted(
    traced: VidgoClient, fake: FakeVidgo, otel: Recorded
) -> None:
    """A 429 on a poll: counted by route, and the wait's next poll is a retry by its cause."""
    fake.inject(Fault.rate_limited("0"), route="detail")
    await traced.convert_to_wav("music", "audio-1")
    assert otel.total("vidgo.client.rate_limited", **{"url.template": DETAIL}) == 1
    assert otel.total("vidgo.client.rate_limited", **{"url.template": SUBMIT}) == 0
    assert otel.total("vidgo.client.retries", **{"error.type": "RateLimitError"}) == 1
    wait = otel.one("vidgo.wait")
    assert "vidgo.retry" in [event.name for event in wait.events]


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.http_error(430, {"code": 430, "msg": "too frequent"}), id="430"),
        pytest.param(Fault.code_in_200(430, "call frequency too high"), id="430-in-200"),
        pytest.param(Fault.http_error(405, {"code": 405, "msg": "rate limit"}), id="405"),
    ],
)
async def test_sister_platforms_throttles_are_counted_as_rate_limited(
    traced: VidgoClient, fake: FakeVidgo, otel: Recorded, fault: Fault
) -> None:
    """What the client takes for "slow down" is what the counter counts, whatever the
    status that carried it."""
    fake.inject(fault, route="detail")
    await traced.convert_to_wav("music", "audio-1")
    assert otel.total("vidgo.client.rate_limited", **{"url.template": DETAIL}) == 1


async def test_a_429_saying_the_credits_ran_out_is_not_counted_as_rate_limited(
    traced: VidgoClient, fake: FakeVidgo, otel: Recorded
) -> None:
    """It ends the call (InsufficientCreditsError): no throttle to count."""
    fake.inject(Fault.http_error(429, {"code": 429, "msg": "insufficient credits"}), route="submit")
    with pytest.raises(InsufficientCreditsError):
        await traced.convert_to_wav("music", "audio-1")
    assert otel.total("vidgo.client.rate_limited") == 0


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    """A callback receiver serving itself on 127.0.0.1."""
    receiver = CallbackReceiver()
    async with receiver.serve():
        yield receiver


async def test_callback_wins_are_counted(
    fake: FakeVidgo, receiver: CallbackReceiver, otel: Recorded
) -> None:
    """A wait woken by a callback: a callback win, its window, a span event on the wait."""
    net = PollPolicy(initial=0.01, max_interval=0.05, callback_interval=30.0)
    async with VidgoClient(
        fake.api_key,
        base_url=fake.url,
        callbacks=receiver,
        poll=net,
        retry=FAST_RETRY,
        timeouts=FAST_TIMEOUTS,
        on_event=otel.hook,
    ) as client:
        await asyncio.wait_for(client.convert_to_wav("music", "audio-1"), 10)
    assert otel.total("vidgo.callback.wins") == 1 and otel.total("vidgo.poll.wins") == 0
    assert otel.total("vidgo.task.detection_window", **{"vidgo.detected_by": "callback"}) == 1
    assert "vidgo.callback" in [event.name for event in otel.one("vidgo.wait").events]


async def test_the_api_key_is_in_no_span_event_or_metric(
    traced: VidgoClient, fake: FakeVidgo, otel: Recorded, tmp_path: Path
) -> None:
    """After conversions, faults, a failure and downloads, the key is nowhere in the telemetry."""
    fake.inject(Fault.server_error(500), route="submit")
    fake.inject(Fault.rate_limited(), route="detail")
    fake.fail("audio-bad")
    with pytest.raises(TaskFailedError):
        await traced.convert_to_wav("music", "audio-bad")
    url = await traced.convert_to_wav("music", "audio-1")
    await traced.download(url, tmp_path / "one.wav")
    pairs = [("music", f"audio-{index}") for index in range(5)]
    async for _ in traced.convert_many(pairs, download_to=tmp_path):
        pass
    spans = otel.spans()
    assert len(spans) > 20
    dumped = "".join(span.to_json() for span in spans) + otel.metrics_json()
    assert fake.api_key not in dumped
    assert "Bearer" not in dumped and "?" not in dumped  # no header, no URL query
