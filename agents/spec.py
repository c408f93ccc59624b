"""How an agent declares itself: one `AgentSpec` in `agents/<name>/spec.py`.

The spec is the only place an agent is named. `agents/registry.py` lists the agent
packages; from their specs come the agent list of `quantum topology show`, the names,
help and validation of `quantum worker --agents`, the agent sections of the composed
settings, and the agent's own CLI commands. Modules are named as strings and imported
only when used, so listing agents (`quantum --help`) never imports Faust or a model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel

Guarantee = Literal["at_least_once", "exactly_once"]
ShellKind = Literal["faust", "transactional"]

GUARANTEE_TEXT: dict[Guarantee, str] = {
    "at_least_once": "at_least_once (idempotent)",
    "exactly_once": "exactly_once (transactions)",
}


@dataclass(frozen=True)
class AgentSpec:
    """One agent, declared once.

    name: the agent's name (`quantum worker --agents NAME`); equals its package name.
    reads / writes: logical topic names from `topologies/declaration.py`.
    doc: one line on what it decides; shown by `quantum worker --help` and `topology show`.
    core: module of the pure decision core (no I/O; tests/unit/test_layers.py checks it).
    shell: "module:function" of the entry point. For `kind="faust"`: `register(ctx:
        AgentContext) -> None`, which declares the Faust agent on `ctx.app`. For
        `kind="transactional"`: `run(settings, stop: Callable[[], bool], instance: str)
        -> None`, a confluent-kafka consume-decide-produce loop that returns once `stop()`
        is true (the worker runs it in a thread).
    guarantee: what a restart may do to its outputs: at_least_once (duplicates possible,
        the readers are idempotent) or exactly_once (transactions).
    config: settings sections this agent owns, name -> frozen pydantic model; the app
        composes them into `Settings` (env `QT_<SECTION>__<FIELD>`). The section named like
        the agent is handed to a Faust shell as `ctx.config`.
    commands: module with `add_commands(subparsers)` for the agent's own CLI verbs.
    """

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    doc: str
    core: str
    shell: str
    kind: ShellKind = "faust"
    guarantee: Guarantee = "at_least_once"
    config: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    commands: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads", tuple(self.reads))
        object.__setattr__(self, "writes", tuple(self.writes))
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))
        if ":" not in self.shell:
            raise ValueError(f"{self.name}: shell must be 'module:function', got {self.shell!r}")
        if self.kind == "transactional" and self.guarantee != "exactly_once":
            raise ValueError(f"{self.name}: a transactional shell is exactly_once")

    @property
    def guarantee_text(self) -> str:
        return GUARANTEE_TEXT[self.guarantee]

    def load_shell(self) -> Callable[..., Any]:
        """The shell's entry function (imports the shell module)."""
        module, _, function = self.shell.partition(":")
        return getattr(importlib.import_module(module), function)

    def own_config(self, settings: object) -> Any:
        """This agent's own section of `settings` (the one named like it), or None."""
        return getattr(settings, self.name) if self.name in self.config else None
