"""Policies: frozen, keyword-only, validated; change them with ``attrs.evolve``."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["DEFAULT_TIMEOUT", "PollPolicy", "RetryPolicy", "Timeouts"]

#: Default deadline, in seconds, of every wait (15 minutes).
DEFAULT_TIMEOUT = 900.0


#: The longest ``PollPolicy.max_interval``, in seconds (a day): a cap past it means
#: no cap, and one near the largest float overflows the schedule's arithmetic.
LONGEST_INTERVAL = 86_400.0


def finite_number(value: object) -> bool:
    """Whether ``value`` is an int or float that a float holds, and finite (NaN, the
    infinities and ints past 1.8e308 are not; ``math.isfinite`` overflows on those ints)."""
    return isinstance(value, (int, float)) and abs(value) <= sys.float_info.max


def _number(
    low: float, high: float = math.inf, *, strict: bool = False
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """A validator of a finite number from ``low`` (excluded if ``strict``) to ``high``."""
    sign = ">" if strict else ">="
    bounds = f"{sign} {low:g}" if high == math.inf else f"from {low:g} to {high:g}"

    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        number = finite_number(value)
        if not (number and (value > low if strict else value >= low) and value <= high):
            raise ValueError(
                f"{attribute.name} must be a finite number {bounds}, got {value!r:.40}"
            )

    return check


_non_negative = _number(0)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How single calls retry transient failures.

    Attributes:
        max_attempts: Attempts per call (``get_task``, a bare ``submit``),
            the first one included. Operations with a deadline keep going
            until the deadline instead.
        base_delay: Scale of the exponential backoff, in seconds; each delay
            is drawn uniformly from ``[0, min(max_delay, base_delay * 2**n)]``
            (full jitter).
        max_delay: Cap of one backoff delay, in seconds.
        max_retry_after: Cap on a server's ``Retry-After``, in seconds.
        budget: Retry tokens of the client-wide budget. Every retry spends
            one, every success earns ``budget_ratio`` back; retries stop
            while fewer than half remain, so a dead API is not hammered.
        budget_ratio: Tokens a success earns back.
    """

    max_attempts: int = attrs.field(default=4, validator=_number(1))
    base_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=120.0, validator=_non_negative)
    budget: float = attrs.field(default=20.0, validator=_non_negative)
    budget_ratio: float = attrs.field(default=0.2, validator=_non_negative)


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How a wait spaces its status requests.

    Attributes:
        initial: Delay before the first status check, in seconds.
        factor: Growth of the interval after each unchanged answer.
        max_interval: Cap of one interval, in seconds (at most a day).
        jitter: Each interval is drawn within this fraction of itself,
            either way (0 disables it), so that waits started together
            spread out.
        use_progress: When the server reports ``progress``, schedule the
            next check at the estimated finish instead of blindly.
        learn: Learn from the tasks this client saw finish how long they
            take (per model), and check where finishes are likely instead of
            blindly; the blind schedule runs until enough are known,
            wherever the learned checks would not beat it by a margin (in
            requests and in the tail of the delays), and for a model whose tasks report
            ``progress`` (with ``use_progress``: the estimate needs their
            early answers). Callbacks still pace.
        callback_interval: With a callback receiver, the interval of the
            safety-net polling that finds tasks whose callbacks were lost.
        unseen_grace: Seconds a task submitted elsewhere (named by a
            :class:`TaskHandle`, or an earlier batch run's) may answer 404
            before its first answer, as one just created may not be shown yet
            (a task this client submitted: until the deadline; a bare id:
            never).
    """

    initial: float = attrs.field(default=1.0, validator=_non_negative)
    factor: float = attrs.field(default=1.5, validator=_number(1))
    max_interval: float = attrs.field(default=15.0, validator=_number(0, LONGEST_INTERVAL))
    jitter: float = attrs.field(default=0.1, validator=_number(0, 1))
    use_progress: bool = True
    learn: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    callback_interval: float = attrs.field(default=60.0, validator=_non_negative)
    unseen_grace: float = attrs.field(default=30.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class Timeouts:
    """Timeouts of one HTTP request, in seconds.

    Attributes:
        connect: Time to open a connection (pool wait included).
        total: Time for the whole request, body included.
    """

    connect: float = attrs.field(default=10.0, validator=_number(0, strict=True))
    total: float = attrs.field(default=30.0, validator=_number(0, strict=True))
