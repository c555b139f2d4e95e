"""What one request is: an async call that a workload describes and a worker schedules.

A workload hands the generator an *operation reference* — "package.module:factory" plus JSON
parameters — because workers are separate processes that build their own operation. The
factory is awaited once per worker; the operation's `call` is awaited once per request and
returns what happened. Exceptions escaping `call` are recorded as `error:<ExceptionName>`.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class CallResult:
    """The outcome of one call ("ok", or an error kind such as "http_503" or "timeout") and a
    label that groups samples (an upstream, a cache tier, a query kind)."""

    outcome: str = "ok"
    label: str = ""


OK = CallResult()


class Operation(Protocol):
    async def call(self, seq: int) -> CallResult:
        """Make request number `seq` of this worker."""
        ...

    def stats(self) -> dict[str, float]:
        """Figures only the operation knows (pool statistics, cache sizes), read after the run."""
        ...

    async def close(self) -> None:
        """Release connections and pools."""
        ...


OperationFactory = Callable[[dict[str, Any]], Awaitable[Operation]]


@dataclass(frozen=True)
class OperationRef:
    """Where a worker finds the operation: `module:factory` and its JSON parameters."""

    factory: str
    params: dict[str, Any]

    def load(self) -> OperationFactory:
        module_name, _, attribute = self.factory.partition(":")
        if not module_name or not attribute:
            raise ValueError(f"operation reference {self.factory!r} is not 'module:factory'")
        factory: OperationFactory = getattr(importlib.import_module(module_name), attribute)
        return factory
