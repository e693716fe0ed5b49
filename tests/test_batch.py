"""convert_many: one result per input, bounded, resumable from a journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import attrs
import pytest
from support import FAST_POLL, FAST_RETRY, Abort, MakeFake

from vidgo_async import (
    APIError,
    BatchProgress,
    ClientClosedError,
    ConfigurationError,
    ConversionResult,
    Event,
    NotFoundError,
    PollPolicy,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskHandle,
    TaskTimeoutError,
    VidgoClient,
    VidgoError,
)
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio


def _client(fake: FakeVidgo) -> VidgoClient:
    return VidgoClient(
        fake.api_key,
        base_url=fake.url,
        poll=FAST_POLL,
        retry=FAST_RETRY,
        max_polls_per_second=5000.0,
    )


def _client_tasks(tasks: set[asyncio.Task[object]]) -> list[asyncio.Task[object]]:
    """Tasks other than the fake server's (its request handlers and the connections it
    is accepting share the loop)."""
    server = ("RequestHandler.", "BaseSelectorEventLoop._accept_connection")
    return [t for t in tasks if not t.get_coro().__qualname__.startswith(server)]


async def _collect(client: VidgoClient, pairs: object, **kwargs: object) -> list[ConversionResult]:
    return [result async for result in client.convert_many(pairs, **kwargs)]  # type: ignore[arg-type]


async def test_every_pair_gets_one_result(vidgo_fake: FakeVidgo) -> None:
    """Each input pair yields exactly one result, and each track is accepted once."""
    pairs = [(f"music-{i // 2}", f"audio-{i}") for i in range(60)]
    async with _client(vidgo_fake) as client:
        results = await _collect(client, pairs, concurrency=8)
    assert sorted((r.source_task_id, r.audio_id) for r in results) == sorted(pairs)
    assert all(r.ok and r.wav_url and r.task_id for r in results)
    assert max(vidgo_fake.accept_count.values()) == 1


async def test_one_failure_does_not_stop_the_batch(vidgo_fake: FakeVidgo) -> None:
    """A failed task is reported with the server's message; the others still convert."""
    vidgo_fake.fail("audio-3", "silent track")
    pairs = [("music", f"audio-{i}") for i in range(10)]
    async with _client(vidgo_fake) as client:
        results = {r.audio_id: r for r in await _collect(client, pairs)}
    assert isinstance(results["audio-3"].error, TaskFailedError)
    assert results["audio-3"].error.error_message == "silent track"
    assert sum(r.ok for r in results.values()) == 9


async def test_a_pairs_task_errors_carry_a_handle_to_resume_with(make_fake: MakeFake) -> None:
    """A failed or timed-out pair's error names its conversion task and its pair."""
    quick, slow = await make_fake(), await make_fake(queue_time=0.0, run_time=0.6)
    quick.fail("audio-1", "silent track")
    async with _client(quick) as client:
        (failed,) = await _collect(client, [("music", "audio-1")])
    async with _client(slow) as client:
        (late,) = await _collect(client, [("music", "audio-2")], timeout=0.2)
    assert isinstance(failed.error, TaskFailedError)
    assert isinstance(late.error, TaskTimeoutError)
    for result, handle in ((failed, failed.error.handle), (late, late.error.handle)):
        assert result.task_id is not None
        assert handle == TaskHandle(
            task_id=result.task_id, source_task_id="music", audio_id=result.audio_id
        )
    async with _client(slow) as client:  # the handle resumes the wait
        assert (await client.wait(late.error.handle, timeout=5)).wav_url


async def test_duplicates_are_converted_once_and_reported_each_time(vidgo_fake: FakeVidgo) -> None:
    """A pair listed three times is submitted once and yields three results."""
    pairs = [("music", "audio-1"), ("music", "audio-2"), ("music", "audio-1"), ("music", "audio-1")]
    async with _client(vidgo_fake) as client:
        results = await _collect(client, pairs)
    assert Counter(r.audio_id for r in results) == {"audio-1": 3, "audio-2": 1}
    assert len({r.task_id for r in results if r.audio_id == "audio-1"}) == 1
    assert vidgo_fake.request_count("submit") == 2


async def test_a_repeat_read_after_its_pair_finished_gets_an_equal_result(
    vidgo_fake: FakeVidgo,
) -> None:
    """A pair read again after its result came out is answered without a request,
    with an equal result: success and failure alike."""
    vidgo_fake.fail("audio-2", "silent track")
    first: dict[str, ConversionResult] = {}
    both_out = asyncio.Event()

    async def pairs() -> AsyncIterator[tuple[str, str]]:
        yield ("music", "audio-1")
        yield ("music", "audio-2")
        await asyncio.wait_for(both_out.wait(), 10)
        yield ("music", "audio-1")
        yield ("music", "audio-2")

    async with _client(vidgo_fake) as client:
        repeats = []
        async for result in client.convert_many(pairs()):
            if result.audio_id in first:
                repeats.append(result)
            first.setdefault(result.audio_id, result)
            if len(first) == 2:
                both_out.set()
    assert sorted(r.audio_id for r in repeats) == ["audio-1", "audio-2"]
    for repeat in repeats:
        assert repeat == first[repeat.audio_id]
    assert first["audio-1"].ok
    assert isinstance(first["audio-2"].error, TaskFailedError)
    assert vidgo_fake.request_count("submit") == 2


async def test_malformed_pairs_get_an_error_result_without_requests(vidgo_fake: FakeVidgo) -> None:
    """Bad pairs come back as results carrying TypeError/ValueError; nothing is sent for them."""
    pairs: list[object] = [("music", ""), ("only-one",), "not-a-pair", ("music", "x" * 300)]
    async with _client(vidgo_fake) as client:
        results = await _collect(client, pairs)
    assert len(results) == 4
    assert all(isinstance(r.error, (TypeError, ValueError)) for r in results)
    assert vidgo_fake.requests == []


async def test_async_iterable_input_is_read_lazily(vidgo_fake: FakeVidgo) -> None:
    """An endless async input is only read as far as the in-flight bounds allow."""
    read = 0

    async def endless() -> AsyncIterator[tuple[str, str]]:
        nonlocal read
        while True:
            read += 1
            yield ("music", f"audio-{read}")

    async with _client(vidgo_fake) as client:
        batch = client.convert_many(endless(), concurrency=2, max_waiting=3)
        first = [await batch.__anext__() for _ in range(5)]
        await batch.aclose()
    assert all(r.ok for r in first)
    assert read <= 5 + 2 + 3 + 2  # results taken + submits + waits + the queue


async def test_breaking_out_leaves_no_task_behind(vidgo_fake: FakeVidgo) -> None:
    """Closing the iterator early cancels all in-flight work."""
    vidgo_fake.set_duration("audio-0", run_time=0.0)
    before = asyncio.all_tasks()
    async with _client(vidgo_fake) as client:
        batch = client.convert_many([("music", f"audio-{i}") for i in range(50)], concurrency=10)
        async for _ in batch:
            break
        await batch.aclose()
        await asyncio.sleep(0)
        assert _client_tasks(asyncio.all_tasks() - before) == []
        await asyncio.sleep(0.05)  # requests already on the wire may still be logged
        seen = len(vidgo_fake.requests)
        await asyncio.sleep(0.2)
        assert len(vidgo_fake.requests) == seen


async def test_a_batch_left_early_is_finished_by_the_next_without_a_journal(
    vidgo_fake: FakeVidgo,
) -> None:
    """No journal, a loop left after one result: the next batch of the same client
    waits on the tasks the first one created (the fake's 409s name none) instead of
    reporting those tracks as converted before."""
    pairs = [("music", f"audio-{i}") for i in range(6)]
    vidgo_fake.set_duration("audio-0", run_time=0.0)
    for _, audio in pairs[1:]:
        vidgo_fake.set_duration(audio, queue_time=0.0, run_time=0.3)
    async with _client(vidgo_fake) as client:
        async for _ in client.convert_many(pairs, concurrency=8):
            break
        submitted = sum(vidgo_fake.accept_count.values())
        assert submitted > 1  # pairs left unreported with their tasks running
        results = await _collect(client, pairs, timeout=5)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert max(vidgo_fake.accept_count.values()) == 1


@pytest.mark.parametrize("number", ["9" * 400, "1e999", "NaN"], ids=["past-a-float", "inf", "nan"])
async def test_a_journal_whose_learned_durations_hold_odd_numbers_starts_cold(
    vidgo_fake: FakeVidgo, tmp_path: Path, number: str
) -> None:
    """Learned durations in the journal that no float holds are dropped (the run starts
    cold): a 400-digit one raised OverflowError out of convert_many."""
    journal = tmp_path / "wav.sqlite"
    async with _client(vidgo_fake) as client:
        await _collect(client, [("m", "a0")], journal=journal)
    summary = json.dumps({"version": 1, "seen": [[1, 2]]}).replace("[[", f"[[{number}, 1], [")
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        db.execute("INSERT OR REPLACE INTO learned VALUES ('convert-to-wav', ?)", (summary,))
    async with _client(vidgo_fake) as client:
        results = await _collect(client, [("m", "a1")], journal=journal)
    assert [r.ok for r in results] == [True]


