"""Schema tooling: register every topic's schema, check compatibility, diff against the registry.

Subjects follow the topic-name strategy: `<prefix><topic>-value` for every topic of the
topology that carries Avro (DLQ topics included). The registry is the judge of
compatibility; these functions ask it and turn its answers into something a person can
act on.

Apicurio 3.0.9's Confluent-compatible API, as measured (see schemas/README.md):
`PUT /config/{subject}` works and is enforced (FORWARD/FULL/BACKWARD per subject), but a
subject level of NONE falls back to the global rule instead of disabling checks; `GET
/config` reports NONE even when the global BACKWARD rule is enforced; a compatibility test
against a subject that does not exist answers `is_compatible: true`; `verbose=true` adds no
messages; a refused registration (409) names the incompatible paths in its message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from quantum.config import RuntimeSettings
from quantum.errors import RegistryUnavailable
from quantum.schemas import load_schema, schema_text
from quantum.serde import registry_client, subject_for
from topologies.declaration import TOPOLOGY

NOT_FOUND = 404


@dataclass(frozen=True)
class SubjectSpec:
    """One registry subject: which topic it belongs to and which file defines it."""

    subject: str
    topic: str
    schema_file: str


@dataclass(frozen=True)
class RegisterResult:
    subject: str
    schema_file: str
    status: str  # "registered" | "REFUSED"
    schema_id: int | None = None
    version: int | None = None
    compatibility: str | None = None  # level set on the subject, None if the registry refused
    message: str = ""


@dataclass(frozen=True)
class CheckResult:
    subject: str
    schema_file: str
    status: str  # "new" | "ok" | "INCOMPATIBLE"
    latest_version: int | None = None
    message: str = ""


@dataclass(frozen=True)
class Change:
    """One field-level difference: `op` is '+' added, '-' removed, '~' changed."""

    op: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.op} {self.path}: {self.detail}"


@dataclass(frozen=True)
class DiffResult:
    subject: str
    schema_file: str
    status: str  # "new" | "same" | "changed"
    latest_version: int | None = None
    changes: list[Change] = field(default_factory=list)


def subjects(settings: RuntimeSettings, topics: Iterable[str] | None = None) -> list[SubjectSpec]:
    """Every Avro subject of the topology under this run's prefix (optionally only `topics`)."""
    wanted = set(topics) if topics else None
    specs = []
    for spec in TOPOLOGY.all_topics():
        if spec.schema is None or (wanted is not None and spec.name not in wanted):
            continue
        physical = settings.topic(spec.name)
        specs.append(SubjectSpec(subject_for(physical), physical, spec.schema))
    if wanted is not None:
        unknown = wanted - {s.name for s in TOPOLOGY.all_topics()}
        if unknown:
            raise KeyError(f"not in the topology: {', '.join(sorted(unknown))}")
    return specs


def client_for(settings: RuntimeSettings) -> SchemaRegistryClient:
    return registry_client(settings.registry.url, settings.registry.timeout_s)


def _registry_message(exc: SchemaRegistryError) -> str:
    """The registry's message without Java exception class prefixes."""
    msg = exc.error_message or str(exc)
    if "Exception: " in msg:
        msg = msg.split("Exception: ", 1)[1]
    return msg


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except SchemaRegistryError:
        raise
    except Exception as exc:
        raise RegistryUnavailable(f"{what}: registry did not answer: {exc!r}") from exc


