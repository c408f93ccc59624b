"""The agent registry: each agent declared once, everything else derived from it."""

from __future__ import annotations

import importlib
import inspect

import pytest
from pydantic import BaseModel

from agents.registry import AGENT_PACKAGES, REGISTRY, Registry, UnknownAgent, load
from agents.spec import AgentSpec
from quantum.app.cli import build_parser
from quantum.app.settings import Settings
from quantum.errors import CliError
from topologies.declaration import MARKET_TICKS, PORTFOLIO, TOPOLOGY


def test_every_package_is_registered_once_under_its_own_name() -> None:
    assert REGISTRY.names() == AGENT_PACKAGES
    assert len(set(REGISTRY.names())) == len(REGISTRY)


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.name)
def test_each_spec_names_a_core_and_a_shell_that_exist(spec: AgentSpec) -> None:
    importlib.import_module(spec.core)
    entry = spec.load_shell()
    params = list(inspect.signature(entry).parameters)
    if spec.kind == "faust":
        assert params == ["ctx"], f"{spec.shell} must be register(ctx)"
    else:
        assert params[:3] == ["settings", "stop", "instance"], spec.shell
    for section, model in spec.config.items():
        assert issubclass(model, BaseModel) and model.model_config.get("frozen"), section
        assert model.__doc__, f"{model.__name__} must document its parameters"


def test_the_composed_settings_hold_every_agents_sections_with_defaults() -> None:
    s = Settings()
    for name, model in REGISTRY.config_sections().items():
        assert isinstance(getattr(s, name), model)
    assert s.clock.every_ms == 5_000
    assert Settings(clock={"every_ms": 7}).clock.every_ms == 7


def test_select_keeps_order_drops_repeats_and_names_the_unknown() -> None:
    assert [s.name for s in REGISTRY.select("governor, clock,governor")] == ["governor", "clock"]
    with pytest.raises(UnknownAgent, match=r"unknown agent\(s\) nope; known: passthrough"):
        REGISTRY.select("clock,nope")
    with pytest.raises(UnknownAgent, match="none given"):
        REGISTRY.select(" , ")


def test_worker_validates_names_from_the_registry() -> None:
    parser = build_parser()
    args = parser.parse_args(["worker", "--agents", "nope"])
    with pytest.raises(CliError, match="known: " + ", ".join(REGISTRY.names())):
        args.func(args, Settings())


def test_the_registry_refuses_undeclared_topics_and_shared_sections() -> None:
    def spec(name: str, reads: tuple[str, ...], config: dict[str, type[BaseModel]]) -> AgentSpec:
        return AgentSpec(name, reads, (), "probe", core="x", shell="x:y", config=config)

    class Probe(BaseModel):
        pass

    with pytest.raises(ValueError, match=r"'no\.such\.topic', not in the topology"):
        Registry((spec("a", ("no.such.topic",), {}),)).check(TOPOLOGY)
    with pytest.raises(ValueError, match="section 'probe' of b is a's"):
        Registry(
            (
                spec("a", (MARKET_TICKS,), {"probe": Probe}),
                spec("b", (PORTFOLIO,), {"probe": Probe}),
            )
        ).check(TOPOLOGY)
    with pytest.raises(ValueError, match="declared twice"):
        Registry((spec("a", (), {}), spec("a", (), {}))).check(TOPOLOGY)


def test_a_package_must_declare_itself_under_its_name() -> None:
    with pytest.raises(ModuleNotFoundError):
        load(("no_such_agent",))


def test_spec_refuses_a_malformed_shell_and_a_transactional_at_least_once() -> None:
    with pytest.raises(ValueError, match="module:function"):
        AgentSpec("a", (), (), "d", core="x", shell="no-colon")
    with pytest.raises(ValueError, match="exactly_once"):
        AgentSpec("a", (), (), "d", core="x", shell="m:f", kind="transactional")