@pytest.mark.parametrize("error", [asyncio.CancelledError, Abort], ids=["cancelled", "base"])
async def test_an_input_raising_what_is_no_exception_ends_the_batch(
    vidgo_fake: FakeVidgo, error: type[BaseException]
) -> None:
    """An async input that raises a CancelledError (it awaited a future its producer
    cancelled; the consumer is not cancelled) or another BaseException: the loop gets
    it after the pairs it paid for, as an Exception of the input, instead of waiting
    for ever (or losing those results)."""
    pairs = [("music", f"audio-{i}") for i in range(3)]
    for _, audio in pairs:  # still running when the input fails
        vidgo_fake.set_duration(audio, queue_time=0.0, run_time=1.0)

    async def source() -> AsyncIterator[tuple[str, str]]:
        for pair in pairs:
            yield pair
        await asyncio.sleep(0.2)  # their submits are accepted
        if error is asyncio.CancelledError:
            gone = asyncio.get_running_loop().create_future()
            gone.cancel()
            await gone
        raise error()

    results: list[ConversionResult] = []

    async def consume() -> None:
        async with _client(vidgo_fake) as client:
            async for result in client.convert_many(source(), timeout=10):
                results.append(result)

    consumer = asyncio.create_task(consume())
    done, _ = await asyncio.wait({consumer}, timeout=15)
    if not done:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    assert done, "the batch waited for ever"
    if error is asyncio.CancelledError:
        assert consumer.cancelled()
        if sys.version_info < (3, 11):  # it cannot be told from a cancel of the batch
            return
    else:
        assert isinstance(consumer.exception(), Abort)
    assert sorted(r.audio_id for r in results if r.ok) == [a for _, a in pairs]


@pytest.mark.parametrize("url", [None, "", "  "], ids=["null", "empty", "blank"])
async def test_a_finished_row_without_its_url_is_read_again_or_refused(
    vidgo_fake: FakeVidgo, tmp_path: Path, url: str | None
) -> None:
    """A journal row `finished` whose WAV URL was emptied by hand: a re-run reads its
    task once and reports the URL; one that lost its task id too is a
    ConfigurationError, nothing sent. (The first was neither ok nor an error, on
    every re-run; an empty URL was reported as a success.)"""
    journal = tmp_path / "wav.sqlite"
    pairs = [("m", "a0"), ("m", "a1")]
    async with _client(vidgo_fake) as client:
        first = {r.audio_id: r for r in await _collect(client, pairs, journal=journal)}
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        db.execute("UPDATE conversions SET wav_url = ?", (url,))
        db.execute("UPDATE conversions SET task_id = NULL WHERE audio_id = 'a1'")
    async with _client(vidgo_fake) as client:
        again = {r.audio_id: r for r in await _collect(client, pairs, journal=journal)}
    assert again["a0"].ok and again["a0"].wav_url == first["a0"].wav_url
    assert isinstance(again["a1"].error, ConfigurationError) and again["a1"].wav_url is None
    assert "delete the row" in str(again["a1"].error)
    assert vidgo_fake.accept_count == {"a0": 1, "a1": 1}


async def test_rows_edited_into_odd_values_are_read_again_or_refused(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Values SQLite lets an edit by hand store: a finished row's URL that is no URL (or
    a BLOB) has its task read again; an accepted row whose task id is blank is settled
    by the submit rule (it waited out the pair's timeout on reads refused locally,
    then said the task kept running); a failed row whose HTTP status is text is a
    ConfigurationError, nothing sent (a bare ValueError). No track is converted twice."""
    journal = tmp_path / "wav.sqlite"
    pairs = [("m", f"a{i}") for i in range(4)]
    async with _client(vidgo_fake) as client:
        first = {r.audio_id: r for r in await _collect(client, pairs, journal=journal)}
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        db.execute("UPDATE conversions SET wav_url = 'not a url' WHERE audio_id = 'a0'")
        db.execute("UPDATE conversions SET wav_url = x'00ff' WHERE audio_id = 'a1'")
        db.execute(
            "UPDATE conversions SET state = 'accepted', task_id = '  ', wav_url = NULL"
            " WHERE audio_id = 'a2'"
        )
        db.execute(
            "UPDATE conversions SET state = 'failed', error_type = 'ServerError',"
            " error_status = 'abc', wav_url = NULL WHERE audio_id = 'a3'"
        )
    started = time.monotonic()
    async with _client(vidgo_fake) as client:
        again = {r.audio_id: r for r in await _collect(client, pairs, journal=journal, timeout=20)}
    assert time.monotonic() - started < 10
    assert [again[a].wav_url for a in ("a0", "a1")] == [first[a].wav_url for a in ("a0", "a1")]
    assert again["a2"].ok or isinstance(again["a2"].error, SubmitOutcomeUnknownError)
    assert isinstance(again["a3"].error, ConfigurationError), again["a3"].error
    assert max(vidgo_fake.accept_count.values()) == 1


async def test_a_copy_into_a_file_another_download_writes_is_refused(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A journalled re-run into another folder copies the earlier run's file; while a
    download of that file is under way (another call, or process), the copy is refused
    (FileExistsError on the pair's result) and the download ends with its own file.
    (The copy took no part in the download's lock: it wrote into the ``.part`` the
    download was writing, and a file of both was reported ok.)"""
    journal, first_dir, second_dir = tmp_path / "wav.sqlite", tmp_path / "1", tmp_path / "2"
    first_dir.mkdir()
    second_dir.mkdir()
    async with _client(vidgo_fake) as client:
        [first] = await _collect(client, [("m", "a0")], journal=journal, download_to=first_dir)
        assert first.path is not None
        vidgo_fake.inject(Fault.stall(1.0), route="files")  # then retried
        downloading = asyncio.create_task(client.download(first.wav_url, second_dir / "a0.wav"))
        await asyncio.sleep(0.3)  # it holds the file; its first attempt stalls a second
        [again] = await _collect(client, [("m", "a0")], journal=journal, download_to=second_dir)
        path = await asyncio.wait_for(downloading, 10)
    assert isinstance(again.error, FileExistsError), again
    assert path.read_bytes() == first.path.read_bytes()
    assert sorted(p.name for p in second_dir.iterdir()) == ["a0.wav"]


async def test_a_batch_left_early_without_a_journal_names_each_task_it_paid_for(
    vidgo_fake: FakeVidgo, caplog: pytest.LogCaptureFixture
) -> None:
    """No journal, a loop left while accepted tasks run: a WARNING names each of them
    (and the pair), the one record of a paid task once its client is gone."""
    pairs = [("music", f"audio-{i}") for i in range(4)]
    vidgo_fake.set_duration("audio-0", run_time=0.0)
    for _, audio in pairs[1:]:
        vidgo_fake.set_duration(audio, queue_time=0.0, run_time=30)
    async with _client(vidgo_fake) as client:
        results = client.convert_many(pairs, concurrency=8)
        async with contextlib.aclosing(results):
            await anext(results)
            # Every submit answered first: one still unsent at the break would be
            # cancelled unpaid (under load), and name no task.
            while sum(vidgo_fake.accept_count.values()) < len(pairs):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    running = [vidgo_fake.accepted[audio][0] for _, audio in pairs[1:]]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for task_id, (source, audio) in zip(running, pairs[1:], strict=True):
        assert any(task_id in w and f"{source}/{audio}" in w for w in warnings), warnings


async def test_a_batch_whose_client_closes_without_a_journal_names_each_task_it_paid_for(
    vidgo_fake: FakeVidgo, caplog: pytest.LogCaptureFixture
) -> None:
    """No journal, the client closed while the loop pauses between results: a WARNING
    names each running task (and the pair); their results reach no loop."""
    pairs = [("music", f"audio-{i}") for i in range(4)]
    vidgo_fake.set_duration("audio-0", run_time=0.0)
    for _, audio in pairs[1:]:
        vidgo_fake.set_duration(audio, queue_time=0.0, run_time=30)
    client = _client(vidgo_fake)
    results = client.convert_many(pairs, concurrency=8)
    async with contextlib.aclosing(results):
        await anext(results)

        async def accepted() -> None:
            while sum(vidgo_fake.accept_count.values()) < len(pairs):  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        await asyncio.wait_for(accepted(), 10)
        await asyncio.wait_for(client.aclose(), 10)
    running = [vidgo_fake.accepted[audio][0] for _, audio in pairs[1:]]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for task_id, (source, audio) in zip(running, pairs[1:], strict=True):
        assert any(task_id in w and f"{source}/{audio}" in w for w in warnings), warnings


