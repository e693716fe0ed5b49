"""Tests of downloads, driven against FakeVidgo's storage route over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import gc
import logging
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
import pytest_asyncio
from aiohttp import web
from support import MakeClient, MakeFake

from vidgo_async import (
    APIError,
    ClientClosedError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    Timeouts,
    TransportError,
    VidgoClient,
)
from vidgo_async._wire.download import download_file
from vidgo_async._wire.peers import PublicResolver
from vidgo_async.testing import FakeVidgo, Fault, iter_wav

pytestmark = pytest.mark.asyncio

SIZE = 1_000_044  # several chunks, and a truncation point past the header
NO_WAIT = RetryPolicy(base_delay=0, max_delay=0, max_retry_after=0.01)
QUICK = Timeouts(connect=2.0, total=5.0)


@pytest_asyncio.fixture
async def big(make_fake: MakeFake) -> FakeVidgo:
    """A fake serving WAV files of ``SIZE`` bytes."""
    return await make_fake(wav_size=SIZE)


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain session without credentials, like the client's."""
    async with aiohttp.ClientSession() as created:
        yield created


def wav_url(fake: FakeVidgo) -> str:
    """The URL of a fresh finished task's WAV file."""
    return f"{fake.url}/files/{fake.seed_task()}.wav"


async def fetch(session: aiohttp.ClientSession, url: str, dest: Path, **kwargs: Any) -> Path:
    """download_file with the fake allowed and no backoff waits."""
    kwargs.setdefault("allow_private", True)
    kwargs.setdefault("retry", NO_WAIT)
    kwargs.setdefault("timeouts", QUICK)
    return await download_file(session, url, dest, **kwargs)


def assert_valid_wav(path: Path, size: int = SIZE) -> None:
    data = path.read_bytes()
    assert len(data) == size
    assert data == b"".join(iter_wav(size))
    assert not path.with_name(path.name + ".part").exists()


def range_headers(fake: FakeVidgo) -> list[str | None]:
    return [r.headers.get("Range") for r in fake.requests_to("files")]


# -- the happy path -------------------------------------------------------------------------


