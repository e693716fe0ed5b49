"""Test helpers: :class:`FakeVidgo`, an in-process stand-in for the Vidgo API.

Example::

    from vidgo_async.testing import FakeVidgo, Fault, fast_client

    async with FakeVidgo(api_key="test-key") as fake, fast_client(fake) as client:
        fake.inject(Fault.rate_limited(retry_after="1"), route="submit")
        url = await client.convert_to_wav("5c79xxxxbe8e", "e231xxxx-8cadc7dc")

``FAST_POLL``, ``FAST_RETRY`` and ``FAST_TIMEOUTS`` are the policies that
:func:`fast_client` (and the pytest plugin's ``vidgo_client``) use, scaled to
the fake's fast clock.
"""

from ._delivery import CallbackAttempt, CallbackBody, CallbackDelivery, CallbackFaults
from ._fast import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, fast_client
from ._faults import Fault, FaultKind, RouteName
from ._log import RecordedRequest
from ._server import DEFAULT_WAV_SIZE, FakeVidgo, serve
from ._state import FakeTask
from ._wav import iter_wav, wav_header

__all__ = [
    "DEFAULT_WAV_SIZE",
    "FAST_POLL",
    "FAST_RETRY",
    "FAST_TIMEOUTS",
    "CallbackAttempt",
    "CallbackBody",
    "CallbackDelivery",
    "CallbackFaults",
    "FakeTask",
    "FakeVidgo",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "RouteName",
    "fast_client",
    "iter_wav",
    "serve",
    "wav_header",
]
