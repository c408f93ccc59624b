"""Paper exchange agent records <-> Avro dicts (`orders` in, `execution.results` out)."""

from __future__ import annotations

from typing import Any

from agents.paper_exchange.model import VenueOrder, VenueReport
from quantum.records import from_avro, to_avro


def order_from_avro(d: dict[str, Any]) -> VenueOrder:
    """The order (or cancel) in a decoded `orders` record; InvalidRecord if it does not
    convert."""
    return from_avro(VenueOrder, d)


def order_to_avro(o: VenueOrder) -> dict[str, Any]:
    return to_avro(o)


def report_to_avro(r: VenueReport) -> dict[str, Any]:
    """The ExecutionResult record (execution.results.avsc) of a report."""
    return to_avro(r)


def report_from_avro(d: dict[str, Any]) -> VenueReport:
    return from_avro(VenueReport, d)
