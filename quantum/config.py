"""The kit's configuration types and how a process reads them: env, a TOML file, defaults.

The kit (serde, Kafka helpers, DLQ, infra, topology tools) types against
`RuntimeSettings`, a Protocol, never against the composed application settings
(`quantum.app.settings.Settings`, which adds every agent's section). `KitSettings`
is the concrete loader with the kit's sections; the app subclasses it.

Precedence: explicit arguments > environment > the TOML file named by `QT_CONFIG`
(default `./quantum.toml` if present) > the defaults documented on each field.
Nested sections are set with `QT_<SECTION>__<FIELD>`, e.g. `QT_GOVERNOR__MAX_OPEN_POSITIONS=8`.
Two well-known names are honoured as they are: `KAFKA_BOOTSTRAP` and `SCHEMA_REGISTRY_URL`.
Secrets (`BINANCE_API_KEY`, `BINANCE_API_SECRET`) are `SecretStr`, never printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Protocol, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_REGISTRY_PORT = 18081


def default_state_dir() -> Path:
    """Where the local broker keeps its jars and data; `quantum infra down --purge` removes it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quantum-trader"


class KafkaSettings(BaseModel):
    """bootstrap: broker list; topic_prefix: prepended to every topic (tests and replay runs
    use their own prefix so they never see each other's records).
    commit_interval_s: how often Faust agents commit their input offsets (Faust's default
    2.8 s). A lock-step replay waits on committed offsets after every bar, so it sets this
    to a few milliseconds; live, the default keeps commit traffic low."""

    model_config = ConfigDict(frozen=True)

    bootstrap: str = f"127.0.0.1:{DEFAULT_KAFKA_PORT}"
    topic_prefix: str = ""
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    commit_interval_s: float = Field(2.8, gt=0)


class RegistrySettings(BaseModel):
    """url: any Confluent-compatible registry (the local Apicurio serves its ccompat API).
    timeout_s: every registry call is bounded; Apicurio has been seen to leave a request hanging."""

    model_config = ConfigDict(frozen=True)

    url: str = f"http://127.0.0.1:{DEFAULT_REGISTRY_PORT}/apis/ccompat/v7"
    timeout_s: float = 10.0
    compatibility: Literal["BACKWARD", "FORWARD", "FULL", "NONE"] = "BACKWARD"


class InfraSettings(BaseModel):
    """The no-Docker local broker and registry started by `quantum infra up`."""

    model_config = ConfigDict(frozen=True)

    state_dir: Path = Field(default_factory=default_state_dir)
    kafka_port: int = DEFAULT_KAFKA_PORT
    controller_port: int = DEFAULT_CONTROLLER_PORT
    registry_port: int = DEFAULT_REGISTRY_PORT
    kafka_heap: str = "512m"
    start_registry: bool = True
    start_timeout_s: float = 90.0


class MarketSettings(BaseModel):
    """universe: the symbols this deployment trades. A record for any other symbol is
    dead-lettered with UNKNOWN_SYMBOL at ingress. Empty (the default): any well-formed
    symbol. Env: `QT_MARKET__UNIVERSE='["BTCUSDT","ETHUSDT"]'`."""

    model_config = ConfigDict(frozen=True)

    universe: frozenset[str] = frozenset()

    def universe_or_none(self) -> frozenset[str] | None:
        return self.universe or None


class SupervisorSettings(BaseModel):
    """`quantum worker --supervise`: restarts a worker that exits or stops committing.

    stall_timeout_s: a worker whose committed offsets have not moved for this long while
        it has records to read is taken as stalled and restarted (SIGKILL, then a start
        from the committed offsets). It must be longer than a start-up's changelog
        restore; 0 turns the check off. (Faust 0.15.3 can lose a record it fetched while
        a restarted worker was still starting: docs/exits.md, "Restart".)
    check_every_s: how often the supervisor asks the broker for the worker's lag.
    backoff_s / backoff_max_s: the wait before a restart, doubling after each restart
        that came within `healthy_after_s` of its start, up to the max.
    max_restarts / window_s: more restarts than this within the window and the
        supervisor gives up, exiting with the worker's last status (a crash loop is for
        the outer orchestrator and a human, not for more restarts).
    """

    model_config = ConfigDict(frozen=True)

    stall_timeout_s: float = Field(120.0, ge=0)
    check_every_s: float = Field(5.0, gt=0)
    backoff_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    healthy_after_s: float = Field(60.0, ge=0)
    max_restarts: int = Field(10, ge=0)
    window_s: float = Field(600.0, gt=0)


class BinanceSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    testnet: bool = True
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None


class RuntimeSettings(Protocol):
    """What kit code, topology tools and agent shells need of the settings they are given.

    `KitSettings` and the app's composed `Settings` both satisfy it; an agent that needs
    its own section types against a Protocol extending this one (see
    `agents/governor/config.py: GovernorSettings`).
    """

    @property
    def kafka(self) -> KafkaSettings: ...
    @property
    def registry(self) -> RegistrySettings: ...
    @property
    def market(self) -> MarketSettings: ...

    def topic(self, name: str) -> str: ...
    def child_env(self, **extra: str) -> dict[str, str]: ...


class KitSettings(BaseSettings):
    """The kit's sections, read from env and file; `quantum.app.settings.Settings` adds the
    agents' sections. Tests pass overrides as keyword arguments."""

    model_config = SettingsConfigDict(
        env_prefix="QT_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    infra: InfraSettings = InfraSettings()
    market: MarketSettings = MarketSettings()
    binance: BinanceSettings = BinanceSettings()
    supervisor: SupervisorSettings = SupervisorSettings()

    # Conventional names, read as they are (they win over the nested QT_ forms).
    kafka_bootstrap_env: str | None = Field(
        None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "QT_KAFKA_BOOTSTRAP")
    )
    registry_url_env: str | None = Field(
        None, validation_alias=AliasChoices("SCHEMA_REGISTRY_URL", "QT_SCHEMA_REGISTRY_URL")
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("QT_CONFIG", "quantum.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    def model_post_init(self, _context: object) -> None:
        # Fold the conventional env names into their sections once, so readers use one path.
        if self.kafka_bootstrap_env:
            object.__setattr__(
                self, "kafka", self.kafka.model_copy(update={"bootstrap": self.kafka_bootstrap_env})
            )
        if self.registry_url_env:
            object.__setattr__(
                self, "registry", self.registry.model_copy(update={"url": self.registry_url_env})
            )

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one (with this run's prefix)."""
        return f"{self.kafka.topic_prefix}{name}"

    def child_env(self, **extra: str) -> dict[str, str]:
        """This process's environment plus what makes a child process (a worker, the
        governor, a load generator) see the same broker, registry and topic prefix."""
        env = dict(os.environ)
        env.update(
            {
                "KAFKA_BOOTSTRAP": self.kafka.bootstrap,
                "SCHEMA_REGISTRY_URL": self.registry.url,
                "QT_KAFKA__TOPIC_PREFIX": self.kafka.topic_prefix,
            }
        )
        env.update(extra)
        return env

    def with_prefix(self, prefix: str) -> Self:
        return self.model_copy(
            update={"kafka": self.kafka.model_copy(update={"topic_prefix": prefix})}
        )
