"""API keys: only from the environment or a secrets file, never printed, never in a record.

Sources, first found wins:

1. `QT_BINANCE__API_KEY` and `QT_BINANCE__API_SECRET` in the environment;
2. the file named by `QT_BINANCE__SECRETS_FILE` (or passed explicitly): `NAME=value` lines
   with those two names (`#` comments and blank lines allowed). The file must not be
   readable by group or others (like ssh's private keys): a key in a world-readable file
   is refused, not used.

`Secret` wraps each value: its `repr`/`str` is `Secret('***')`, so a key that reaches a log
line, a traceback's locals or an exception message shows as stars. Only `reveal()` gives the
value, and only the REST adapter calls it, to hand the key to python-binance.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_KEY = "QT_BINANCE__API_KEY"
ENV_SECRET = "QT_BINANCE__API_SECRET"
ENV_FILE = "QT_BINANCE__SECRETS_FILE"


class CredentialsError(RuntimeError):
    """No usable keys; the message names where they were looked for, never a value."""


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value or value != value.strip():
            raise CredentialsError("a key is empty or has surrounding whitespace")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:  # never pickled into a record by accident
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, slots=True)
class Credentials:
    """An API key and secret; `source` says where they came from (for logs)."""

    api_key: Secret
    api_secret: Secret
    source: str

    def redact(self, text: str) -> str:
        """`text` with the key and secret replaced by stars (for third-party messages)."""
        for value in (self.api_key.reveal(), self.api_secret.reveal()):
            text = text.replace(value, "***")
        return text

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials | None:
        key, secret = environ.get(ENV_KEY), environ.get(ENV_SECRET)
        if not key and not secret:
            return None
        if not key or not secret:
            missing = ENV_KEY if not key else ENV_SECRET
            raise CredentialsError(f"{missing} is not set (both {ENV_KEY} and {ENV_SECRET} are)")
        return cls(Secret(key), Secret(secret), "environment")

    @classmethod
    def from_file(cls, path: Path) -> Credentials:
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise CredentialsError(f"secrets file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialsError(
                f"secrets file {path} is accessible by group or others "
                f"(mode {stat.filemode(mode)}); chmod 600 it"
            )
        values: dict[str, str] = {}
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, sep, value = text.partition("=")
            if not sep:
                raise CredentialsError(f"secrets file {path}:{lineno}: expected NAME=value")
            values[name.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
        found = cls.from_env(values)
        if found is None:
            raise CredentialsError(f"secrets file {path} has no {ENV_KEY} / {ENV_SECRET}")
        return cls(found.api_key, found.api_secret, f"file {path}")

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, secrets_file: Path | None = None
    ) -> Credentials:
        """From the environment, else from the secrets file; CredentialsError if neither."""
        env = os.environ if environ is None else environ
        found = cls.from_env(env)
        if found is not None:
            return found
        path = secrets_file or (Path(env[ENV_FILE]) if env.get(ENV_FILE) else None)
        if path is None:
            raise CredentialsError(
                f"no Binance keys: set {ENV_KEY} and {ENV_SECRET}, or {ENV_FILE}"
            )
        return cls.from_file(path)
