"""vidgo-async: an asyncio SDK for the Vidgo task API.

Convert generated music tracks to WAV, safely and economically::

    async with VidgoClient() as client:          # key from VIDGO_API_KEY
        url = await client.convert_to_wav(task_id, audio_id)
"""

import importlib.metadata
import logging

from ._batch.intake import wav_file_name
from ._batch.run import BatchProgress
from ._client import VidgoClient
from ._config import DEFAULT_TIMEOUT, PollPolicy, RetryPolicy, Timeouts
from ._events import Event, EventHook, EventKind
from ._models import Balance, ConversionResult, Task, TaskFile, TaskHandle, TaskStatus
from .errors import (
    AlreadyConvertedError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    InsufficientCreditsError,
    InvalidCallbackError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SubmitOutcomeUnknownError,
    TaskError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
    UnusableTaskIdError,
    VidgoError,
)

__version__ = importlib.metadata.version("vidgo-async")

logging.getLogger("vidgo_async").addHandler(logging.NullHandler())

__all__ = [
    "DEFAULT_TIMEOUT",
    "APIError",
    "AlreadyConvertedError",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "BatchProgress",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "ConversionResult",
    "Event",
    "EventHook",
    "EventKind",
    "InsufficientCreditsError",
    "InvalidCallbackError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPolicy",
    "RateLimitError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "SubmitOutcomeUnknownError",
    "Task",
    "TaskError",
    "TaskFailedError",
    "TaskFile",
    "TaskHandle",
    "TaskStatus",
    "TaskTimeoutError",
    "Timeouts",
    "TransportError",
    "UnusableTaskIdError",
    "VidgoClient",
    "VidgoError",
    "__version__",
    "wav_file_name",
]