async def test_a_batch_left_during_its_downloads_without_a_journal_names_each_wav_url(
    vidgo_fake: FakeVidgo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No journal, the loop left while the finished tasks' WAVs download: a WARNING
    names each task and its WAV URL, paid for and not downloaded."""
    vidgo_fake.inject(Fault.stall(30), route="files", times=10)
    pairs = [("music", f"audio-{i}") for i in range(3)]
    async with _client(vidgo_fake) as client:
        results = client.convert_many(pairs, download_to=tmp_path)
        first = asyncio.create_task(anext(results))

        async def downloading() -> None:
            while vidgo_fake.request_count("files") < len(pairs):  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        await asyncio.wait_for(downloading(), 10)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(results.aclose(), 10)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for _, audio in pairs:
        task_id = vidgo_fake.accepted[audio][0]
        named = [w for w in warnings if task_id in w and "not downloaded" in w]
        assert named and f"/files/{task_id}" in named[0], warnings


async def test_progress_is_reported_for_each_result(vidgo_fake: FakeVidgo) -> None:
    """on_progress sees done counts rising to the number of results."""
    seen: list[BatchProgress] = []
    async with _client(vidgo_fake) as client:
        results = await _collect(
            client, [("m", f"a{i}") for i in range(12)], on_progress=seen.append
        )
    assert [p.done for p in seen] == list(range(1, 13))
    assert seen[-1].succeeded == sum(r.ok for r in results) == 12


async def test_a_progress_callback_that_raises_costs_no_result(
    vidgo_fake: FakeVidgo, caplog: pytest.LogCaptureFixture
) -> None:
    """An on_progress that raises is logged, as a failing on_event is: the batch goes
    on, and every pair it paid for is reported."""

    def broken(progress: BatchProgress) -> None:
        raise RuntimeError(f"bug in the caller at {progress.done}")

    pairs = [("m", f"a{i}") for i in range(10)]
    async with _client(vidgo_fake) as client:
        results = await _collect(client, pairs, concurrency=4, on_progress=broken)
    assert sorted(r.audio_id for r in results if r.ok) == sorted(a for _, a in pairs)
    assert sum("on_progress callback raised" in r.getMessage() for r in caplog.records) == 10


async def test_downloads_land_in_the_folder(vidgo_fake: FakeVidgo, tmp_path: Path) -> None:
    """download_to saves each WAV as <audio_id>.wav, complete and valid."""
    async with _client(vidgo_fake) as client:
        results = await _collect(client, [("m", "a1"), ("m", "a2")], download_to=tmp_path)
    for result in results:
        assert result.ok and result.path == tmp_path / f"{result.audio_id}.wav"
        data = result.path.read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert sorted(os.listdir(tmp_path)) == ["a1.wav", "a2.wav"]


async def test_submit_faults_are_survived_within_the_deadline(vidgo_fake: FakeVidgo) -> None:
    """5xx, 429 and resets before the request are retried; every pair converts once."""
    vidgo_fake.set_fault_rates(
        {"server_error": 0.2, "rate_limited": 0.1, "reset_before": 0.05},
        routes=("submit", "detail"),
    )
    async with _client(vidgo_fake) as client:
        results = await _collect(client, [("m", f"a{i}") for i in range(40)], timeout=20)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert max(vidgo_fake.accept_count.values()) == 1


async def test_reset_after_accept_is_reported_unknown(vidgo_fake: FakeVidgo) -> None:
    """A submit accepted but never answered ends as SubmitOutcomeUnknownError, not a resubmit."""
    vidgo_fake.inject(Fault.reset_after(), route="submit")
    async with _client(vidgo_fake) as client:
        results = await _collect(client, [("m", "a1")])
    assert isinstance(results[0].error, SubmitOutcomeUnknownError)
    assert vidgo_fake.accept_count["a1"] == 1


async def test_rerun_with_journal_sends_nothing_for_finished_pairs(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A second run with the same journal reports finished pairs without a request."""
    journal = tmp_path / "wav.sqlite"
    pairs = [("m", f"a{i}") for i in range(5)]
    async with _client(vidgo_fake) as client:
        first = await _collect(client, pairs, journal=journal)
        vidgo_fake.reset_log()
        second = await _collect(client, pairs, journal=journal)
    assert {r.audio_id: r.wav_url for r in first} == {r.audio_id: r.wav_url for r in second}
    assert vidgo_fake.requests == []


async def test_rerun_resumes_waiting_on_accepted_tasks(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Pairs accepted but unfinished when a run stopped are waited on, not resubmitted."""
    journal = tmp_path / "wav.sqlite"
    vidgo_fake.set_duration("slow", run_time=0.6)
    async with _client(vidgo_fake) as client:
        first = await _collect(client, [("m", "slow")], journal=journal, timeout=0.2)
        second = await _collect(client, [("m", "slow")], journal=journal, timeout=5)
    assert first[0].task_id == second[0].task_id and second[0].ok
    assert vidgo_fake.request_count("submit") == 1


_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from vidgo_async import PollPolicy, RetryPolicy, VidgoClient

    async def main(url, journal, out, count):
        async with VidgoClient("test-key", base_url=url, max_polls_per_second=5000,
                               poll=PollPolicy(initial=0.02, max_interval=0.05),
                               retry=RetryPolicy(base_delay=0.001, max_delay=0.01)) as client:
            pairs = [("music", f"audio-{i}") for i in range(count)]
            with open(out, "a") as stream:
                async for r in client.convert_many(pairs, concurrency=16, journal=journal):
                    stream.write(json.dumps([r.audio_id, r.ok, r.task_id]) + "\\n")
                    stream.flush()

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
    """
)


async def _run_worker(args: list[str], kill_after_lines: int | None, out: Path) -> int:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", _WORKER, *args)
    try:
        if kill_after_lines is not None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and process.returncode is None:
                if out.exists() and len(out.read_text().splitlines()) >= kill_after_lines:
                    process.send_signal(signal.SIGKILL)
                    break
                await asyncio.sleep(0.005)
        return await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
async def test_sigkill_mid_batch_then_rerun_converts_each_track_once(tmp_path: Path) -> None:
    """Killed with SIGKILL mid-run and run again: one result per pair, no track accepted twice."""
    count = 150
    journal, first_out, second_out = (
        tmp_path / "j.sqlite",
        tmp_path / "1.jsonl",
        tmp_path / "2.jsonl",
    )
    async with FakeVidgo(run_time=0.3, conflict_includes_task_id=False) as fake:
        args = [fake.url, str(journal), str(first_out), str(count)]
        code = await _run_worker(args, kill_after_lines=30, out=first_out)
        assert code == -signal.SIGKILL
        assert len(first_out.read_text().splitlines()) < count
        args[2] = str(second_out)
        assert await _run_worker(args, kill_after_lines=None, out=second_out) == 0
        accepted = fake.accept_count
    rows = [json.loads(line) for line in second_out.read_text().splitlines()]
    assert sorted(audio for audio, _, _ in rows) == sorted(f"audio-{i}" for i in range(count))
    assert max(accepted.values()) == 1
    assert (
        sum(ok for _, ok, _ in rows) >= count - 16
    )  # only submits in flight at the kill may be unknown


async def test_a_slow_task_does_not_hold_up_the_pairs_behind_it(vidgo_fake: FakeVidgo) -> None:
    """With one worker, a task still running is left to wait while later pairs go ahead."""
    vidgo_fake.set_duration("slow", queue_time=0.0, run_time=0.5)
    quick = [f"quick-{i}" for i in range(5)]
    for audio in quick:
        vidgo_fake.set_duration(audio, queue_time=0.0, run_time=0.0)
    async with _client(vidgo_fake) as client:
        results = await _collect(client, [("m", "slow"), *(("m", a) for a in quick)], concurrency=1)
    assert sorted(r.audio_id for r in results[:-1]) == quick
    assert results[-1].audio_id == "slow"
    assert all(r.ok for r in results)


async def test_quick_tasks_keep_requests_within_concurrency(make_fake: MakeFake) -> None:
    """Tasks done at their first check never put more than ``concurrency`` requests in flight."""
    fake = await make_fake(queue_time=0.0, run_time=0.0)
    in_flight = peak = 0

    async def started(*_: object) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)

    async def ended(*_: object) -> None:
        nonlocal in_flight
        in_flight -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(ended)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = VidgoClient(
            fake.api_key,
            base_url=fake.url,
            session=session,
            poll=PollPolicy(initial=0.0),
            max_polls_per_second=1e6,
        )
        async with client:
            results = await _collect(client, [("m", f"a{i}") for i in range(200)], concurrency=4)
    assert len(results) == 200 and all(r.ok for r in results)
    assert 1 <= peak <= 4


async def test_an_async_generator_feeds_many_workers(vidgo_fake: FakeVidgo) -> None:
    """Workers take turns reading an async generator, which allows one reader at a time."""

    async def pairs() -> AsyncIterator[tuple[str, str]]:
        for i in range(60):
            await asyncio.sleep(0)  # hand the loop to the other workers mid-read
            yield ("m", f"a{i}")

    async with _client(vidgo_fake) as client:
        results = await _collect(client, pairs(), concurrency=16)
    assert sorted(r.audio_id for r in results) == sorted(f"a{i}" for i in range(60))
    assert all(r.ok for r in results)


