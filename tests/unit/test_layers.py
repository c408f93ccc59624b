"""Layers import one way: kit <- exchange <- topologies <- agents <- app (docs/agents.md).

Read from the source with `ast`, not by importing it: an import inside a function or
under TYPE_CHECKING counts as much as one at the top, and `importlib.import_module` with
a literal name counts too. Infra is kit-level (it may import the kit, nothing above).
A pure core (`agents/<name>/core.py` or `agents/<name>/core/`) may import the standard
library minus I/O, clocks and threads, numpy and torch, `exchange`, its own package,
`agents.governor.model` (for governor commands) and the kit's pure `quantum.errors` and
`quantum.records`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Layer -> the layers it may import.
ALLOWED: dict[str, frozenset[str]] = {
    "kit": frozenset({"kit"}),
    "infra": frozenset({"kit", "infra"}),
    "exchange": frozenset({"kit", "exchange"}),
    "topologies": frozenset({"kit", "exchange", "topologies"}),
    "agents": frozenset({"kit", "exchange", "topologies", "agents"}),
    "app": frozenset({"kit", "infra", "exchange", "topologies", "agents", "app"}),
}
PACKAGES = ("quantum", "infra", "exchange", "topologies", "agents")

CORE_THIRD_PARTY = frozenset({"numpy", "torch"})
CORE_KIT = frozenset({"quantum.errors", "quantum.records"})
CORE_SHARED_AGENT_MODULES = frozenset({"agents.governor.model"})
# Standard-library modules a pure core must not touch: I/O, processes, threads, the clock.
CORE_FORBIDDEN_STDLIB = frozenset(
    {
        "asyncio",
        "http",
        "multiprocessing",
        "os",
        "pathlib",
        "shutil",
        "socket",
        "subprocess",
        "threading",
        "time",
        "urllib",
    }
)


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name, or None when it is not the project's."""
    top = module.split(".")[0]
    if top == "quantum":
        # `python -m quantum` (quantum/__main__.py) is the app's entry point.
        app = module in ("quantum.app", "quantum.__main__") or module.startswith("quantum.app.")
        return "app" if app else "kit"
    return top if top in PACKAGES else None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, dotted name) of everything `path` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from quantum import app` imports quantum.app: name each imported submodule.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def source_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        if (ROOT / package).is_dir():
            files += sorted((ROOT / package).rglob("*.py"))
    return files


def upward_imports(files: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for path in files:
        own = layer_of(module_name(path, root))
        assert own is not None, path
        for line, module in imported_modules(path, root):
            target = layer_of(module)
            if target is not None and target not in ALLOWED[own]:
                rel = path.relative_to(root)
                problems.append(f"{rel}:{line}: {own} imports {module} ({target})")
    return problems


def core_files() -> list[Path]:
    agents = ROOT / "agents"
    return sorted({*agents.glob("*/core.py"), *agents.glob("*/core/*.py")})


def impure_core_imports(files: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for path in files:
        own_package = ".".join(module_name(path, root).split(".")[:2])  # agents.<name>
        allowed = {"exchange", own_package, *CORE_KIT, *CORE_SHARED_AGENT_MODULES}
        for line, module in imported_modules(path, root):
            top = module.split(".")[0]
            if layer_of(module) is not None:
                ok = any(module == m or module.startswith(m + ".") for m in allowed)
            elif top in sys.stdlib_module_names:
                ok = top not in CORE_FORBIDDEN_STDLIB
            else:
                ok = top in CORE_THIRD_PARTY
            if not ok:
                rel = path.relative_to(root)
                problems.append(f"{rel}:{line}: a pure core imports {module}")
    return problems


def test_no_import_goes_back_up() -> None:
    problems = upward_imports(source_files())
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_pure_cores_import_no_io_and_no_other_agent() -> None:
    files = core_files()
    assert files, "no agents/<name>/core.py found"
    problems = impure_core_imports(files)
    assert not problems, "\n".join(problems)


def test_every_registered_core_is_checked_here() -> None:
    from agents.registry import REGISTRY

    checked = {module_name(p) for p in core_files()}
    for spec in REGISTRY:
        assert spec.core in checked or any(c.startswith(spec.core + ".") for c in checked), (
            f"{spec.name}'s core {spec.core} is not agents/<name>/core.py or core/"
        )


def _scratch_layout(root: Path) -> None:
    for package in PACKAGES:
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")


@pytest.mark.parametrize(
    ("probe_path", "source", "expected"),
    [
        ("quantum/probe.py", "from agents.governor.model import Clock\n", "kit imports agents"),
        ("quantum/probe.py", "def f():\n    import quantum.app.cli\n", "kit imports quantum.app"),
        ("quantum/probe.py", "from quantum import app\n", "kit imports quantum.app"),
        ("quantum/probe.py", "from exchange import rules\n", "kit imports exchange"),
        ("infra/probe.py", "from topologies.declaration import TOPOLOGY\n", "infra imports"),
        ("exchange/probe.py", "from topologies import declaration\n", "exchange imports"),
        ("topologies/probe.py", "from . import declaration\nimport agents\n", "topologies imp"),
        ("agents/probe.py", "import importlib\nimportlib.import_module('quantum.app.cli')\n", ""),
    ],
)
def test_the_checker_sees_each_kind_of_upward_import(
    tmp_path: Path, probe_path: str, source: str, expected: str
) -> None:
    """The checker itself, on sources that break the rule, in a scratch copy of the layout."""
    _scratch_layout(tmp_path)
    probe = tmp_path / probe_path
    probe.write_text(source)
    problems = upward_imports([probe], tmp_path)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_the_checker_accepts_imports_that_go_down(tmp_path: Path) -> None:
    _scratch_layout(tmp_path)
    probe = tmp_path / "agents" / "probe.py"
    probe.write_text(
        "from quantum.errors import PoisonRecord\nfrom topologies import declaration\n"
        "from exchange import rules\nfrom . import runtime\nimport numpy\n"
    )
    assert upward_imports([probe], tmp_path) == []


def test_the_core_checker_refuses_io_and_other_agents(tmp_path: Path) -> None:
    core = tmp_path / "agents" / "probe" / "core.py"
    core.parent.mkdir(parents=True)
    core.write_text(
        "import time\nimport numpy\nfrom decimal import Decimal\n"
        "from agents.governor.model import Clock\nfrom agents.probe.model import X\n"
        "from exchange.rules import round_step\nfrom quantum.errors import InvalidRecord\n"
        "from agents.clock.core import heartbeat\nfrom quantum.serde import AvroSerde\n"
        "import confluent_kafka\n"
    )
    problems = impure_core_imports([core], tmp_path)
    flagged = {p.split("imports ")[1] for p in problems}
    assert flagged == {
        "time",
        "agents.clock.core.heartbeat",
        "quantum.serde.AvroSerde",
        "confluent_kafka",
    }
