"""Errors of the record path, split by what the caller must do about them.

`PoisonRecord` and its subclasses mean *this record* is bad: retrying cannot help, so
the agent runtime routes it to the dead-letter topic and moves on. `RegistryUnavailable`
and `SchemaRegistrationError` mean the *environment* is wrong (registry down, schema
refused): dead-lettering would lose good records, so they propagate and stop the agent.
"""

from __future__ import annotations


class PoisonRecord(Exception):
    """A record that can never be processed; `reason` is a short, stable code for the DLQ.

    Codes: MALFORMED_FRAME, UNKNOWN_SCHEMA_ID, SCHEMA_MISMATCH (decode);
    INVALID_VALUE, UNKNOWN_SYMBOL (semantic validation); MALFORMED_ROW, OUT_OF_ORDER,
    DUPLICATE_BAR (a row of a market-data file, `quantum.marketdata`).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return self.message


class DecodeError(PoisonRecord):
    """The bytes are not a readable record of the expected schema."""


class InvalidRecord(PoisonRecord):
    """The record decodes but its values make no sense (NaN price, negative quantity, ...)."""


class EncodeError(ValueError):
    """A value does not match the schema it is being written with: a bug in the producer."""


class RegistryUnavailable(RuntimeError):
    """The schema registry did not answer (in time) or failed: retry later, never dead-letter."""


class SchemaRegistrationError(RuntimeError):
    """The registry refused a schema (typically 409: incompatible with the subject's latest)."""

    def __init__(self, subject: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{subject}: {message}")
        self.subject = subject
        self.status = status


class CliError(Exception):
    """A failure the user can act on: `quantum` prints it as one line and exits 2."""


# Not the record's fault: an agent that meets one stops (and is restarted) instead of
# dead-lettering a good record (agents/runtime.py `stop_for_environment`).
ENVIRONMENT_ERRORS: tuple[type[Exception], ...] = (RegistryUnavailable, SchemaRegistrationError)