async def test_a_low_poll_cap_bounds_submits_by_what_it_can_serve(make_fake: MakeFake) -> None:
    """Polls waiting for the rate cap hold back no submit, up to the tasks the cap can
    poll once per max_interval (2/s x 5 s = 10): more would be paid for and time out."""
    fake = await make_fake(queue_time=0.0, run_time=1.0)
    first_check_at_once = PollPolicy(initial=0.0, factor=1.5, max_interval=5.0)
    async with VidgoClient(
        fake.api_key,
        base_url=fake.url,
        poll=first_check_at_once,
        retry=FAST_RETRY,
        max_polls_per_second=2,
    ) as client:
        batch = client.convert_many([("m", f"a{i}") for i in range(20)], concurrency=2)
        consumer = asyncio.create_task(_collect_from(batch))
        await asyncio.sleep(0.6)
        submits = sum(r.route == "submit" for r in fake.requests)
        polls = sum(r.route == "detail" for r in fake.requests)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await batch.aclose()
    assert submits == 10  # as many as the cap can serve, while the first polls still queue
    assert polls <= 2 + 2  # the cap: 2 a second, plus the window just begun


async def test_a_check_due_at_its_deadline_takes_no_poll_slot(make_fake: MakeFake) -> None:
    """A parked check that comes due at its pair's deadline ends the wait without
    using up a slot under max_polls_per_second: the client's next read gets it."""
    fake = await make_fake(queue_time=0.0, run_time=30.0)
    async with VidgoClient(
        fake.api_key, base_url=fake.url, retry=FAST_RETRY, max_polls_per_second=2
    ) as client:
        # The last read before the deadline takes one slot of this second.
        (late,) = await _collect(client, [("m", "a1")], timeout=0.1)
        assert isinstance(late.error, TaskTimeoutError)
        assert late.task_id is not None
        started = time.monotonic()
        await client.get_task(late.task_id)  # the second slot of the same second
        elapsed = time.monotonic() - started
    assert fake.request_count("detail") == 2
    assert elapsed < 0.5, f"the read waited {elapsed:.2f}s for a slot"


async def _collect_from(batch: AsyncIterator[ConversionResult]) -> list[ConversionResult]:
    return [result async for result in batch]


async def test_tasks_done_at_once_are_checked_at_once(make_fake: MakeFake) -> None:
    """With ``PollPolicy(initial=0)`` (the documented setting for instant tasks) each task
    is checked right after its submit: one check each, the batch done long before a pause."""
    fake = await make_fake(queue_time=0.0, run_time=0.0)
    async with VidgoClient(
        fake.api_key,
        base_url=fake.url,
        poll=PollPolicy(initial=0.0, max_interval=60.0),
        retry=FAST_RETRY,
        max_polls_per_second=1e6,
    ) as client:
        pairs = [("m", f"a{i}") for i in range(40)]
        results = await asyncio.wait_for(_collect(client, pairs, concurrency=8), 10)
    assert len(results) == 40 and all(r.ok for r in results)
    assert sum(r.route == "detail" for r in fake.requests) == 40  # one check each


async def test_tasks_are_first_checked_after_the_policys_first_pause(make_fake: MakeFake) -> None:
    """No task is checked before the policy's first pause: a task that runs for a while
    costs no wasted early request."""
    fake = await make_fake(queue_time=0.0, run_time=0.4)
    submitted: dict[str, float] = {}
    first_poll: dict[str, float] = {}

    def record(event: Event) -> None:
        assert event.task_id is not None
        if event.kind == "submit":
            submitted[event.task_id] = time.monotonic()
        elif event.kind == "poll":
            first_poll.setdefault(event.task_id, time.monotonic())

    policy = PollPolicy(initial=0.2, factor=1.5, max_interval=0.2, jitter=0.0)
    async with VidgoClient(
        fake.api_key, base_url=fake.url, poll=policy, retry=FAST_RETRY, on_event=record
    ) as client:
        results = await _collect(client, [("m", f"a{i}") for i in range(8)], concurrency=2)
    assert all(r.ok for r in results)
    gaps = sorted(first_poll[task] - submitted[task] for task in submitted)
    assert all(gap >= 0.19 for gap in gaps)


@pytest.mark.parametrize("kind", ["iterator", "async generator"])
async def test_an_input_that_fails_ends_the_batch_with_its_error(
    vidgo_fake: FakeVidgo, kind: str
) -> None:
    """The input's own error reaches the consumer, after the results of the pairs read
    before it: they were submitted (and paid for), so they are waited on and reported."""

    def plain() -> Iterator[tuple[str, str]]:
        yield ("m", "a0")
        yield ("m", "a1")
        raise OSError("the input file went away")

    async def streamed() -> AsyncIterator[tuple[str, str]]:
        for pair in plain():
            yield pair

    before = asyncio.all_tasks()
    seen: list[ConversionResult] = []

    async def consume(client: VidgoClient) -> None:
        pairs = plain() if kind == "iterator" else streamed()
        async for result in client.convert_many(pairs, concurrency=4):
            seen.append(result)

    async with _client(vidgo_fake) as client:
        with pytest.raises(OSError, match="went away"):
            await consume(client)
        await asyncio.sleep(0)
        assert _client_tasks(asyncio.all_tasks() - before) == []
    assert sorted(r.audio_id for r in seen) == ["a0", "a1"]
    assert all(r.ok for r in seen)


async def test_an_input_that_waits_for_results_does_not_deadlock(vidgo_fake: FakeVidgo) -> None:
    """An async input that yields more pairs only as results come back still gets them:
    a worker waiting on the input holds up no check of the pairs already submitted."""
    results_seen: asyncio.Queue[None] = asyncio.Queue()

    async def pairs() -> AsyncIterator[tuple[str, str]]:
        for i in range(6):
            yield ("m", f"a{i}")
            if i % 2 == 1:
                await results_seen.get()

    async def consume(client: VidgoClient) -> int:
        count = 0
        async for _ in client.convert_many(pairs(), concurrency=4, max_waiting=4):
            count += 1
            results_seen.put_nowait(None)
        return count

    async with _client(vidgo_fake) as client:
        assert await asyncio.wait_for(consume(client), 10) == 6


@pytest.mark.parametrize("kind", ["async generator", "list with malformed pairs"])
async def test_pairs_in_flight_stay_within_the_bound(make_fake: MakeFake, kind: str) -> None:
    """Never more than ``concurrency + max_waiting`` pairs in flight, however the input comes."""
    fake = await make_fake(queue_time=0.0, run_time=0.3)
    plain: list[object] = []
    for i in range(24):
        plain.append(("m", f"a{i}"))
        if kind != "async generator" and i % 3 == 0:
            plain.append(("m",))  # answered at once, while other workers read on

    async def streamed() -> AsyncIterator[object]:
        for pair in plain:
            await asyncio.sleep(0.002)
            yield pair

    peak = 0

    def record(progress: BatchProgress) -> None:
        nonlocal peak
        peak = max(peak, progress.in_flight)

    async with _client(fake) as client:
        pairs = streamed() if kind == "async generator" else plain
        results = await _collect(client, pairs, concurrency=3, max_waiting=1, on_progress=record)
    assert sum(r.ok for r in results) == 24
    assert peak <= 3 + 1


async def test_a_poll_backing_off_holds_up_no_other_pair(make_fake: MakeFake) -> None:
    """One worker, and one check answered 503 with Retry-After 2: only that pair waits."""
    vidgo_fake = await make_fake(queue_time=0.0, run_time=0.1)
    retry = RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=2.0)
    policy = PollPolicy(initial=0.05, factor=1.5, max_interval=0.2)
    arrivals: list[float] = []
    async with VidgoClient(
        vidgo_fake.api_key,
        base_url=vidgo_fake.url,
        poll=policy,
        retry=retry,
        max_polls_per_second=5000.0,
    ) as client:
        batch = client.convert_many([("m", f"a{i}") for i in range(5)], concurrency=1)
        started = time.monotonic()
        first = await batch.__anext__()  # every pair is submitted and parked by now
        vidgo_fake.inject(
            Fault.http_error(503, {"code": 503, "message": "busy"}, {"Retry-After": "2"}),
            route="detail",
            times=1,
        )
        async for result in batch:
            assert result.ok
            arrivals.append(time.monotonic() - started)
    assert first.ok and len(arrivals) == 4
    assert sorted(arrivals)[2] < 1.0  # three of the four came long before the back-off ended


