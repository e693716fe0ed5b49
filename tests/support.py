"""What the tests share: fast policies, fixture types and the transient-fault table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from vidgo_async import PollPolicy, RetryPolicy, Timeouts, VidgoClient
from vidgo_async.testing import FakeVidgo, Fault

# Policies scaled to the fake's fast clock: no test waits on production timings.
FAST_POLL = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05)
FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=0.05)
FAST_TIMEOUTS = Timeouts(connect=2.0, total=5.0)

#: The conftest factories ``make_fake`` and ``make_client``.
MakeFake = Callable[..., Awaitable[FakeVidgo]]
MakeClient = Callable[..., VidgoClient]

#: Answers after which a read is worth another attempt (and a wait goes on).
TRANSIENT_FAULTS = [
    pytest.param(Fault.reset_before(), id="reset-before"),
    pytest.param(Fault.reset_after(), id="reset-after"),
    pytest.param(Fault.rate_limited(), id="429"),
    pytest.param(Fault.rate_limited("0"), id="429-retry-after-0"),
    pytest.param(Fault.server_error(500), id="500"),
    pytest.param(Fault.server_error(502, body="html"), id="502-html"),
    pytest.param(Fault.server_error(503, body="empty"), id="503-empty"),
    pytest.param(Fault.server_error(504), id="504"),
    pytest.param(Fault.garbage("html"), id="garbage-html"),
    pytest.param(Fault.garbage("truncated"), id="garbage-truncated"),
    pytest.param(Fault.code_in_200(500), id="code-500-in-200"),
    pytest.param(Fault.code_in_200(429), id="code-429-in-200"),
    pytest.param(Fault.stall(30), id="stall"),
]


class Abort(BaseException):
    """What a test framework's or gevent's timeout raises: no Exception."""
