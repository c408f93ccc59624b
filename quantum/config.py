"""One typed place for configuration: environment variables, an optional TOML file, defaults.

Precedence: explicit arguments > environment > the TOML file named by `QT_CONFIG`
(default `./quantum.toml` if present) > the defaults documented on each field.
Nested sections are set with `QT_<SECTION>__<FIELD>`, e.g. `QT_GOVERNOR__MAX_OPEN_POSITIONS=8`.
Two well-known names are honoured as they are: `KAFKA_BOOTSTRAP` and `SCHEMA_REGISTRY_URL`.
Secrets (`BINANCE_API_KEY`, `BINANCE_API_SECRET`) are `SecretStr`, never printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agents.governor.config import GovernorConfig

DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_REGISTRY_PORT = 18081
GOVERNOR_DEPLOYMENT_ID = "quantum-governor"  # after the topic prefix: transactional.id, group


def default_state_dir() -> Path:
    """Where the local broker keeps its jars and data; `quantum infra down --purge` removes it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quantum-trader"


class KafkaSettings(BaseModel):
    """bootstrap: broker list; topic_prefix: prepended to every topic (tests and replay runs
    use their own prefix so they never see each other's records)."""

    model_config = ConfigDict(frozen=True)

    bootstrap: str = f"127.0.0.1:{DEFAULT_KAFKA_PORT}"
    topic_prefix: str = ""
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"


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


class GovernorShellSettings(BaseModel):
    """How the exactly-once governor loop batches and persists.

    commands_per_transaction: upper bound of commands decided in one Kafka transaction;
        one commit costs ~10-20 ms here, so batching is where throughput comes from.
    max_batch_wait_ms: how long the loop waits to fill a batch before committing what it has.
    snapshot_every: commands between state snapshots (restart replays at most this many).
    transactional_id: fixed per deployment; a second instance with it fences the first.
        None (the default): `<topic prefix>quantum-governor`, so a demo or replay run under
        its own prefix never fences the live governor on the same broker, nor it them.
    clock_every_ms: event-time spacing of the Clock heartbeats the clock agent derives
        from market ticks (reservations and rotation waits expire on them).
    group_id: the consumer group whose committed offset is the governor's position.
        None (the default): `<topic prefix>quantum-governor`, for the same reason.
    """

    model_config = ConfigDict(frozen=True)

    commands_per_transaction: int = Field(100, ge=1)
    max_batch_wait_ms: int = Field(5, ge=0)
    snapshot_every: int = Field(1000, ge=1)
    transactional_id: str | None = None
    clock_every_ms: int = Field(5_000, ge=1)
    group_id: str | None = None

    def transactional_id_for(self, topic_prefix: str) -> str:
        return self.transactional_id or f"{topic_prefix}{GOVERNOR_DEPLOYMENT_ID}"

    def group_id_for(self, topic_prefix: str) -> str:
        return self.group_id or f"{topic_prefix}{GOVERNOR_DEPLOYMENT_ID}"


class MarketSettings(BaseModel):
    """universe: the symbols this deployment trades. A record for any other symbol is
    dead-lettered with UNKNOWN_SYMBOL at ingress. Empty (the default): any well-formed
    symbol. Env: `QT_MARKET__UNIVERSE='["BTCUSDT","ETHUSDT"]'`."""

    model_config = ConfigDict(frozen=True)

    universe: frozenset[str] = frozenset()

    def universe_or_none(self) -> frozenset[str] | None:
        return self.universe or None


class BinanceSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    testnet: bool = True
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None


class Settings(BaseSettings):
    """The whole configuration. `Settings()` reads env and file; tests pass overrides."""

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
    governor: GovernorConfig = GovernorConfig()
    governor_shell: GovernorShellSettings = GovernorShellSettings()
    binance: BinanceSettings = BinanceSettings()

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

    def with_prefix(self, prefix: str) -> Settings:
        return self.model_copy(
            update={"kafka": self.kafka.model_copy(update={"topic_prefix": prefix})}
        )


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