async def test_a_slow_consumer_does_not_make_finished_pairs_time_out(
    make_fake: MakeFake,
) -> None:
    """A consumer that dawdles slows the intake; pairs already submitted still finish."""
    fake = await make_fake(queue_time=0.0, run_time=0.1)
    async with _client(fake) as client:
        outcomes = []
        async for result in client.convert_many(
            [("m", f"a{i}") for i in range(12)], concurrency=2, max_waiting=10, timeout=1.0
        ):
            outcomes.append(result.ok)
            await asyncio.sleep(0.2)  # work done per result
    assert outcomes == [True] * 12


async def test_a_slow_consumer_slows_the_intake(make_fake: MakeFake) -> None:
    """A pair keeps its place in flight until its result is handed over, so input is
    read no further ahead than the bound while the consumer dawdles."""
    fake = await make_fake(queue_time=0.0, run_time=0.02)
    read = 0

    async def pairs() -> AsyncIterator[tuple[str, str]]:
        nonlocal read
        for i in range(200):
            await asyncio.sleep(0.03)  # slower than the tasks
            read += 1
            yield ("m", f"a{i}")

    async with _client(fake) as client:
        batch = client.convert_many(pairs(), concurrency=1, max_waiting=1)
        assert (await batch.__anext__()).ok
        await asyncio.sleep(1.5)  # the consumer is busy
        await batch.aclose()
    assert read <= 1 + 2 + 2  # taken + in flight + the result queue


async def test_a_rerun_fails_soon_on_a_task_the_server_no_longer_knows(
    make_fake: MakeFake, tmp_path: Path
) -> None:
    """A task accepted by an earlier run that answers 404 for longer than a task just
    created may go unshown (``PollPolicy.unseen_grace``: 30 s; 0.5 here) is reported
    NotFoundError, not waited on to the deadline. Its row stays accepted: the paid
    task may show again."""
    journal = tmp_path / "wav.sqlite"
    first = await make_fake(queue_time=0.0, run_time=100.0)
    async with _client(first) as client:
        (left,) = await _collect(client, [("m", "a1")], journal=journal, timeout=0.2)
    assert isinstance(left.error, TaskTimeoutError)
    forgetful = await make_fake(queue_time=0.0, run_time=0.0)  # knows no earlier task
    poll = attrs.evolve(FAST_POLL, unseen_grace=0.5)
    async with VidgoClient(forgetful.api_key, base_url=forgetful.url, poll=poll) as client:
        (again,) = await asyncio.wait_for(
            _collect(client, [("m", "a1")], journal=journal, timeout=None), 5
        )
    assert isinstance(again.error, NotFoundError)
    assert _journal_states(journal) == {"accepted": 1}


async def test_no_request_goes_out_after_the_client_is_closed(vidgo_fake: FakeVidgo) -> None:
    """Closing the client mid-batch stops its checks; no new session is opened. The
    pair being waited on is reported with its task, then the loop ends with
    ClientClosedError."""
    vidgo_fake.set_duration("slow", queue_time=0.0, run_time=5.0)
    async with _client(vidgo_fake) as client:
        batch = client.convert_many([("m", "quick"), ("m", "slow")], concurrency=2)
        assert (await batch.__anext__()).audio_id == "quick"
        await client.aclose()
        seen = len(vidgo_fake.requests)
        slow = await batch.__anext__()
        with pytest.raises(ClientClosedError):
            await batch.__anext__()
    assert not slow.ok
    assert slow.task_id is not None
    assert len(vidgo_fake.requests) == seen


async def test_a_visibility_lag_shorter_than_the_first_pause_costs_nothing(
    make_fake: MakeFake,
) -> None:
    """Tasks not visible for a while after their submit cost no "not found" read
    when the first pause outlasts the lag."""
    fake = await make_fake(queue_time=0.0, run_time=0.3)
    fake.visibility_lag = 0.2
    policy = PollPolicy(initial=0.3, factor=1.5, max_interval=0.4)
    async with VidgoClient(
        fake.api_key, base_url=fake.url, poll=policy, retry=FAST_RETRY
    ) as client:
        results = await _collect(client, [("m", f"a{i}") for i in range(10)], concurrency=1)
    assert all(r.ok for r in results)
    assert sum(r.route == "detail" and r.status == 404 for r in fake.requests) == 0


