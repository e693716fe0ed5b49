"""Test helpers: :class:`FakeVidgo`, an in-process stand-in for the Vidgo API.

Example::

    from vidgo_async.testing import FakeVidgo, Fault

    async with FakeVidgo(api_key="test-key") as fake:
        fake.inject(Fault.rate_limited(retry_after="1"), route="submit")
        ...  # point a client at fake.url
"""

from ._delivery import CallbackAttempt, CallbackBody, CallbackDelivery, CallbackFaults
from ._faults import Fault, FaultKind, RouteName
from ._log import RecordedRequest
from ._server import DEFAULT_WAV_SIZE, FakeVidgo, serve
from ._state import FakeTask
from ._wav import iter_wav, wav_header

__all__ = [
    "DEFAULT_WAV_SIZE",
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
    "iter_wav",
    "serve",
    "wav_header",
]
