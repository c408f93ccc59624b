"""Configuration: env over file over defaults, the conventional names, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantum.app.settings import Settings


def test_defaults_are_the_audits_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL", "QT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no quantum.toml here
    g = Settings().governor
    assert (g.max_open_positions, g.active_slots_base, g.active_slots_trend_strong) == (10, 4, 6)
    assert (g.active_slots_chop, g.rotation_threshold, g.rotation_timeout_ms) == (3, 0.15, 120_000)


def test_env_overrides_file_and_conventional_names_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    toml = tmp_path / "quantum.toml"
    toml.write_text(
        "[governor]\nmax_open_positions = 7\nactive_slots_base = 2\n"
        '[kafka]\nbootstrap = "file:1"\ntopic_prefix = "from-file."\n'
    )
    monkeypatch.setenv("QT_CONFIG", str(toml))
    monkeypatch.setenv("QT_GOVERNOR__ACTIVE_SLOTS_BASE", "3")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "env:2")
    monkeypatch.delenv("SCHEMA_REGISTRY_URL", raising=False)
    s = Settings()
    assert s.governor.max_open_positions == 7  # file
    assert s.governor.active_slots_base == 3  # env beats file
    assert s.kafka.bootstrap == "env:2"  # KAFKA_BOOTSTRAP beats both
    assert s.topic("portfolio") == "from-file.portfolio"
    assert s.with_prefix("x.").topic("portfolio") == "x.portfolio"


def test_invalid_values_are_refused_with_the_field_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT_GOVERNOR__MAX_OPEN_POSITIONS", "0")
    with pytest.raises(ValueError, match="max_open_positions"):
        Settings()


def test_secrets_never_show_in_repr_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT_BINANCE__API_KEY", "key-do-not-print")
    monkeypatch.setenv("QT_BINANCE__API_SECRET", "secret-do-not-print")
    s = Settings()
    shown = f"{s!r} {s} {s.model_dump()} {s.model_dump_json()}"
    assert "do-not-print" not in shown
    assert s.binance.api_secret is not None
    assert s.binance.api_secret.get_secret_value() == "secret-do-not-print"


def test_child_env_hands_the_same_broker_registry_and_prefix_to_a_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings(
        kafka={"bootstrap": "h:1", "topic_prefix": "p."}, registry={"url": "http://r/ccompat"}
    )
    env = s.child_env(EXTRA="1")
    assert env["EXTRA"] == "1"
    for name, value in env.items():  # the child's view: only what it inherits
        monkeypatch.setenv(name, value)
    child = Settings()
    assert (child.kafka.bootstrap, child.registry.url, child.topic("x")) == (
        "h:1",
        "http://r/ccompat",
        "p.x",
    )


def test_the_kit_reads_its_own_sections_and_the_app_adds_the_agents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from quantum.config import KitSettings

    monkeypatch.setenv("QT_KAFKA__TOPIC_PREFIX", "k.")
    monkeypatch.setenv("QT_CLOCK__EVERY_MS", "60000")
    kit = KitSettings()
    assert kit.topic("x") == "k.x" and not hasattr(kit, "governor")
    s = Settings()
    assert issubclass(Settings, KitSettings)
    assert (s.topic("x"), s.clock.every_ms, s.governor.max_open_positions) == ("k.x", 60_000, 10)


def test_governor_deployment_ids_derive_from_the_topic_prefix() -> None:
    """A demo or replay run under its own prefix must never fence the live governor."""
    live = Settings(kafka={"topic_prefix": ""}, governor_shell={})
    demo = live.with_prefix("demo-1a2b.")
    ids = {
        (s.governor_shell.transactional_id_for(p), s.governor_shell.group_id_for(p))
        for s in (live, demo)
        for p in (s.kafka.topic_prefix,)
    }
    assert ids == {
        ("quantum-governor", "quantum-governor"),
        ("demo-1a2b.quantum-governor", "demo-1a2b.quantum-governor"),
    }
    pinned = demo.governor_shell.model_copy(update={"transactional_id": "x", "group_id": "y"})
    assert (pinned.transactional_id_for("demo."), pinned.group_id_for("demo.")) == ("x", "y")
