"""Structured logs and EMF metrics, shared by the Lambdas and the agent.

Messages keep the wording operators of ``db-sync.sh`` grep for
(``Database uploaded successfully to s3://...``); the JSON around them carries the details.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "wakeful"


def logger(service: str) -> Logger:
    """A JSON logger; level from ``WAKEFUL_LOG_LEVEL`` (default INFO)."""
    return Logger(
        service=service,
        level=os.environ.get("WAKEFUL_LOG_LEVEL", "INFO"),
        use_rfc3339=True,
    )


def metrics(service: str) -> Metrics:
    """EMF metrics in ``POWERTOOLS_METRICS_NAMESPACE`` (set per stage), else ``wakeful``."""
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE
    return Metrics(namespace=namespace, service=service)


def emit(
    sink: Metrics, name: str, value: float = 1, unit: str = MetricUnit.Count,
    **properties: Any,
) -> None:
    """Record one metric and flush it at once (agents are long-lived, not per-invocation)."""
    sink.add_metric(name=name, unit=unit, value=value)
    for key, item in properties.items():
        sink.add_metadata(key=key, value=item)
    sink.flush_metrics()


__all__ = ["MetricUnit", "emit", "logger", "metrics"]