def _latest(client: SchemaRegistryClient, subject: str) -> Any | None:
    """The latest RegisteredSchema of `subject`, or None if the subject does not exist."""
    try:
        return _call(f"latest of {subject}", client.get_latest_version, subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == NOT_FOUND:
            return None
        raise RegistryUnavailable(f"latest of {subject}: {exc}") from exc


HOW_TO_PROCEED = (
    "how to proceed: make the change backward compatible (give new fields a default, make "
    "them nullable with default null, never remove a field without a default or change its "
    "type), see `quantum schemas diff`; a deliberately breaking change needs a new topic "
    "(new subject) and a migration of its producers and consumers."
)


def register(
    settings: RuntimeSettings,
    *,
    topics: Iterable[str] | None = None,
    client: SchemaRegistryClient | None = None,
) -> list[RegisterResult]:
    """Register every schema under its subject; incompatible ones are refused, not forced.

    Each subject first gets the configured compatibility level (`PUT /config/{subject}`),
    so the registry checks what this project asks for rather than whatever its global is.
    """
    client = client or client_for(settings)
    level = settings.registry.compatibility
    results = []
    for spec in subjects(settings, topics):
        schema = Schema(schema_text(spec.schema_file), "AVRO")
        set_level: str | None = level
        try:
            _call(f"config of {spec.subject}", client.set_compatibility, spec.subject, level)
        except SchemaRegistryError:
            set_level = None  # registry does not support per-subject config: its global rules
        try:
            registered = _call(
                f"register {spec.subject}",
                client.register_schema_full_response,
                spec.subject,
                schema,
            )
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                results.append(
                    RegisterResult(
                        spec.subject,
                        spec.schema_file,
                        "REFUSED",
                        compatibility=set_level,
                        message=(
                            f"incompatible with the latest registered version under {level}: "
                            f"{_registry_message(exc)}; {HOW_TO_PROCEED}"
                        ),
                    )
                )
                continue
            raise RegistryUnavailable(f"register {spec.subject}: {exc}") from exc
        results.append(
            RegisterResult(
                spec.subject,
                spec.schema_file,
                "registered",
                schema_id=registered.schema_id,
                version=registered.version,
                compatibility=set_level,
            )
        )
    return results


def check(
    settings: RuntimeSettings,
    *,
    topics: Iterable[str] | None = None,
    client: SchemaRegistryClient | None = None,
) -> list[CheckResult]:
    """Would `register` accept the working copy? Asks the registry, per subject, vs latest."""
    client = client or client_for(settings)
    results = []
    for spec in subjects(settings, topics):
        latest = _latest(client, spec.subject)
        if latest is None:
            results.append(CheckResult(spec.subject, spec.schema_file, "new"))
            continue
        schema = Schema(schema_text(spec.schema_file), "AVRO")
        try:
            ok = _call(
                f"compatibility of {spec.subject}",
                client.test_compatibility,
                spec.subject,
                schema,
                "latest",
            )
        except SchemaRegistryError as exc:
            raise RegistryUnavailable(f"compatibility of {spec.subject}: {exc}") from exc
        if ok:
            results.append(CheckResult(spec.subject, spec.schema_file, "ok", latest.version))
        else:
            changes = diff_schemas(
                json.loads(latest.schema.schema_str), load_schema(spec.schema_file)
            )
            breaking = [c for c in changes if c.detail.endswith("(breaks BACKWARD)")]
            shown = breaking or changes
            results.append(
                CheckResult(
                    spec.subject,
                    spec.schema_file,
                    "INCOMPATIBLE",
                    latest.version,
                    message="; ".join(str(c) for c in shown[:5]) or "the registry says so",
                )
            )
    return results


def diff(
    settings: RuntimeSettings,
    *,
    topics: Iterable[str] | None = None,
    client: SchemaRegistryClient | None = None,
) -> list[DiffResult]:
    """Field-level changes from each subject's latest registered schema to the working copy."""
    client = client or client_for(settings)
    results = []
    for spec in subjects(settings, topics):
        latest = _latest(client, spec.subject)
        if latest is None:
            results.append(DiffResult(spec.subject, spec.schema_file, "new"))
            continue
        changes = diff_schemas(json.loads(latest.schema.schema_str), load_schema(spec.schema_file))
        status = "changed" if changes else "same"
        results.append(DiffResult(spec.subject, spec.schema_file, status, latest.version, changes))
    return results


# ---- structural diff ----------------------------------------------------------------------

_NAMED = ("record", "enum", "fixed")


def _full_name(schema: dict[str, Any], namespace: str | None) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _collect(schema: Any, namespace: str | None, out: dict[str, dict[str, Any]]) -> None:
    """Every named type in `schema`, by full name, with `_ns` = the namespace it resolves in."""
    if isinstance(schema, list):
        for s in schema:
            _collect(s, namespace, out)
    elif isinstance(schema, dict):
        t = schema.get("type")
        if t in _NAMED:
            full = _full_name(schema, namespace)
            out[full] = {**schema, "_ns": full.rsplit(".", 1)[0] if "." in full else None}
            inner = out[full]["_ns"]
            for f in schema.get("fields", []):
                _collect(f["type"], inner, out)
        elif t == "array":
            _collect(schema["items"], namespace, out)
        elif t == "map":
            _collect(schema["values"], namespace, out)
        elif isinstance(t, dict | list):
            _collect(t, namespace, out)


def _type_repr(t: Any, namespace: str | None) -> str:
    """A short, comparable rendering of a field type (named types by full name)."""
    if isinstance(t, str):
        if t in ("null", "boolean", "int", "long", "float", "double", "bytes", "string"):
            return t
        return t if "." in t or not namespace else f"{namespace}.{t}"
    if isinstance(t, list):
        return "[" + ", ".join(_type_repr(x, namespace) for x in t) + "]"
    kind = t.get("type")
    if kind in _NAMED:
        return _full_name(t, namespace)
    if kind == "array":
        return f"array<{_type_repr(t['items'], namespace)}>"
    if kind == "map":
        return f"map<{_type_repr(t['values'], namespace)}>"
    base = _type_repr(kind, namespace)
    return f"{base}({t['logicalType']})" if "logicalType" in t else base


def diff_schemas(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Field-level changes from `old` to `new` (both schema JSON), with BACKWARD hints.

    BACKWARD means new readers read old data: adding a field without a default, changing a
    type (except Avro promotions) or dropping an enum symbol breaks it; removing a field or
    adding one with a default does not.
    """
    a: dict[str, dict[str, Any]] = {}
    b: dict[str, dict[str, Any]] = {}
    _collect(old, None, a)
    _collect(new, None, b)
    changes: list[Change] = []
    for name in sorted(set(a) - set(b)):
        changes.append(Change("-", name, f"{a[name]['type']} removed"))
    for name in sorted(set(b) - set(a)):
        changes.append(Change("+", name, f"{b[name]['type']} added"))
    for name in sorted(set(a) & set(b)):
        oa, nb = a[name], b[name]
        if oa["type"] != nb["type"]:
            changes.append(Change("~", name, f"{oa['type']} -> {nb['type']} (breaks BACKWARD)"))
        elif oa["type"] == "enum":
            changes.extend(_diff_enum(name, oa, nb))
        elif oa["type"] == "record":
            changes.extend(_diff_record(name, oa, nb))
        if oa.get("doc") != nb.get("doc"):
            changes.append(Change("~", name, "doc changed"))
    return changes


def _diff_enum(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    out = []
    removed = [s for s in old["symbols"] if s not in new["symbols"]]
    added = [s for s in new["symbols"] if s not in old["symbols"]]
    if removed:
        hint = "" if "default" in new else " (breaks BACKWARD)"
        out.append(Change("-", name, f"symbols {', '.join(removed)} removed{hint}"))
    if added:
        out.append(
            Change("+", name, f"symbols {', '.join(added)} added (old readers cannot read them)")
        )
    return out


def _diff_record(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    out = []
    of = {f["name"]: f for f in old["fields"]}
    nf = {f["name"]: f for f in new["fields"]}
    for fname, f in nf.items():
        path = f"{name}.{fname}"
        ftype = _type_repr(f["type"], new["_ns"])
        if fname not in of:
            if "default" in f:
                out.append(Change("+", path, f"{ftype} = {json.dumps(f['default'])}"))
            else:
                out.append(Change("+", path, f"{ftype}, no default (breaks BACKWARD)"))
            continue
        o = of[fname]
        otype = _type_repr(o["type"], old["_ns"])
        if otype != ftype:
            hint = "" if _promotes(otype, ftype) else " (breaks BACKWARD)"
            out.append(Change("~", path, f"type {otype} -> {ftype}{hint}"))
        if ("default" in o) != ("default" in f) or o.get("default") != f.get("default"):
            before = json.dumps(o["default"]) if "default" in o else "none"
            after = json.dumps(f["default"]) if "default" in f else "none"
            out.append(Change("~", path, f"default {before} -> {after}"))
        if o.get("doc") != f.get("doc"):
            out.append(Change("~", path, "doc changed"))
        if o.get("x-decimal") != f.get("x-decimal"):
            out.append(Change("~", path, f"x-decimal {o.get('x-decimal')} -> {f.get('x-decimal')}"))
    for fname, o in of.items():
        if fname not in nf:
            out.append(
                Change("-", f"{name}.{fname}", f"{_type_repr(o['type'], old['_ns'])} removed")
            )
    return out


_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}


def _promotes(old: str, new: str) -> bool:
    """Can a reader of type `new` read data written as `old` (Avro schema resolution)?"""
    if (old, new) in _PROMOTIONS:
        return True
    # widening into a union that contains the old type (e.g. string -> [null, string])
    return new.startswith("[") and old in [x.strip() for x in new.strip("[]").split(",")]