async def test_downloads_a_valid_wav(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The whole file lands at dest, byte for byte, with no .part left."""
    path = await fetch(session, wav_url(big), tmp_path / "song.wav")
    assert path == tmp_path / "song.wav"
    assert_valid_wav(path)
    assert [p.name for p in tmp_path.iterdir()] == ["song.wav"]


async def test_a_file_system_without_flock_keeps_no_lock_file(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where flock fails (ENOLCK: some NFS or SMB mounts) the download goes on unguarded
    and leaves no ``.part.lock`` behind (one was left beside every file)."""

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    path = await fetch(session, wav_url(big), tmp_path / "song.wav")
    assert_valid_wav(path)
    assert [p.name for p in tmp_path.iterdir()] == ["song.wav"]


async def test_client_converts_then_downloads_without_the_key(
    make_fake: MakeFake, make_client: MakeClient, tmp_path: Path
) -> None:
    """client.download fetches a converted track's wav_url; storage sees no Authorization."""
    fake = await make_fake(wav_size=SIZE)
    client = make_client(fake)
    url = await client.convert_to_wav("parent-1", "audio-1", timeout=10)
    path = await client.download(url, tmp_path)
    assert_valid_wav(path)
    files = fake.requests_to("files")
    assert len(files) == 1
    assert all(k.lower() != "authorization" for k in files[0].headers)
    assert fake.requests_to("submit")[0].headers["Authorization"] == f"Bearer {fake.api_key}"


async def test_directory_dest_takes_the_url_name(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """An existing directory as dest gets the URL path's last segment."""
    task_id = big.seed_task()
    path = await fetch(session, f"{big.url}/files/{task_id}.wav?sig=x", tmp_path)
    assert path == tmp_path / f"{task_id}.wav"
    assert_valid_wav(path)


async def test_progress_rises_to_the_total(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """on_progress counts rise strictly and end at the file size, with the total known."""
    calls: list[tuple[int, int | None]] = []
    await fetch(
        session, wav_url(big), tmp_path / "a.wav", on_progress=lambda d, t: calls.append((d, t))
    )
    done = [d for d, _ in calls]
    assert len(calls) > 1
    assert done == sorted(set(done))
    assert done[-1] == SIZE
    assert {t for _, t in calls} == {SIZE}


async def test_logs_never_show_the_query(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG lines name host and path, never a signed URL's query."""
    big.inject(Fault.server_error(503), route="files")
    caplog.set_level(logging.DEBUG, logger="vidgo_async")
    url = f"{big.url}/files/{big.seed_task()}.wav?token=s3cr3t"
    await fetch(session, url, tmp_path / "a.wav")
    assert "/files/" in caplog.text
    assert "s3cr3t" not in caplog.text


async def test_persistent_download_failures_are_reported_once_as_a_warning(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A download whose attempts keep failing says so once (a WARNING, without the signed
    URL's query), as polls and submits do, then completes. (It retried in silence.)"""
    big.inject(Fault.server_error(503), route="files", times=7)
    url = f"{big.url}/files/{big.seed_task()}.wav?token=s3cr3t"
    with caplog.at_level(logging.WARNING, logger="vidgo_async"):
        path = await fetch(
            session, url, tmp_path / "a.wav", retry=attrs.evolve(NO_WAIT, max_attempts=10)
        )
    assert_valid_wav(path)
    warned = [r.getMessage() for r in caplog.records if "have failed" in r.getMessage()]
    assert len(warned) == 1
    assert "s3cr3t" not in caplog.text


# -- destination ----------------------------------------------------------------------------


async def test_existing_dest_is_kept_without_a_request(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """An existing dest without overwrite raises FileExistsError before any request."""
    dest = tmp_path / "a.wav"
    dest.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        await fetch(session, wav_url(big), dest)
    assert dest.read_bytes() == b"mine"
    assert big.request_count("files") == 0


async def test_overwrite_replaces_dest(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """overwrite=True replaces an existing file."""
    dest = tmp_path / "a.wav"
    dest.write_bytes(b"old")
    await fetch(session, wav_url(big), dest, overwrite=True)
    assert_valid_wav(dest)


async def test_missing_directory_is_refused(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A dest whose directory does not exist raises FileNotFoundError, no request."""
    with pytest.raises(FileNotFoundError):
        await fetch(session, wav_url(big), tmp_path / "nope" / "a.wav")
    assert big.request_count("files") == 0


# -- URL rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.wav",  # not https
        "ftp://example.com/a.wav",
        "/files/a.wav",  # not absolute
        "https://user:pw@example.com/a.wav",  # credentials in the URL
        "https://127.0.0.1/a.wav",
        "https://[::1]/a.wav",
        "https://10.1.2.3/a.wav",
        "https://172.16.0.1/a.wav",
        "https://192.168.1.1/a.wav",
        "https://100.64.0.1/a.wav",  # carrier-grade NAT
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://[fd00:ec2::254]/latest/meta-data/",
        "https://[fe80::1]/a.wav",
        "https://0.0.0.0/a.wav",
        "https://224.0.0.1/a.wav",
        "https://240.0.0.1/a.wav",
        "https://[::ffff:127.0.0.1]/a.wav",  # IPv4-mapped loopback
        "https://[2002:7f00:1::]/a.wav",  # 6to4 of loopback
        "https://localhost/a.wav",  # a name resolving to loopback
    ],
)
async def test_refused_urls_raise_before_any_request(
    session: aiohttp.ClientSession, tmp_path: Path, url: str
) -> None:
    """Non-https, credentialed and non-public URLs raise ValueError; nothing is written."""
    with pytest.raises(ValueError) as raised:
        await download_file(session, url, tmp_path / "a.wav")
    assert list(tmp_path.iterdir()) == []
    if url.startswith("ftp"):  # the URL as given, scheme included (its query left out)
        assert "ftp://example.com/a.wav" in str(raised.value)


async def test_the_local_fake_is_refused_unless_allowed(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Without allow_private, the loopback http fake is never contacted."""
    with pytest.raises(ValueError):
        await download_file(session, wav_url(big), tmp_path / "a.wav")
    assert big.request_count("files") == 0


async def test_a_session_with_credentials_is_refused(big: FakeVidgo, tmp_path: Path) -> None:
    """A session carrying a default Authorization header is refused before any request."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as keyed:
        with pytest.raises(ValueError):
            await fetch(keyed, wav_url(big), tmp_path / "a.wav")
    assert big.request_count("files") == 0


async def test_redirects_are_followed(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A 302 to the file is followed, and no hop carries Authorization."""
    url = wav_url(big)
    big.inject(Fault.http_error(302, headers={"Location": url}), route="files", times=2)
    assert_valid_wav(await fetch(session, url, tmp_path / "a.wav"))
    assert big.request_count("files") == 3
    assert all("Authorization" not in r.headers for r in big.requests_to("files"))


@pytest.mark.parametrize(
    ("location", "times"),
    [
        ("/files/loop.wav", 6),
        ("ftp://example.com/a.wav", 1),
        ("https://u:p@example.com/", 1),
        (None, 1),  # no Location at all
    ],
)
async def test_bad_redirects_fail(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, location: str | None, times: int
) -> None:
    """Too many hops, a hop breaking the URL rules, or no Location is an InvalidResponseError."""
    headers = {} if location is None else {"Location": location}
    big.inject(
        Fault.http_error(302, headers=headers), route="files", times=times * 100
    )  # every attempt
    with pytest.raises(InvalidResponseError):
        await fetch(session, wav_url(big), tmp_path / "a.wav")
    assert not (tmp_path / "a.wav").exists()


# -- transient failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.server_error(503),
        Fault.server_error(502, body="html"),
        Fault.rate_limited(retry_after="0"),
        Fault.reset_before(),
    ],
    ids=["503", "502-html", "429", "reset"],
)
async def test_transient_failures_are_retried(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, fault: Fault
) -> None:
    """A 5xx, 429 or reset on the storage route is retried to success."""
    big.inject(fault, route="files")
    assert_valid_wav(await fetch(session, wav_url(big), tmp_path / "a.wav"))
    assert big.request_count("files") == 2


async def test_a_truncated_body_resumes_with_range(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A body cut half-way is resumed from the .part size with Range, not restarted."""
    big.inject(Fault.reset_after(), route="files")
    assert_valid_wav(await fetch(session, wav_url(big), tmp_path / "a.wav"))
    first, second = range_headers(big)
    assert first is None
    assert second is not None
    offset = int(second.removeprefix("bytes=").removesuffix("-"))
    assert 0 < offset < SIZE


async def test_a_later_call_resumes_the_part(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A failed call leaves .part (never dest); the next call resumes it."""
    url, dest = wav_url(big), tmp_path / "a.wav"
    big.inject(Fault.reset_after(), route="files")
    with pytest.raises(TransportError):
        await fetch(session, url, dest, retry=RetryPolicy(max_attempts=1))
    assert not dest.exists()
    kept = (tmp_path / "a.wav.part").stat().st_size
    assert 0 < kept < SIZE
    assert_valid_wav(await fetch(session, url, dest))
    assert range_headers(big)[-1] == f"bytes={kept}-"


async def test_a_server_ignoring_range_restarts_from_zero(
    make_fake: MakeFake, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A 200 to a Range request replaces the .part instead of appending to it."""
    size = 200_044
    fake = await make_fake(wav_size=size)
    fake.inject(Fault.reset_after(), route="files")
    fake.inject(Fault.http_error(200, body=b"".join(iter_wav(size))), route="files")
    assert_valid_wav(await fetch(session, wav_url(fake), tmp_path / "a.wav"), size)
    assert range_headers(fake)[1] is not None


@pytest.mark.parametrize(
    "stale",
    [
        Fault.http_error(416, headers={"Content-Range": "bytes */10"}),
        Fault.http_error(206, body=b"RIFF", headers={"Content-Range": "bytes 0-3/4"}),
    ],
    ids=["416", "wrong-content-range"],
)
async def test_a_stale_resume_restarts_from_zero(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, stale: Fault
) -> None:
    """A 416 or a 206 for another range drops the .part and starts again."""
    big.inject(Fault.reset_after(), route="files")
    big.inject(stale, route="files")
    assert_valid_wav(await fetch(session, wav_url(big), tmp_path / "a.wav"))
    ranges = range_headers(big)
    assert len(ranges) == 3
    assert ranges[1] is not None
    assert ranges[2] is None


async def test_a_resume_onto_a_file_of_another_size_restarts_from_zero(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A storage host sending no ETag or Last-Modified, whose file is replaced while a
    download is cut: the resume's 206 names another total size, so the head kept is of
    another file and the download restarts (it appended the new file's tail to the old
    head, and saved the splice as the WAV)."""
    old, new = b"".join(iter_wav(100_044)), b"".join(iter_wav(100_444))
    ranges: list[str | None] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range"))
        if len(ranges) == 1:  # the old file, cut half-way
            response = web.StreamResponse(headers={"Content-Length": str(len(old))})
            await response.prepare(request)
            await response.write(old[: len(old) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        start = int((request.headers.get("Range") or "bytes=0-")[6:].rstrip("-"))
        if start == 0:
            return web.Response(body=new)
        headers = {"Content-Range": f"bytes {start}-{len(new) - 1}/{len(new)}"}
        return web.Response(status=206, body=new[start:], headers=headers)

    app = web.Application()
    app.router.add_get("/x.wav", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        saved = await fetch(session, f"http://127.0.0.1:{port}/x.wav", tmp_path / "x.wav")
    finally:
        await runner.cleanup()
    assert saved.read_bytes() == new
    assert ranges[0] is None and ranges[1] is not None and ranges[-1] is None


@pytest.mark.parametrize("size_line", ["\u00b2", "12" * 20, "-5", ""])
async def test_a_damaged_size_beside_the_part_is_taken_as_unknown(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, size_line: str
) -> None:
    """A `.part.version` whose size line is damaged (a superscript digit, a huge or
    negative number, none) leaves the size unknown: the next call still resumes and
    saves the WAV; a superscript made every call raise a bare ValueError."""
    url, dest = wav_url(big), tmp_path / "a.wav"
    big.inject(Fault.reset_after(), route="files")
    with pytest.raises(TransportError):
        await fetch(session, url, dest, retry=RetryPolicy(max_attempts=1))
    kept = tmp_path / "a.wav.part.version"
    version, source = kept.read_text().split("\n")[:2]
    kept.write_text(f"{version}\n{source}\n{size_line}")
    assert_valid_wav(await fetch(session, url, dest))
    assert range_headers(big)[-1] is not None  # resumed, not restarted


async def test_a_junk_part_is_not_resumed(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A leftover .part that is not a WAV is replaced, not resumed."""
    (tmp_path / "a.wav.part").write_bytes(b"x" * 100)
    assert_valid_wav(await fetch(session, wav_url(big), tmp_path / "a.wav"))
    assert range_headers(big) == [None]


async def test_a_body_short_of_content_range_fails_after_retries(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A 206 ending before its Content-Range total is retried, then an InvalidResponseError."""
    short = Fault.http_error(
        206, body=b"".join(iter_wav(100))[:44], headers={"Content-Range": "bytes 0-43/100"}
    )
    big.inject(short, route="files", times=2)
    with pytest.raises(InvalidResponseError):
        await fetch(
            session,
            wav_url(big),
            tmp_path / "a.wav",
            retry=RetryPolicy(max_attempts=2, base_delay=0),
        )
    assert range_headers(big) == [None, "bytes=44-"]
    assert not (tmp_path / "a.wav").exists()


async def test_an_unreachable_host_is_a_transport_error(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A refused connection is a TransportError marked as never sent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError) as caught:
        await fetch(
            session,
            f"http://127.0.0.1:{port}/a.wav",
            tmp_path / "a.wav",
            retry=RetryPolicy(max_attempts=1),
        )
    assert caught.value.sent is False


async def test_persistent_5xx_gives_up(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """After max_attempts 503s the ServerError surfaces; dest is not created."""
    big.inject(Fault.server_error(503), route="files", times=3)
    with pytest.raises(ServerError):
        await fetch(
            session,
            wav_url(big),
            tmp_path / "a.wav",
            retry=RetryPolicy(max_attempts=3, base_delay=0),
        )
    assert big.request_count("files") == 3
    assert not (tmp_path / "a.wav").exists()


async def test_a_stalled_body_times_out(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A server that goes silent hits the read timeout, retried, then RequestTimeoutError."""
    big.inject(Fault.stall(5.0), route="files", times=2)
    with pytest.raises(RequestTimeoutError):
        await fetch(
            session,
            wav_url(big),
            tmp_path / "a.wav",
            retry=RetryPolicy(max_attempts=2, base_delay=0),
            timeouts=Timeouts(connect=1.0, total=0.2),
        )
    assert big.request_count("files") == 2


# -- final failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, NotFoundError), (403, PermissionDeniedError), (410, APIError)],
)
async def test_error_statuses_map_and_are_not_retried(
    big: FakeVidgo,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    status: int,
    error: type[APIError],
) -> None:
    """A 4xx maps to its APIError class at once, with no retry."""
    big.inject(Fault.http_error(status, body={"message": "gone"}), route="files")
    with pytest.raises(error) as caught:
        await fetch(session, wav_url(big), tmp_path / "a.wav")
    assert caught.value.status == status
    assert big.request_count("files") == 1


async def test_an_unknown_file_is_not_found(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The fake's own 404 for an unknown task is a NotFoundError."""
    with pytest.raises(NotFoundError):
        await fetch(session, f"{big.url}/files/nope.wav", tmp_path / "a.wav")


@pytest.mark.parametrize("body", [b"<html>not a wav</html>", b"RIFF"], ids=["html", "short"])
async def test_not_a_wav_is_refused(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, body: bytes
) -> None:
    """Content that is not RIFF/WAVE raises InvalidResponseError; no file is left."""
    big.inject(Fault.http_error(200, body=body), route="files", times=100)  # every attempt
    with pytest.raises(InvalidResponseError):
        await fetch(session, wav_url(big), tmp_path / "a.wav")
    assert list(tmp_path.iterdir()) == []


async def test_an_unexpected_success_status_is_invalid(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A 2xx other than 200/206 (here 204) is an InvalidResponseError."""
    big.inject(Fault.http_error(204), route="files", times=100)  # every attempt
    with pytest.raises(InvalidResponseError):
        await fetch(session, wav_url(big), tmp_path / "a.wav")


# -- cancellation ---------------------------------------------------------------------------


async def test_cancellation_propagates_and_leaves_no_task(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Cancelling a stalled download raises CancelledError; no task is left, no dest."""
    big.inject(Fault.stall(5.0), route="files")
    before = asyncio.all_tasks()
    task = asyncio.ensure_future(fetch(session, wav_url(big), tmp_path / "a.wav"))
    for _ in range(400):  # until the request is in, stalled
        if big.request_count("files"):
            break
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await big.close()  # its handler of the stalled request is the server's task, not ours
    assert asyncio.all_tasks() <= before
    assert not (tmp_path / "a.wav").exists()


async def test_cancellation_mid_body_keeps_only_the_part(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Cancelled while writing, the download leaves the .part (and beside it where it came
    from, for a resume) and no dest."""
    task: asyncio.Future[Path] | None = None

    def cancel_on_first_chunk(done: int, total: int | None) -> None:
        assert task is not None
        task.cancel()

    task = asyncio.ensure_future(
        fetch(session, wav_url(big), tmp_path / "a.wav", on_progress=cancel_on_first_chunk)
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav.part", "a.wav.part.version"]


# -- a raw storage host for what FakeVidgo cannot do ----------------------------------------

Answer = Callable[[int, str, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_storage(answer: Answer) -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback server calling ``answer(index, request_head, writer)`` per connection.

    Yields the URL of ``/a.wav`` and the list of request heads received.
    """
    heads: list[str] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            heads.append(head)
            await answer(len(heads) - 1, head, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only ours, at the end: Python 3.11's start_server logs a cancelled handler
            # as an error (its done callback asks task.exception()), so it ends quietly.
            pass
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/a.wav", heads
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def wav_bytes(size: int) -> bytes:
    return b"".join(iter_wav(size))


def range_of(head: str) -> str | None:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "range":
            return value.strip()
    return None


async def eof_body(writer: asyncio.StreamWriter, body: bytes) -> None:
    """A 200 without Content-Length: the body ends when the connection closes."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()


async def assert_resumed_once(
    session: aiohttp.ClientSession, answer: Any, dest: Path, data: bytes
) -> None:
    """Downloading from a storage answered by ``answer`` saves ``data`` to ``dest``, the
    second request resuming it from byte 100,000."""
    async with raw_storage(answer) as (url, heads):
        path = await fetch(session, url, dest)
    assert path.read_bytes() == data
    assert [range_of(h) for h in heads] == [None, "bytes=100000-"]


def tail_from_100000(writer: asyncio.StreamWriter, data: bytes) -> None:
    """A 206 of ``data`` (200,000 bytes) from byte 100,000 on."""
    writer.write(
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100000-199999/200000\r\n"
        b"Content-Length: 100000\r\nConnection: close\r\n\r\n" + data[100_000:]
    )


def whole_200000(writer: asyncio.StreamWriter, data: bytes) -> None:
    """A 200 of ``data`` (200,000 bytes), whole."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n" + data)


async def test_a_truncated_eof_body_is_resumed(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A body without Content-Length cut short of the RIFF size is resumed, not saved."""
    data = wav_bytes(200_000)

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        if index == 0:
            await eof_body(writer, data[:100_000])
            return
        tail_from_100000(writer, data)
        await writer.drain()

    await assert_resumed_once(session, answer, tmp_path / "a.wav", data)


async def test_a_wav_always_short_of_its_riff_size_fails(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """A WAV always cut short of its RIFF size: InvalidResponseError, dest not created."""

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        await eof_body(writer, wav_bytes(200_000)[:100_000])  # ignores Range

    client = make_client(retry=RetryPolicy(max_attempts=3, base_delay=0, max_delay=0))
    async with raw_storage(answer) as (url, heads):
        with pytest.raises(InvalidResponseError):
            await client.download(url, tmp_path / "a.wav")
    assert len(heads) == 3
    assert not (tmp_path / "a.wav").exists()


SIGNED = "?X-Amz-Credential=AK%2F2025%2Fus&Signature=abc%2Bdef%2F%3D%3D&sig=%7E%2a"


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        pytest.param(f"/a.wav{SIGNED}", f"/a.wav{SIGNED}", id="signed-query-kept"),
        pytest.param(
            f"/my track é %zz.wav{SIGNED}", f"/my%20track%20%C3%A9%20%25zz.wav{SIGNED}", id="mixed"
        ),
    ],
)
async def test_a_signed_url_reaches_the_storage_host_byte_for_byte(
    make_client: MakeClient, tmp_path: Path, path: str, sent: str
) -> None:
    """A URL already percent-encoded is requested as given (a host checking the raw
    query of a signature sees what it signed); one with raw spaces or letters is quoted."""
    data = wav_bytes(1000)

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + data)
        await writer.drain()

    async with raw_storage(answer) as (url, heads):
        await make_client().download(url.removesuffix("/a.wav") + path, tmp_path / "a.wav")
    assert heads[0].split(" ")[1] == sent
    assert (tmp_path / "a.wav").read_bytes() == data


@pytest.mark.parametrize("riff", [0, 0xFFFFFFFF], ids=["zero", "streaming"])
async def test_a_riff_size_is_not_checked_when_unknown(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, riff: int
) -> None:
    """A RIFF size of 0 or 0xFFFFFFFF (streaming writers) is accepted."""
    data = wav_bytes(1000)
    body = data[:4] + riff.to_bytes(4, "little") + data[8:]
    big.inject(Fault.http_error(200, body=body), route="files", times=100)  # every attempt
    path = await fetch(session, wav_url(big), tmp_path / "a.wav")
    assert path.read_bytes() == body


async def test_a_riff_size_larger_than_content_length_is_incomplete(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A complete-looking body whose RIFF header declares more is retried, then refused."""
    big.inject(Fault.http_error(200, body=wav_bytes(2000)[:1000]), route="files", times=2)
    with pytest.raises(InvalidResponseError):
        await fetch(
            session,
            wav_url(big),
            tmp_path / "a.wav",
            retry=RetryPolicy(max_attempts=2, base_delay=0),
        )
    assert not (tmp_path / "a.wav").exists()


async def test_a_trickling_body_hits_the_overall_timeout(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A host sending a byte at a time never trips sock_read; the overall timeout ends it."""
    data = wav_bytes(200_000)

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + data[:100])
        for byte in data[100:]:
            await asyncio.sleep(0.05)
            writer.write(bytes([byte]))
            await writer.drain()

    started = asyncio.get_running_loop().time()
    async with raw_storage(answer) as (url, _):
        with pytest.raises(RequestTimeoutError):
            await fetch(session, url, tmp_path / "a.wav", timeout=0.5)
    assert asyncio.get_running_loop().time() - started < 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav.part", "a.wav.part.version"]


async def test_the_overall_timeout_covers_retries(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Backoff between retries counts against the overall timeout."""
    big.inject(Fault.rate_limited(retry_after="1"), route="files", times=100)
    slow = RetryPolicy(max_attempts=100, base_delay=0, max_delay=0, max_retry_after=0.2)
    with pytest.raises(RequestTimeoutError):
        await fetch(session, wav_url(big), tmp_path / "a.wav", retry=slow, timeout=0.7)
    assert 1 < big.request_count("files") < 10


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan")])
async def test_a_bad_overall_timeout_is_refused(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path, timeout: float
) -> None:
    """A timeout that is not a positive number raises ValueError before any request."""
    with pytest.raises(ValueError):
        await fetch(session, wav_url(big), tmp_path / "a.wav", timeout=timeout)
    assert big.request_count("files") == 0


async def test_no_overall_timeout_when_none(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """timeout=None downloads without a deadline."""
    assert_valid_wav(await fetch(session, wav_url(big), tmp_path / "a.wav", timeout=None))


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nRIFF",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nRIFF",
    ],
    ids=["bad-content-length", "bad-status-line", "two-lengths"],
)
async def test_a_malformed_answer_chains_no_aiohttp_response_error(
    session: aiohttp.ClientSession, tmp_path: Path, answer: bytes
) -> None:
    """No aiohttp exception carrying the request's headers is reachable from the error."""

    async def reply(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()

    async with raw_storage(reply) as (url, _):
        with pytest.raises(TransportError) as caught:
            await fetch(
                session, url, tmp_path / "a.wav", retry=RetryPolicy(max_attempts=2, base_delay=0)
            )
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [caught.value]
    while pending:
        exc = pending.pop()
        if exc is None or any(exc is s for s in seen):
            continue
        seen.append(exc)
        pending += [exc.__cause__, exc.__context__]
    assert len(seen) >= 1
    assert not [e for e in seen if isinstance(e, aiohttp.ClientResponseError)], seen
    assert not [e for e in seen if hasattr(e, "request_info")], seen


async def test_storage_hosts_resolve_only_to_public_addresses() -> None:
    """The client's resolver keeps a storage host from connecting to a private address
    (DNS rebinding after the check), while the API's own host resolves as usual."""
    resolver = PublicResolver("localhost")
    try:
        assert await resolver.resolve("localhost", 443)  # the API host: unfiltered
        other = PublicResolver("api.vidgo.ai")
        with pytest.raises(OSError, match="no public address"):
            await other.resolve("localhost", 443)
        await other.close()
    finally:
        await resolver.close()


async def test_an_absurd_content_range_is_an_invalid_response(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A 206 whose Content-Range holds thousands of digits ends in our error, never a
    ValueError from converting them."""
    headers = {"Content-Range": f"bytes {'9' * 4400}-1/*"}  # past int()'s digit limit
    big.inject(Fault.http_error(206, body=wav_bytes(64), headers=headers), route="files", times=50)
    with pytest.raises(InvalidResponseError):
        await fetch(session, wav_url(big), tmp_path / "a.wav")


async def test_a_host_name_that_does_not_decode_is_refused_before_any_request(
    tmp_path: Path,
) -> None:
    """A WAV URL whose host is not a valid IDNA name is refused as a bad URL, not a
    UnicodeError from deep in the URL parser."""
    async with VidgoClient("key", base_url="https://api.vidgo.ai") as client:
        with pytest.raises(ValueError, match="not a valid URL") as info:
            await client.download("https://xn--zz/x.wav", tmp_path / "a.wav")
    assert type(info.value) is ValueError


# -- closing the client ---------------------------------------------------------------------


async def silent_after_head(index: int, head: str, writer: asyncio.StreamWriter) -> None:
    """The headers and a WAV header of a 200 kB body, then silence."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + wav_bytes(200_000)[:100])
    await writer.drain()
    await asyncio.sleep(3600)  # raw_storage cancels it


@pytest.mark.parametrize("borrowed", [False, True], ids=["own-session", "borrowed-session"])
async def test_closing_the_client_ends_a_download_in_flight(
    make_client: MakeClient, session: aiohttp.ClientSession, tmp_path: Path, borrowed: bool
) -> None:
    """aclose ends a download waiting on a silent body at once with ClientClosedError,
    keeping the .part to resume (aiohttp leaves such a read waiting forever)."""
    client = make_client(session=session) if borrowed else make_client()
    receiving = asyncio.Event()
    async with raw_storage(silent_after_head) as (url, heads):
        task = asyncio.ensure_future(
            client.download(url, tmp_path / "a.wav", on_progress=lambda d, t: receiving.set())
        )
        await asyncio.wait_for(receiving.wait(), 2)
        await client.aclose()
        with pytest.raises(ClientClosedError):
            await asyncio.wait_for(task, 1)  # Timeouts.total is 5 s
    assert len(heads) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav.part", "a.wav.part.version"]


@pytest.mark.parametrize("end", ["aclose", "timeout"])
async def test_a_download_whose_host_never_resolves_ends_on_close_or_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    """The check that a storage host is public resolves it before any request: a
    resolver that never answers holds the download no longer than its timeout or the
    client's close (neither bounded that lookup before, found by review)."""
    loop = asyncio.get_running_loop()
    asked = asyncio.Event()

    async def never(*args: object, **kwargs: object) -> list[object]:
        asked.set()
        await asyncio.sleep(3600)
        return []

    monkeypatch.setattr(loop, "getaddrinfo", never)
    async with VidgoClient("k" * 24, base_url="https://api.vidgo.ai") as client:
        timeout = 0.3 if end == "timeout" else 30.0
        call = client.download("https://storage.example/a.wav", tmp_path / "a.wav", timeout=timeout)
        task = asyncio.ensure_future(call)
        await asyncio.wait_for(asked.wait(), 2)
        if end == "aclose":
            await client.aclose()
        expected = ClientClosedError if end == "aclose" else RequestTimeoutError
        with pytest.raises(expected):
            await asyncio.wait_for(task, 2)
    assert list(tmp_path.iterdir()) == []


async def test_a_download_cancelled_as_the_client_closes_logs_nothing(
    make_client: MakeClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled in the same instant as aclose, a download raises CancelledError and
    leaves no "exception never retrieved" behind."""
    client = make_client()
    receiving = asyncio.Event()
    async with raw_storage(silent_after_head) as (url, _):
        task = asyncio.ensure_future(
            client.download(url, tmp_path / "a.wav", on_progress=lambda d, t: receiving.set())
        )
        await asyncio.wait_for(receiving.wait(), 2)
        task.cancel()
        await client.aclose()
        with pytest.raises(asyncio.CancelledError):
            await task
    del task
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_a_download_after_close_fails_at_once(
    big: FakeVidgo, make_client: MakeClient, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A closed client refuses a download before any request, on a borrowed session too."""
    client = make_client(big, session=session)
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.download(wav_url(big), tmp_path / "a.wav")
    assert big.request_count("files") == 0
    assert list(tmp_path.iterdir()) == []


# -- bodies longer than they can be ---------------------------------------------------------


def gzip_bomb(size: int) -> bytes:
    """A gzip stream of a WAV of ``size`` bytes (RIFF size left open): tiny when packed."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = b"RIFF\xff\xff\xff\xffWAVE"
    return packer.compress(head + bytes(size - len(head))) + packer.flush()


async def test_an_encoded_body_is_refused_before_a_byte_is_written(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """A gzip answer to our identity request is an InvalidResponseError at once: nothing
    unpacked to disk past its Content-Length, no retry, no .part."""
    body = gzip_bomb(8 * 1024 * 1024)

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    done: list[int] = []
    client = make_client(retry=RetryPolicy(max_attempts=3, base_delay=0, max_delay=0))
    async with raw_storage(answer) as (url, heads):
        with pytest.raises(InvalidResponseError, match="Content-Encoding gzip"):
            await client.download(url, tmp_path / "a.wav", on_progress=lambda d, t: done.append(d))
    assert done == []
    assert len(heads) == 1
    assert "accept-encoding: identity" in heads[0].lower()
    assert list(tmp_path.iterdir()) == []


async def test_content_encoding_identity_is_accepted(
    big: FakeVidgo, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """An answer naming the identity encoding we asked for downloads as usual."""
    body = wav_bytes(1000)
    identity = Fault.http_error(200, body=body, headers={"Content-Encoding": "Identity"})
    big.inject(identity, route="files")
    assert (await fetch(session, wav_url(big), tmp_path / "a.wav")).read_bytes() == body


async def test_a_body_past_its_content_range_total_stops_there(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """A resumed body without Content-Length running past its Content-Range total is cut
    there, not written to its end; the .part it spoilt is removed."""
    data = wav_bytes(2000)

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 1000-1999/2000\r\n"
            b"Connection: close\r\n\r\n"
        )
        for _ in range(80):  # 5 MB, until the client hangs up
            writer.write(bytes(65536))
            await writer.drain()

    done: list[int] = []
    client = make_client(retry=RetryPolicy(max_attempts=1))
    async with raw_storage(answer) as (url, heads):
        # As a call cut short leaves them: the head (RIFF size open), and where it came from.
        (tmp_path / "a.wav.part").write_bytes(data[:4] + b"\xff" * 4 + data[8:1000])
        (tmp_path / "a.wav.part.version").write_text(f"\n{url}")
        with pytest.raises(InvalidResponseError, match="runs past 2000 bytes"):
            await client.download(url, tmp_path / "a.wav", on_progress=lambda d, t: done.append(d))
    assert [range_of(h) for h in heads] == ["bytes=1000-"]
    assert max(done, default=1000) <= 2000
    assert list(tmp_path.iterdir()) == []


def header_of(head: str, wanted: str) -> str | None:
    """The value of header ``wanted`` in a raw request head."""
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == wanted:
            return value.strip()
    return None


@pytest.mark.parametrize("honours_if_range", [True, False], ids=["if-range", "ignored"])
async def test_a_file_changed_between_attempts_is_not_spliced(
    session: aiohttp.ClientSession, tmp_path: Path, honours_if_range: bool
) -> None:
    """The file changed on storage (another ETag) after an attempt was cut short: the
    resume asks If-Range with the first ETag, and the new file is saved whole, never
    the old one's head spliced to the new one's tail."""
    old, new = wav_bytes(200_000), bytes(reversed(wav_bytes(200_000)[44:]))
    new = wav_bytes(200_000)[:44] + new

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        if index == 0:
            writer.write(
                b'HTTP/1.1 200 OK\r\nETag: "v1"\r\nContent-Length: 200000\r\n'
                b"Connection: close\r\n\r\n" + old[:100_000]
            )
        elif honours_if_range and header_of(head, "if-range") != '"v1"':
            raise AssertionError(head)
        elif honours_if_range:  # the validator no longer matches: the whole new file
            writer.write(
                b'HTTP/1.1 200 OK\r\nETag: "v2"\r\nContent-Length: 200000\r\n'
                b"Connection: close\r\n\r\n" + new
            )
        elif range_of(head) is not None:  # a server ignoring If-Range sends the new tail
            writer.write(
                b'HTTP/1.1 206 Partial Content\r\nETag: "v2"\r\n'
                b"Content-Range: bytes 100000-199999/200000\r\nContent-Length: 100000\r\n"
                b"Connection: close\r\n\r\n" + new[100_000:]
            )
        else:
            writer.write(
                b'HTTP/1.1 200 OK\r\nETag: "v2"\r\nContent-Length: 200000\r\n'
                b"Connection: close\r\n\r\n" + new
            )
        await writer.drain()

    async with raw_storage(answer) as (url, heads):
        path = await fetch(session, url, tmp_path / "a.wav")
    assert path.read_bytes() == new
    assert header_of(heads[1], "if-range") == '"v1"'


async def test_a_resume_answered_without_a_validator_is_kept(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A 206 that names no ETag (some servers send validators on 200s only) tells
    nothing of a change: the resumed bytes are kept, not restarted from zero."""
    data = wav_bytes(200_000)

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        if index == 0:
            writer.write(
                b'HTTP/1.1 200 OK\r\nETag: "v1"\r\nContent-Length: 200000\r\n'
                b"Connection: close\r\n\r\n" + data[:100_000]
            )
        else:
            tail_from_100000(writer, data)
        await writer.drain()

    await assert_resumed_once(session, answer, tmp_path / "a.wav", data)


@pytest.mark.parametrize("honours_if_range", [True, False], ids=["if-range", "ignored"])
async def test_a_file_changed_before_a_later_call_is_not_spliced(
    session: aiohttp.ClientSession, tmp_path: Path, honours_if_range: bool
) -> None:
    """A call cut short leaves its .part and the file's version beside it; the file then
    changes on storage. The next call (a re-run after a kill) resumes with If-Range on
    the first version and saves the new file whole, never the two spliced."""
    old = wav_bytes(200_000)
    new = old[:44] + bytes(reversed(old[44:]))
    versions = iter([b'"v1"', b'"v2"', b'"v2"', b'"v2"'])

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        etag = next(versions)
        if index == 0:
            body, status = old[:100_000], b"200 OK"
        elif range_of(head) is None or honours_if_range:  # If-Range "v1" no longer holds
            body, status = new, b"200 OK"
        else:
            body, status = new[100_000:], b"206 Partial Content"
        extra = b"Content-Range: bytes 100000-199999/200000\r\n" if status[:3] == b"206" else b""
        length = b"100000" if status[:3] == b"206" else b"200000"
        writer.write(
            b"HTTP/1.1 "
            + status
            + b"\r\nETag: "
            + etag
            + b"\r\n"
            + extra
            + b"Content-Length: "
            + length
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()

    async with raw_storage(answer) as (url, heads):
        with pytest.raises(TransportError):  # cut short
            await fetch(session, url, tmp_path / "a.wav", retry=RetryPolicy(max_attempts=1))
        assert (tmp_path / "a.wav.part").stat().st_size == 100_000
        path = await fetch(session, url, tmp_path / "a.wav")
    assert path.read_bytes() == new
    assert header_of(heads[1], "if-range") == '"v1"'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


async def test_a_refused_body_leaves_no_version_behind(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A body with an ETag that is not a WAV is refused, and neither its .part nor the
    version kept beside it is left (the version file was)."""

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        body = b"<html>not a wav, not at all, not even close to one</html>"
        writer.write(
            b'HTTP/1.1 200 OK\r\nETag: "v1"\r\nContent-Length: '
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()

    async with raw_storage(answer) as (url, _):
        with pytest.raises(InvalidResponseError):
            await fetch(session, url, tmp_path / "a.wav")
    assert list(tmp_path.iterdir()) == []


async def test_the_part_of_another_url_is_never_resumed(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A call cut short leaves the head of one file in the .part; a call for another
    URL into the same destination (no validator on either to tell them apart) starts
    afresh, never splicing the first file's head to the second's tail. Another signed
    query of the same path is the same file, and is resumed."""
    first = wav_bytes(200_000)
    second = first[:44] + bytes(reversed(first[44:]))

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        body = first if "/a.wav" in head.split("\r\n", 1)[0] else second
        if index in (0, 2):  # the first call of each pair is cut short
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n"
                b"Connection: close\r\n\r\n" + body[:100_000]
            )
        elif range_of(head) is not None:
            tail_from_100000(writer, body)
        else:
            whole_200000(writer, body)
        await writer.drain()

    dest = tmp_path / "track.wav"
    async with raw_storage(answer) as (url, heads):
        with pytest.raises(TransportError):  # cut short
            await fetch(session, url, dest, retry=RetryPolicy(max_attempts=1))
        other = url.replace("/a.wav", "/b.wav")
        assert (await fetch(session, other, dest)).read_bytes() == second
        assert range_of(heads[1]) is None
        again = tmp_path / "again.wav"
        with pytest.raises(TransportError):  # cut short again, then resumed by another query
            await fetch(session, f"{url}?sig=1", again, retry=RetryPolicy(max_attempts=1))
        assert (await fetch(session, f"{url}?sig=2", again)).read_bytes() == first
        assert range_of(heads[3]) == "bytes=100000-"


async def test_a_part_of_unknown_origin_is_not_resumed(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A .part with nothing beside it saying where it came from (left by an earlier
    version, or its record lost) may be another file's head: it is downloaded afresh."""
    data = wav_bytes(200_000)
    other = data[:44] + bytes(reversed(data[44:]))
    (tmp_path / "a.wav.part").write_bytes(other[:100_000])

    async def answer(index: int, head: str, writer: asyncio.StreamWriter) -> None:
        if range_of(head) is not None:
            tail_from_100000(writer, data)
        else:
            whole_200000(writer, data)
        await writer.drain()

    async with raw_storage(answer) as (url, heads):
        assert (await fetch(session, url, tmp_path / "a.wav")).read_bytes() == data
    assert [range_of(head) for head in heads] == [None]