async def test_downloads_of_ids_that_clean_up_alike_do_not_collide(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Ids that map to the same safe file name still get a file each."""
    ids = ["a b", "a_b", "a:b"]
    async with _client(vidgo_fake) as client:
        results = await _collect(client, [("m", i) for i in ids], download_to=tmp_path)
    assert all(r.ok for r in results)
    assert len({r.path for r in results}) == 3
    assert len(list(tmp_path.glob("*.wav"))) == 3


# ---------------------------------------------------------------- the journal fails at the end


class _FailingJournal:
    """A JournalSource: the real SQLite journal, whose write of ``audio_id`` in ``state``
    (by default: settling it as finished) fails with ``error`` (a locked database, a
    full disk, a claim another worker took)."""

    def __init__(
        self, path: Path, audio_id: str, error: Exception, state: str = "finished"
    ) -> None:
        self.path, self.audio_id, self.error, self.state = path, audio_id, error, state

    async def open_batch_journal(self) -> object:
        from vidgo_async._batch.journal import Entry, State
        from vidgo_async._batch.journals import SqliteJournal

        journal = await SqliteJournal.open(self.path)
        write = journal.journal.record  # the SQLite file's own write, failing for one row

        def record(source_task_id: str, audio_id: str, entry: Entry) -> None:
            if audio_id == self.audio_id and entry.state is State(self.state):
                raise self.error
            write(source_task_id, audio_id, entry)

        journal.journal.record = record  # type: ignore[method-assign]
        return journal


class _RecheckFails:
    """A JournalSource: the SQLite journal, except that another worker holds ``a1`` and
    looking at it again fails (as a bug would: the shared journal logs its own
    database's failures and answers "still held")."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def open_batch_journal(self) -> object:
        from vidgo_async._batch.journals import SqliteJournal

        journal = await SqliteJournal.open(self.path)
        claim = journal.claim

        async def held_by_another(source_task_id: str, audio_id: str) -> object:
            return (False, None) if audio_id == "a1" else await claim(source_task_id, audio_id)

        async def recheck(keys: object) -> object:
            raise RuntimeError("a bug looking at the pairs")

        journal.claim = held_by_another  # type: ignore[method-assign, assignment]
        journal.recheck = recheck  # type: ignore[method-assign, assignment]
        return journal


async def test_a_journal_failing_to_look_at_other_workers_pairs_ends_the_batch(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """The batch's own pairs are reported, then the failure ends the loop: it never
    waits forever for an end that was not queued."""
    journal = _RecheckFails(tmp_path / "wav.sqlite")
    seen: list[ConversionResult] = []

    async def consume(client: VidgoClient) -> None:
        async for result in client.convert_many([("m", "a0"), ("m", "a1")], journal=journal):
            seen.append(result)

    async with _client(vidgo_fake) as client:
        with pytest.raises(RuntimeError, match="a bug"):
            await asyncio.wait_for(consume(client), 10)
    assert [r.audio_id for r in seen] == ["a0"]


async def test_a_journal_write_that_fails_at_the_end_costs_no_result(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """The journal failing to settle one pair (a locked database) neither ends the batch
    nor loses that pair's result: it is reported, and a re-run polls its task again."""

    pairs = [("m", f"a{i}") for i in range(6)]
    journal = _FailingJournal(tmp_path / "wav.sqlite", "a1", sqlite3.OperationalError("locked"))
    async with _client(vidgo_fake) as client:
        results = await _collect(client, pairs, journal=journal)
    assert sorted((r.audio_id, r.ok) for r in results) == [(a, True) for _, a in pairs]


async def test_a_journal_write_that_fails_after_the_acceptance_keeps_the_task(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """The journal failing to record an accepted task (a full disk) loses neither the
    paid task nor its result: the pair is still waited on and reported with its URL."""

    pairs = [("m", f"a{i}") for i in range(4)]
    full = sqlite3.OperationalError("database or disk is full")
    journal = _FailingJournal(tmp_path / "wav.sqlite", "a2", full, state="accepted")
    async with _client(vidgo_fake) as client:
        results = await _collect(client, pairs, journal=journal)
    assert sorted((r.audio_id, r.ok) for r in results) == [(a, True) for _, a in pairs]
    failed_write = next(r for r in results if r.audio_id == "a2")
    assert failed_write.task_id is not None and failed_write.wav_url is not None
    assert len(vidgo_fake.requests_to("submit")) == 4


async def test_a_pair_lost_to_another_worker_is_not_reported_by_a_repeat_read_meanwhile(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A pair read twice whose claim is lost as its result is settled is reported by
    neither occurrence here: it is the other worker's to report."""
    from vidgo_async._batch.journal import LostClaim

    async def pairs() -> AsyncIterator[tuple[str, str]]:
        yield ("m", "a0")
        yield ("m", "a1")
        await asyncio.sleep(0.5)  # a1's result is in, waiting for the busy consumer
        yield ("m", "a1")

    journal = _FailingJournal(tmp_path / "wav.sqlite", "a1", LostClaim("taken over"))
    reported = []
    async with _client(vidgo_fake) as client:
        async for result in client.convert_many(pairs(), journal=journal):
            reported.append(result.audio_id)
            if result.audio_id == "a0":
                await asyncio.sleep(1.0)  # busy with the first result
    assert reported == ["a0"]


async def test_a_sqlite_journal_serves_one_batch_at_a_time(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A batch on a SQLite journal another process's batch is using is refused when it
    starts, before any request: two would both submit every pair, and one could
    overwrite the other's finished rows. Readers of the journal are not held back."""

    vidgo_fake.set_duration("slow", run_time=60)
    journal = tmp_path / "wav.sqlite"
    (tmp_path / "pairs.csv").write_text("task_id,audio_id\nm,slow\n")
    other = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vidgo_async",
        "batch",
        str(tmp_path / "pairs.csv"),
        "--journal",
        str(journal),
        "--max-polls-per-second",
        "500",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "VIDGO_API_KEY": vidgo_fake.api_key, "VIDGO_BASE_URL": vidgo_fake.url},
    )
    try:

        async def accepted() -> None:
            while vidgo_fake.accept_count["slow"] == 0:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.05)

        await asyncio.wait_for(accepted(), 20)
        with contextlib.closing(sqlite3.connect(journal)) as reader:  # a reader is welcome
            assert reader.execute("SELECT state FROM conversions").fetchall() == [("accepted",)]
        async with _client(vidgo_fake) as client:
            with pytest.raises(ConfigurationError, match="in use by another batch") as raised:
                await _collect(client, [("m", "a1")], journal=journal)
        assert "aclosing" not in str(raised.value)  # no advice on another program's loop
        assert vidgo_fake.request_count("submit") == 1
    finally:
        other.kill()
        await other.wait()
    async with _client(vidgo_fake) as client:  # the dead process's lock went with it
        results = await _collect(client, [("m", "a1")], journal=journal)
    assert [r.ok for r in results] == [True]


async def test_a_batch_left_with_break_lets_the_next_one_use_its_journal(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A loop left with ``break`` closes its batch on the loop's next turns: a batch
    started right after on the same journal waits for that, rather than being refused."""
    journal = tmp_path / "wav.sqlite"
    async with _client(vidgo_fake) as client:
        async for _ in client.convert_many([("m", "a0"), ("m", "a1")], journal=journal):
            break
        results = await _collect(client, [("m", "a2")], journal=journal)
    assert [r.ok for r in results] == [True]


_OLD_TABLE = """CREATE TABLE conversions (source_task_id TEXT NOT NULL, audio_id TEXT NOT NULL,
  state TEXT NOT NULL, task_id TEXT, wav_url TEXT, path TEXT, error_type TEXT, error TEXT,
  updated_at REAL NOT NULL, PRIMARY KEY (source_task_id, audio_id))"""


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        pytest.param([_OLD_TABLE], "error_status", id="another-shape"),
        pytest.param(
            [
                _OLD_TABLE.replace("error TEXT,", "error TEXT, error_status INTEGER,"),
                "INSERT INTO conversions VALUES ('m', 'a0', 'settled', 't', NULL, NULL,"
                " NULL, NULL, NULL, 0)",
            ],
            "settled",
            id="a-state-unknown-here",
        ),
    ],
)
async def test_a_journal_this_version_cannot_read_is_refused_at_the_call(
    vidgo_fake: FakeVidgo, tmp_path: Path, rows: list[str], needle: str
) -> None:
    """A journal of another shape or with states unknown here (another tool's, another
    version's) is a ConfigurationError at the call naming what is wrong; it failed
    every pair, one traceback each."""

    path = tmp_path / "wav.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        for row in rows:
            db.execute(row)
        db.commit()
    async with _client(vidgo_fake) as client:
        with pytest.raises(ConfigurationError, match=needle):
            client.convert_many([("m", "a0"), ("m", "a1")], journal=path)
    assert vidgo_fake.requests == []


async def test_a_stopped_batch_starts_no_new_attempt_of_a_submit(
    vidgo_fake: FakeVidgo,
) -> None:
    """The loop is left while a pair's submit pauses after a refusal (503): the batch
    lets attempts in flight be answered, but starts no new one (it went out during the
    grace, paid for, and its task was dropped unreported)."""
    maintenance = {"code": 503, "message": "maintenance"}
    vidgo_fake.inject(Fault.http_error(503, maintenance, {"Retry-After": "1"}), route="submit")
    retry = RetryPolicy(base_delay=0.01, max_delay=0.01, max_retry_after=1.0)  # a 1 s pause
    async with VidgoClient(
        vidgo_fake.api_key, base_url=vidgo_fake.url, poll=FAST_POLL, retry=retry
    ) as client:

        async def consume() -> None:
            async for _ in client.convert_many([("m", "a0")]):
                pass

        consumer = asyncio.create_task(consume())
        while vidgo_fake.request_count("submit") == 0:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(consumer, 10)
        await asyncio.sleep(1.2)  # past the pause
    assert vidgo_fake.request_count("submit") == 1
    assert vidgo_fake.accept_count["a0"] == 0


async def test_a_client_closed_while_a_submit_pauses_after_an_unclear_attempt_leaves_it_to_a_rerun(
    make_fake: MakeFake, tmp_path: Path
) -> None:
    """The first attempt was processed, then its connection reset; the client closes
    during the pause before the retry. The journal says "submitting" (a re-run settles
    it by the 409 rule), not "unknown" (which no re-run would ever submit again)."""
    fake = await make_fake(conflict_includes_task_id=True)
    # Pauses are jittered from 0 s: should one retry come before the close, it fares alike.
    fake.inject(Fault.reset_after(), route="submit", times=3)
    journal = tmp_path / "wav.sqlite"
    retry = RetryPolicy(base_delay=1.0, max_delay=1.0, max_retry_after=1.0)
    client = VidgoClient(fake.api_key, base_url=fake.url, poll=FAST_POLL, retry=retry)

    async def consume() -> None:
        async for _ in client.convert_many([("m", "a0")], journal=journal):
            pass

    consumer = asyncio.create_task(consume())
    while fake.accept_count["a0"] == 0:  # noqa: ASYNC110 - no event to wait on
        await asyncio.sleep(0.01)
    await asyncio.wait_for(client.aclose(), 10)
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(consumer, 10)
    with contextlib.closing(sqlite3.connect(journal)) as db:
        assert db.execute("SELECT state FROM conversions").fetchall() == [("submitting",)]
    async with _client(fake) as again:
        [result] = await _collect(again, [("m", "a0")], journal=journal)
    assert result.ok, result.error
    assert fake.accept_count["a0"] == 1


async def test_a_journal_of_another_api_is_refused_before_any_request(
    make_fake: MakeFake, tmp_path: Path
) -> None:
    """A journal written against the fake (say, trying the CLI) holds pairs and tasks
    the real API knows nothing of: against another host it is refused at the first
    iteration, rather than reporting the fake's URLs as converted. A fake on another
    port of this machine (a re-run, restarted) may use it."""
    journal = tmp_path / "wav.sqlite"
    first, again = await make_fake(), await make_fake()
    async with _client(first) as client:
        [result] = await _collect(client, [("m", "a0")], journal=journal)
    assert result.ok
    async with _client(again) as client:
        [repeat] = await _collect(client, [("m", "a0")], journal=journal)
    assert repeat.wav_url == result.wav_url and again.requests == []
    async with VidgoClient("k", base_url="https://api.vidgo.invalid") as client:
        batch = client.convert_many([("m", "a0")], journal=journal)
        with pytest.raises(ConfigurationError, match=r"this machine, not api\.vidgo\.invalid"):
            await batch.__anext__()
    async with _client(again) as client:  # the journal was left as it was, and free
        [repeat] = await _collect(client, [("m", "a0")], journal=journal)
    assert repeat.ok


async def test_a_journal_in_a_missing_folder_is_refused_at_the_call_naming_it(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """As the CLI's --journal: the missing folder is named (SQLite said only "unable to
    open database file"), before any request, and nothing is created."""
    async with _client(vidgo_fake) as client:
        with pytest.raises(ConfigurationError, match="does not exist") as info:
            client.convert_many([("m", "a0")], journal=tmp_path / "nodir" / "wav.sqlite")
    assert str(tmp_path / "nodir") in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert vidgo_fake.requests == []


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql+asyncpg://app:SECRET-PW@db.example/app",
        "postgresl://app:SECRET-PW@db.example/app",
        "host=db.example dbname=app user=app password=SECRET-PW",
    ],
    ids=["sqlalchemy-scheme", "misspelt-scheme", "libpq-keywords"],
)
async def test_a_connection_string_of_another_form_is_refused_without_quoting_it(
    vidgo_fake: FakeVidgo, tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal given as a connection string that is not a postgresql:// URL is refused
    at the call, its password repeated nowhere (it was quoted in the error, or taken for
    a SQLite file named after it, password included)."""
    monkeypatch.chdir(tmp_path)
    async with _client(vidgo_fake) as client:
        with pytest.raises(ConfigurationError) as info:
            client.convert_many([("m", "a0")], journal=dsn)
    assert "SECRET-PW" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert vidgo_fake.requests == []


@pytest.mark.parametrize("state", ["submitting", "rejected"])
async def test_a_journal_write_failing_around_a_submit_is_a_vidgo_error(
    vidgo_fake: FakeVidgo, tmp_path: Path, state: str
) -> None:
    """The journal failing to record a submit before it goes out (nothing is sent) or
    a failed submit (the submit's own error stands) gives the pair a VidgoError result,
    not an internal error (it was one, with an ERROR traceback)."""

    if state == "rejected":
        vidgo_fake.inject(Fault.http_error(400), route="submit", times=100)
    full = sqlite3.OperationalError("database or disk is full")
    journal = _FailingJournal(tmp_path / "wav.sqlite", "a1", full, state=state)
    async with _client(vidgo_fake) as client:
        results = await _collect(client, [("m", "a0"), ("m", "a1")], journal=journal)
    failed = next(r for r in results if r.audio_id == "a1")
    assert isinstance(failed.error, VidgoError), repr(failed.error)
    if state == "submitting":
        assert vidgo_fake.accept_count["a1"] == 0
        assert "nothing was sent" in str(failed.error)


@pytest.mark.parametrize("status", [400, 404, 422, 409])
async def test_a_submit_rejected_for_the_pair_is_submitted_again_by_a_rerun(
    vidgo_fake: FakeVidgo, tmp_path: Path, status: int
) -> None:
    """A submit the server rejected for the pair itself (400, 404, 422: nothing accepted,
    nothing paid) is reported, and the next run with the journal submits it again (the
    cause may be gone: a parent task not shown yet); the journal answered every re-run
    with the old error, sending nothing. A 409 stays final: the track was converted."""
    vidgo_fake.inject(Fault.http_error(status), route="submit")
    journal = tmp_path / "wav.sqlite"
    async with _client(vidgo_fake) as client:
        [first] = await _collect(client, [("m", "a1")], journal=journal)
        [again] = await _collect(client, [("m", "a1")], journal=journal)
        [third] = await _collect(client, [("m", "a1")], journal=journal)
    assert isinstance(first.error, APIError) and first.error.status == status
    if status == 409:  # the track was converted: every run reports it from the journal
        for later in (again, third):
            assert isinstance(later.error, APIError) and later.error.status == 409, later
        assert vidgo_fake.request_count("submit") == 1
        return
    assert again.ok and third.ok, (again.error, third.error)
    assert vidgo_fake.request_count("submit") == 2  # the third run answered from the journal
    assert vidgo_fake.accept_count["a1"] == 1


async def test_a_rerun_into_another_folder_puts_each_wav_there(
    vidgo_fake: FakeVidgo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run with the journal but another `download_to` (or from another working
    directory) puts each WAV in its own folder, copying the earlier run's file, and
    says so: it reported the earlier run's (relative) paths, and the folder stayed empty."""
    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "wav.sqlite"
    async with _client(vidgo_fake) as client:
        first = await _collect(client, [("m", "a1")], journal=journal, download_to="wavs")
        monkeypatch.chdir(tmp_path / "wavs")  # a relative folder means another one now
        again = await _collect(client, [("m", "a1")], journal=journal, download_to="wavs")
    assert first[0].path is not None and again[0].path is not None
    moved = tmp_path / "wavs" / "wavs" / "a1.wav"
    assert again[0].path == moved and moved.read_bytes() == (tmp_path / "wavs/a1.wav").read_bytes()
    assert vidgo_fake.request_count("submit") == 1


async def test_a_copy_into_another_folder_that_fails_leaves_the_journal_as_it_was(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A re-run whose copy of the earlier file cannot be made reports the error, and the
    journal still names the earlier file: a run into the first folder reports it."""
    journal = tmp_path / "wav.sqlite"
    (tmp_path / "other" / "a1.wav").mkdir(parents=True)  # no file can take its place
    async with _client(vidgo_fake) as client:
        [first] = await _collect(client, [("m", "a1")], journal=journal, download_to=tmp_path)
        [moved] = await _collect(
            client, [("m", "a1")], journal=journal, download_to=tmp_path / "other"
        )
        [back] = await _collect(client, [("m", "a1")], journal=journal, download_to=tmp_path)
    assert isinstance(moved.error, OSError), moved
    assert not (tmp_path / "other" / "a1.wav.part").exists()  # nothing half-made is left
    assert back.ok and back.path == first.path == tmp_path / "a1.wav"
    assert vidgo_fake.request_count("files") == 1


@pytest.mark.parametrize("status", [401, 402, 503])
async def test_a_pair_caught_mid_submit_keeps_its_409_rule_through_a_refused_rerun(
    make_fake: MakeFake, tmp_path: Path, status: int
) -> None:
    """A run killed while its submit was accepted leaves the pair `submitting`. A re-run
    whose submits are refused (a wrong key, no credits, an outage until its deadline)
    learns nothing of it: the pair stays `submitting` (and a 401 or 402 still stops the
    batch's submits), so the next good run's 409 names the paid task. It became
    `unknown` for good, and the paid task was never waited on."""
    fake = await make_fake(conflict_includes_task_id=True)
    journal = tmp_path / "wav.sqlite"
    async with _client(fake) as client:
        await _collect(client, [("m", "a0")], journal=journal)  # the journal, bound to fake
        paid = await client.submit_wav("m", "a1")  # accepted, then the run was killed
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        db.execute(
            "INSERT INTO conversions (source_task_id, audio_id, state, updated_at)"
            " VALUES ('m', 'a1', 'submitting', 0)"
        )
    fake.inject(Fault.http_error(status), route="submit", times=1000)
    sent = fake.request_count("submit")
    async with _client(fake) as client:
        refused = await _collect(
            client, [("m", "a1"), ("m", "a2")], journal=journal, concurrency=1, timeout=1
        )
    assert not any(r.ok for r in refused)
    if status != 503:  # the account's refusal stops the batch's submits: a2 is not sent
        assert fake.request_count("submit") == sent + 1
    with contextlib.closing(sqlite3.connect(journal)) as db:
        row = db.execute("SELECT state FROM conversions WHERE audio_id = 'a1'").fetchone()
    assert row == ("submitting",)
    fake.clear_faults()
    async with _client(fake) as client:
        [result] = await _collect(client, [("m", "a1")], journal=journal)
    assert result.ok and result.task_id == paid.task_id, result
    assert fake.accept_count["a1"] == 1


async def test_a_journal_in_use_here_is_refused_at_once_however_its_path_is_spelled(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A second batch of this program on a journal a running batch holds - reached
    through a symlink - is refused at once (the lock was named after the path as
    spelled, so a symlink got a lock of its own), not after waiting for it to end."""
    journal = tmp_path / "wav.sqlite"
    link = tmp_path / "link.sqlite"
    async with _client(vidgo_fake) as client:
        first = client.convert_many([("m", "a0"), ("m", "a1")], journal=journal)
        try:
            assert (await first.__anext__()).ok  # it holds the journal, and goes on
            link.symlink_to(journal)
            started = time.monotonic()
            with pytest.raises(ConfigurationError, match="in use by another batch") as raised:
                await _collect(client, [("m", "a2")], journal=link)
            assert time.monotonic() - started < 3
            assert "contextlib.aclosing" in str(raised.value)  # this program's own loop
        finally:
            await first.aclose()


class _Counted:
    """``count`` pairs ``("m", prefix + i)``, read lazily; ``read``: how many were."""

    def __init__(self, prefix: str, count: int) -> None:
        self.prefix, self.count, self.read = prefix, count, 0

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for i in range(self.count):
            self.read += 1
            yield ("m", f"{self.prefix}{i}")


def _journal_states(journal: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(journal)) as db:
        rows = db.execute("SELECT state, count(*) FROM conversions GROUP BY state").fetchall()
    return dict(rows)


async def _rerun_reports_every_pair_once(
    fake: FakeVidgo, pairs: list[tuple[str, str]], journal: Path
) -> None:
    fake.clear_faults()
    async with _client(fake) as client:
        results = await _collect(client, pairs, journal=journal)
    assert [r.error for r in results if not r.ok] == []
    assert sorted(fake.accept_count.values()) == [1] * len(pairs)


async def test_leaving_the_loop_then_the_client_loses_no_paid_conversion(
    make_fake: MakeFake, tmp_path: Path
) -> None:
    """The README's shape, without ``aclosing``: ``break``, then the client's ``async
    with`` ends. The client stops its batch before it closes: the submits in flight are
    answered and journalled, and a re-run reports every pair with its URL. (It closed
    first: their rows stayed ``submitting`` and, as the 409 names no task, the re-run
    reported them as unknown outcomes.)"""
    fake = await make_fake(queue_time=0.05, run_time=0.3)
    pairs = [("m", f"a{i}") for i in range(40)]
    journal = tmp_path / "wav.sqlite"
    fake.inject(Fault.slow(0.5), route="submit", times=len(pairs))
    async with _client(fake) as client:
        async for _ in client.convert_many(pairs, concurrency=32, journal=journal):
            break
    assert "submitting" not in _journal_states(journal)
    await _rerun_reports_every_pair_once(fake, pairs, journal)


@pytest.mark.parametrize("cancels", [2, 3])
async def test_more_cancels_during_the_grace_lose_no_paid_conversion(
    make_fake: MakeFake, tmp_path: Path, cancels: int
) -> None:
    """A consumer cancelled again (a second or third Ctrl-C) while submits are in
    flight, the last cancel landing in the client's close: the grace goes on, the
    journal is closed, and the same process may use it again at once. (The second
    cancel cut the grace: rows stayed ``submitting`` and the journal's lock was never
    let go.)"""
    fake = await make_fake(queue_time=0.05, run_time=0.3)
    pairs = [("m", f"a{i}") for i in range(20)]
    journal = tmp_path / "wav.sqlite"
    fake.inject(Fault.slow(1.0), route="submit", times=len(pairs))

    async def consume(client: VidgoClient) -> None:
        batch = client.convert_many(pairs, concurrency=8, journal=journal)
        async with contextlib.aclosing(batch):
            async for _ in batch:
                pass

    async with _client(fake) as client:
        consumer = asyncio.create_task(consume(client))
        await asyncio.sleep(0.3)  # the first submits are on the wire
        for _ in range(cancels):
            consumer.cancel()
            await asyncio.sleep(0.2)
        await asyncio.gather(consumer, return_exceptions=True)
    assert "submitting" not in _journal_states(journal)
    await _rerun_reports_every_pair_once(fake, pairs, journal)


async def test_closing_the_client_under_a_running_batch_ends_its_loop(
    make_fake: MakeFake, tmp_path: Path
) -> None:
    """``aclose()`` from elsewhere while a loop iterates the batch: the loop ends with
    ClientClosedError instead of reading (and journalling) the rest of the input, and
    the journal is let go."""
    fake = await make_fake(queue_time=0.05, run_time=0.3)
    journal = tmp_path / "wav.sqlite"
    pairs = _Counted("a", 1000)

    client = _client(fake)
    reported = []

    async def consume() -> None:
        async for result in client.convert_many(pairs, concurrency=4, journal=journal):
            reported.append(result)
            if len(reported) == 2:
                asyncio.get_running_loop().call_soon(asyncio.ensure_future, client.aclose())

    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(consume(), 30)
    assert pairs.read < 1000  # what was read ahead (the batch's bound), not the whole input
    assert "submitting" not in _journal_states(journal)
    async with _client(fake) as again:  # the journal is free
        assert [r.ok for r in await _collect(again, [("m", "a0")], journal=journal)] == [True]


async def test_a_batch_first_iterated_after_the_client_closed_sends_nothing(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A batch made before ``aclose()`` and iterated after it ends at once with
    ClientClosedError: no request, no journal row. (It read its whole input, each pair
    failing with ClientClosedError, and journalled each.)"""
    journal = tmp_path / "wav.sqlite"
    client = _client(vidgo_fake)
    batch = client.convert_many([("m", f"a{i}") for i in range(20)], journal=journal)
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await batch.__anext__()
    assert vidgo_fake.requests == []
    assert _journal_states(journal) == {}  # made and checked at the call, then left alone


async def _closed_once_all_accepted(
    client: VidgoClient,
    fake: FakeVidgo,
    pairs: list[tuple[str, str]],
    *,
    concurrency: int,
    then_wait: float = 0.0,
) -> tuple[list[ConversionResult], float]:
    """Iterate a batch of ``pairs`` until the client is closed, which happens once the
    fake accepted them all (and ``then_wait`` seconds later): the results the loop got
    before its ClientClosedError, and the seconds ``aclose()`` took."""
    reported: list[ConversionResult] = []

    async def consume() -> None:
        async for result in client.convert_many(pairs, concurrency=concurrency):
            reported.append(result)

    consumer = asyncio.create_task(consume())
    for _ in range(500):  # 10 s at most
        if len(fake.accept_count) == len(pairs):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(then_wait)
    started = time.monotonic()
    await client.aclose()
    closing = time.monotonic() - started
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(consumer, 15)
    return reported, closing


async def test_closing_the_client_reports_every_accepted_pair_with_its_task(
    make_fake: MakeFake,
) -> None:
    """Without a journal, a loop iterating when the client is closed elsewhere gets a
    result for every pair accepted so far, naming its task (its wait ended with
    ClientClosedError), then ClientClosedError. (12 of 20 were never reported: their
    paid tasks were lost to the user.)"""
    fake = await make_fake(queue_time=0.0, run_time=60.0)
    pairs = [("m", f"a{i}") for i in range(20)]
    reported, _ = await _closed_once_all_accepted(_client(fake), fake, pairs, concurrency=8)
    assert sorted(r.audio_id for r in reported) == sorted(a for _, a in pairs)
    assert all(r.task_id for r in reported)


async def test_closing_the_client_while_a_batch_opens_its_journal_stops_it(
    make_fake: MakeFake, tmp_path: Path
) -> None:
    """``aclose()`` while a batch still waits for its SQLite journal (an ending batch of
    this process holds it): the batch ends with ClientClosedError, reading and sending
    nothing. (It was not yet among the running batches, so it ran on under the closed
    client, failing and journalling every pair of its input.)"""
    fake = await make_fake(queue_time=0.05, run_time=0.3)
    journal = tmp_path / "wav.sqlite"
    pairs = _Counted("b", 50)

    async with _client(fake) as holder:
        fake.inject(Fault.slow(1.0), route="submit", times=2)
        ending = holder.convert_many([("m", "h0"), ("m", "h1")], concurrency=2, journal=journal)
        first = asyncio.ensure_future(ending.__anext__())
        await asyncio.sleep(0.2)
        first.cancel()  # the batch ends: its stop keeps the journal while its submits finish
        client = _client(fake)
        consumer = asyncio.ensure_future(_collect(client, pairs, journal=journal))
        await asyncio.sleep(0.1)
        await client.aclose()
        with pytest.raises(ClientClosedError):
            await asyncio.wait_for(consumer, 15)
        await asyncio.gather(first, return_exceptions=True)
    assert pairs.read == 0
    assert fake.accept_count.keys() <= {"h0", "h1"}


async def _close_at_the_first_result(
    client: VidgoClient, pairs: list[tuple[str, str]], journal: Path
) -> None:
    async for _ in client.convert_many(pairs, concurrency=8, journal=journal):
        await client.aclose()


async def test_pairs_not_yet_submitted_when_the_client_closes_are_not_journalled_as_sent(
    make_fake: MakeFake, tmp_path: Path
) -> None:
    """``aclose()`` from the loop's body while the next pairs' tasks are starting: a
    pair whose submit was not yet attempted is reported with ClientClosedError and
    leaves no ``submitting`` row (which would mark it as maybe accepted). (Some were
    journalled as being submitted, then refused by the closed transport; the race
    showed in about half the runs, hence three.)"""
    fake = await make_fake(queue_time=0.05, run_time=0.3)
    for run in range(3):
        pairs = [("m", f"r{run}-{i}") for i in range(24)]
        journal = tmp_path / f"wav{run}.sqlite"
        fake.inject(Fault.slow(1.0), route="submit", times=len(pairs))
        with pytest.raises(ClientClosedError):
            await _close_at_the_first_result(_client(fake), pairs, journal)
        assert "submitting" not in _journal_states(journal)
        fake.clear_faults()


async def test_closing_the_client_frees_the_waits_queued_on_the_poll_cap(
    make_fake: MakeFake,
) -> None:
    """Waits queued for a poll slot under a low cap when the client closes end at once,
    each reported with its task. (The cap was closed after the batches stopped: they
    sat in its queue for the whole 10 s grace, then were cancelled unreported.)"""
    fake = await make_fake(queue_time=0.0, run_time=600.0)
    client = VidgoClient(
        fake.api_key,
        base_url=fake.url,
        poll=PollPolicy(initial=0.01, factor=1.0, max_interval=30.0, jitter=0.0),
        retry=FAST_RETRY,
        max_polls_per_second=2.0,
    )
    pairs = [("m", f"a{i}") for i in range(60)]
    # Their waits queue for a slot meanwhile: 2 a second.
    reported, closing = await _closed_once_all_accepted(
        client, fake, pairs, concurrency=60, then_wait=0.5
    )
    assert closing < 5
    assert sorted(r.audio_id for r in reported) == sorted(a for _, a in pairs)
    assert all(r.task_id for r in reported)
