"""The client-wide retry budget: how many retries a failing API still gets."""

from __future__ import annotations

import attrs

from .._config import RetryPolicy

__all__ = ["RetryBudget"]


@attrs.define
class RetryBudget:
    """A client-wide allowance of retries (after gRPC's retry throttling).

    Every retryable failure costs a token, every success earns
    ``ratio`` back; retries are allowed only while more than half the
    tokens remain. A dead API therefore sees a handful of retries, then one
    request per call, instead of ``max_attempts`` requests per call.
    """

    policy: RetryPolicy
    _tokens: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._tokens = self.policy.budget

    def allows_retry(self) -> bool:
        """Whether a retry may be made now."""
        return self._tokens > self.policy.budget / 2

    def record_failure(self) -> None:
        """Note a retryable failure."""
        self._tokens = max(0.0, self._tokens - 1)

    def record_success(self) -> None:
        """Note a successful answer."""
        self._tokens = min(self.policy.budget, self._tokens + self.policy.budget_ratio)
