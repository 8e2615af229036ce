"""Structured logs and EMF metrics, shared by the Lambdas and the agent.

Messages keep the wording operators of ``db-sync.sh`` grep for
(``Database uploaded successfully to s3://...``); the JSON around them carries the details.
The level and the namespace come from ``settings.ObservabilitySettings``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from chalicelib.settings import METRICS_NAMESPACE, ObservabilitySettings

NAMESPACE = METRICS_NAMESPACE

Handler = Callable[[Any, Any], Any]


def logger(service: str, level: str | None = None) -> Logger:
    """A JSON logger; level from ``WAKEFUL_LOG_LEVEL`` (default INFO) unless given."""
    return Logger(
        service=service,
        level=level or ObservabilitySettings.from_env().log_level,
        use_rfc3339=True,
    )


def metrics(service: str, namespace: str | None = None) -> Metrics:
    """EMF metrics in ``POWERTOOLS_METRICS_NAMESPACE`` (set per stage), else ``wakeful``."""
    return Metrics(
        namespace=namespace or ObservabilitySettings.from_env().metrics_namespace,
        service=service,
    )


def emit(
    sink: Metrics, name: str, value: float = 1, unit: str = MetricUnit.Count,
    **properties: Any,
) -> None:
    """Record one metric and flush it at once (agents are long-lived, not per-invocation)."""
    sink.add_metric(name=name, unit=unit, value=value)
    for key, item in properties.items():
        sink.add_metadata(key=key, value=item)
    sink.flush_metrics()


class MetricSink(Protocol):
    """Where the control plane's rooms and the front door record an outcome."""

    def emit(self, name: str, value: float = 1, unit: str = "Count", **properties: Any) -> None:
        ...


class PowertoolsMetrics:
    """The ``MetricSink`` of the Lambdas: EMF metrics through Powertools, flushed as they happen."""

    def __init__(self, service: str = "control-plane") -> None:
        self._sink = metrics(service)

    def emit(self, name: str, value: float = 1, unit: str = "Count", **properties: Any) -> None:
        emit(self._sink, name, value, unit, **properties)


def lambda_handler(log: Logger, service: str) -> Callable[[Handler], Handler]:
    """Wrap a Lambda handler: every log line carries the invocation's request id (and the
    function's name, memory and cold start), and the first invocation of a container counts a
    ``ColdStart`` metric."""
    cold_starts = metrics(service)
    # Metrics are flushed as they are emitted, so the flush at the end of an invocation finds
    # none: that is how it should be, not a warning for every container.
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    def wrap(handler: Handler) -> Handler:
        counted = cold_starts.log_metrics(handler, capture_cold_start_metric=True)
        wrapped: Handler = log.inject_lambda_context(counted)
        return wrapped

    return wrap


__all__ = [
    "NAMESPACE",
    "MetricSink",
    "MetricUnit",
    "PowertoolsMetrics",
    "emit",
    "lambda_handler",
    "logger",
    "metrics",
]
