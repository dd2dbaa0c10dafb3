"""The replay checker's configuration: the read models, how each is rebuilt, and the example cap.

Validated up front (``ConfigError`` naming the field) by each class's ``from_dict``. A rebuild is a Python
callable ``"module:function"`` or a command (run locally), and/or an ECS task of the target's own image
(:class:`EcsTaskSpec`, run on AWS); :meth:`RebuildSpec.resolve` imports the callable.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.identifiers import TableName, check_identifiers, ident, parse_table_name, unique_name
from resgate.contract.constants import DEFAULT_EXAMPLES_CAP
from resgate.contract.errors import ConfigError
from resgate.sections.fields import Section

_CALLABLE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_ECS_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_TASK_DEF_RE = re.compile(
    r"^(arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task-definition/)?[A-Za-z0-9_-]{1,255}(:\d+)?$"
)
_CLUSTER_ARN_RE = re.compile(r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:cluster/[A-Za-z0-9_-]{1,255}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
LAUNCH_TYPES = ("FARGATE", "EC2")

RebuildFn = Callable[..., Any]
"""``fn(conn, schema, end_offsets, *, bootstrap)``: build the read model tables inside ``schema``."""


@dataclass(frozen=True)
class EcsTaskSpec:
    """A rebuild run as an ECS task of the target's own image (on AWS: ``ecs:RunTask``).

    ``task_definition`` is a family, ``family:revision`` or a task definition ARN; ``container`` the
    container that gets the replay environment (and ``command``, when given, as its command override);
    ``cluster`` defaults to the target's cluster. Locally, with no ECS, ``command`` runs as a subprocess:
    it is what the image runs. ``task_role_arn``/``execution_role_arn`` are the roles of the task definition,
    the only ones the replay Lambda may pass.
    """

    task_definition: str
    container: str
    cluster: str | None = None
    command: tuple[str, ...] | None = None
    launch_type: str = "FARGATE"
    task_role_arn: str | None = None
    execution_role_arn: str | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "replay.rebuild.ecs_task") -> EcsTaskSpec:
        s = Section.closed(
            d,
            where,
            (
                "task_definition",
                "container",
                "cluster",
                "command",
                "launch_type",
                "task_role_arn",
                "execution_role_arn",
            ),
        )
        task_def = s.text("task_definition", None)
        if not _TASK_DEF_RE.match(task_def or ""):
            raise ConfigError(
                f"must be a task definition family[:revision] or ARN, got {task_def!r}",
                where=s.p("task_definition"),
            )
        container = s.text("container", None)
        if not _ECS_NAME_RE.match(container or ""):
            raise ConfigError(f"must be a container name, got {container!r}", where=s.p("container"))
        cluster = s.text("cluster", None, optional=True)
        if cluster is not None and not (_ECS_NAME_RE.match(cluster) or _CLUSTER_ARN_RE.match(cluster)):
            raise ConfigError(f"must be an ECS cluster name or ARN, got {cluster!r}", where=s.p("cluster"))
        command = _command(s.data["command"], s.p("command")) if s.data.get("command") is not None else None
        launch_type = s.text("launch_type", "FARGATE")
        if launch_type not in LAUNCH_TYPES:
            raise ConfigError(
                f"must be one of {list(LAUNCH_TYPES)}, got {launch_type!r}", where=s.p("launch_type")
            )
        roles = {}
        for key in ("task_role_arn", "execution_role_arn"):
            roles[key] = s.text(key, None, optional=True)
            if roles[key] is not None and not _ROLE_ARN_RE.match(roles[key]):
                raise ConfigError(f"must be an IAM role ARN, got {roles[key]!r}", where=s.p(key))
        return cls(
            task_definition=task_def,  # type: ignore[arg-type]
            container=container,  # type: ignore[arg-type]
            cluster=cluster,
            command=command,
            launch_type=launch_type,  # type: ignore[arg-type]
            **roles,
        )


def _command(raw: Any, where: str) -> tuple[str, ...]:
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
        raise ConfigError(f"must be a non-empty list of arguments, got {raw!r}", where=where)
    if not all(isinstance(a, str) and a for a in raw):
        raise ConfigError("every argument must be a non-empty string", where=where)
    return tuple(raw)


@dataclass(frozen=True)
class RebuildSpec:
    """How to rebuild read models: a ``callable`` (``"module:function"``) or a ``command`` (not both), and/or
    an ``ecs_task`` (:class:`EcsTaskSpec`, the target's own image).

    A callable is called as ``fn(conn, schema, end_offsets, *, bootstrap)`` with a psycopg connection to
    the target database (committed afterwards) and ``end_offsets`` = ``{topic: {partition: end}}``. A
    command (and an ECS task) runs with ``RESGATE_REPLAY_DSN``, ``RESGATE_REPLAY_SCHEMA``,
    ``RESGATE_REPLAY_END_OFFSETS`` (JSON), ``RESGATE_KAFKA_BOOTSTRAP`` and the ``RESGATE_KAFKA_*`` security
    settings added to the environment (plus ``env``), in ``cwd``; a non-zero exit is a failed rebuild.
    Either is stopped after ``timeout_s``. Where an ECS runner is given (the replay Lambda), ``ecs_task`` is
    what runs; elsewhere the callable or command does, else ``ecs_task.command`` as a local subprocess.
    """

    callable: str | None = None
    command: tuple[str, ...] | None = None
    timeout_s: float = 600.0
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    ecs_task: EcsTaskSpec | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "replay.rebuild") -> RebuildSpec:
        s = Section.closed(d, where, ("callable", "command", "ecs_task", "timeout_s", "env", "cwd"))
        has_callable, has_command = s.data.get("callable") is not None, s.data.get("command") is not None
        has_task = s.data.get("ecs_task") is not None
        if (has_callable and has_command) or not (has_callable or has_command or has_task):
            raise ConfigError(
                "give callable ('module:function') or command ([...]), not both, and/or ecs_task ({...})",
                where=where,
            )
        fn = None
        cmd = None
        if has_callable:
            fn = s.data["callable"]
            if not isinstance(fn, str) or not _CALLABLE_RE.match(fn):
                raise ConfigError(
                    f"must look like 'package.module:function', got {fn!r}", where=s.p("callable")
                )
        elif has_command:
            cmd = _command(s.data["command"], s.p("command"))
        task = EcsTaskSpec.from_dict(s.data["ecs_task"], s.p("ecs_task")) if has_task else None
        env = s.data.get("env") or {}
        if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ConfigError("must map names to string values", where=s.p("env"))
        cwd = s.text("cwd", None, optional=True)
        return cls(
            callable=fn,
            command=cmd,
            timeout_s=s.number("timeout_s", 600.0, minimum=1),
            env=tuple(sorted(env.items())),
            cwd=cwd,
            ecs_task=task,
        )

    @property
    def local(self) -> bool:
        """True when it has a local kind (a callable or a command) besides or instead of an ECS task."""
        return self.callable is not None or self.command is not None

    def resolve(self, where: str = "replay.rebuild.callable") -> RebuildFn | None:
        """Import the callable (None for a command); ConfigError when it cannot be imported."""
        if self.callable is None:
            return None
        module, _, name = self.callable.partition(":")
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"cannot import {self.callable}: {e}", where=where) from e
        if not callable(fn):
            raise ConfigError(f"{self.callable} is not callable", where=where)
        return fn  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ReadModelSpec:
    """One read model: its live table, how rows are identified and compared, and how it is rebuilt.

    ``compared_columns`` defaults to every column of the live table except ``excluded_columns`` (e.g.
    wall-clock timestamps a rebuild cannot reproduce). The rebuilt table is ``<shadow schema>.<shadow_table>``
    (default: the live table's name without its schema).
    """

    name: str
    table: TableName
    key_columns: tuple[str, ...]
    topics: tuple[str, ...]
    rebuild: RebuildSpec
    compared_columns: tuple[str, ...] | None = None
    excluded_columns: tuple[str, ...] = ()
    shadow_table: str | None = None

    @property
    def rebuilt_table(self) -> str:
        return self.shadow_table or self.table[-1]

    @classmethod
    def from_dict(
        cls,
        d: Any,
        where: str = "replay.read_models[0]",
        *,
        default_rebuild: RebuildSpec | None = None,
        default_topics: tuple[str, ...] | None = None,
    ) -> ReadModelSpec:
        s = Section.closed(
            d,
            where,
            (
                "name",
                "table",
                "key_columns",
                "compared_columns",
                "excluded_columns",
                "topics",
                "rebuild",
                "shadow_table",
            ),
        )
        if "table" not in s.data:
            raise ConfigError("is required", where=s.p("table"))
        table = parse_table_name(s.data["table"], s.p("table"))
        if "key_columns" not in s.data:
            raise ConfigError("is required", where=s.p("key_columns"))
        keys = check_identifiers(s.data["key_columns"], s.p("key_columns"))
        compared = None
        if s.data.get("compared_columns") is not None:
            compared = check_identifiers(s.data["compared_columns"], s.p("compared_columns"))
        excluded = check_identifiers(
            s.data.get("excluded_columns") or [], s.p("excluded_columns"), allow_empty=True
        )
        if compared is not None and excluded:
            raise ConfigError("give compared_columns or excluded_columns, not both", where=where)
        clash = sorted(set(keys) & set(excluded))
        if clash:
            raise ConfigError(f"key columns cannot be excluded: {clash}", where=s.p("excluded_columns"))
        if "topics" in s.data:
            topics = _topics(s.data["topics"], s.p("topics"))
        elif default_topics:
            topics = default_topics
        else:
            raise ConfigError("is required (here or at the replay level)", where=s.p("topics"))
        if s.data.get("rebuild") is not None:
            rebuild = RebuildSpec.from_dict(s.data["rebuild"], s.p("rebuild"))
        elif default_rebuild is not None:
            rebuild = default_rebuild
        else:
            raise ConfigError("is required (here or at the replay level)", where=s.p("rebuild"))
        return cls(
            name=s.text("name", table[-1]),  # type: ignore[arg-type]
            table=table,
            key_columns=keys,
            topics=topics,
            rebuild=rebuild,
            compared_columns=compared,
            excluded_columns=excluded,
            shadow_table=ident(s, "shadow_table", None, optional=True),
        )


def _topics(v: Any, where: str) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, Sequence) or not v:
        raise ConfigError(f"must be a non-empty list of topic names, got {v!r}", where=where)
    for i, t in enumerate(v):
        if not isinstance(t, str) or not t:
            raise ConfigError(f"must be a non-empty string, got {t!r}", where=f"{where}[{i}]")
    return tuple(dict.fromkeys(v))


@dataclass(frozen=True)
class ReplayThresholds:
    """How many examples the result keeps (a mismatch of any size fails: a read model is exact)."""

    examples_cap: int = DEFAULT_EXAMPLES_CAP

    @classmethod
    def from_dict(cls, d: Any, where: str = "replay.thresholds") -> ReplayThresholds:
        s = Section.closed(d, where, ("examples_cap",))
        return cls(examples_cap=s.integer("examples_cap", DEFAULT_EXAMPLES_CAP, minimum=0))


@dataclass(frozen=True)
class ReplayConfig:
    """The read models to replay. ``rebuild`` / ``topics`` at this level are defaults for every model.

    ``buckets`` is the number of key-hash buckets used to localise a mismatch. Shadow schemas are named
    ``<schema_prefix>[_<run id>]_<hex>`` and dropped afterwards unless ``keep_shadow``.
    """

    read_models: tuple[ReadModelSpec, ...]
    buckets: int = 64
    keep_shadow: bool = False
    examples_cap: int = DEFAULT_EXAMPLES_CAP
    schema_prefix: str = "resgate_replay"
    thresholds: ReplayThresholds = field(default_factory=ReplayThresholds)

    def __post_init__(self) -> None:
        if not self.read_models:
            raise ConfigError("configure at least one read model", where="replay.read_models")
        names = [m.name for m in self.read_models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"read model names must be unique: {dup}", where="replay.read_models")
        unique_name(self.schema_prefix, where="replay.schema_prefix")

    @classmethod
    def from_dict(cls, d: Any, where: str = "replay") -> ReplayConfig:
        """Validate the ``replay`` section of the gate config."""
        s = Section.closed(
            d,
            where,
            (
                "read_models",
                "rebuild",
                "topics",
                "buckets",
                "keep_shadow",
                "examples_cap",
                "schema_prefix",
                "thresholds",
            ),
        )
        default_rebuild = (
            RebuildSpec.from_dict(s.data["rebuild"], s.p("rebuild")) if s.data.get("rebuild") else None
        )
        default_topics = (
            _topics(s.data["topics"], s.p("topics")) if s.data.get("topics") is not None else None
        )
        models_raw = s.data.get("read_models")
        if isinstance(models_raw, str) or not isinstance(models_raw, Sequence) or not models_raw:
            raise ConfigError("must be a non-empty list of read models", where=s.p("read_models"))
        models = tuple(
            ReadModelSpec.from_dict(
                m,
                f"{s.p('read_models')}[{i}]",
                default_rebuild=default_rebuild,
                default_topics=default_topics,
            )
            for i, m in enumerate(models_raw)
        )
        try:
            return cls(
                read_models=models,
                buckets=s.integer("buckets", 64, minimum=1),
                keep_shadow=s.flag("keep_shadow", False),
                examples_cap=s.integer("examples_cap", DEFAULT_EXAMPLES_CAP, minimum=0),
                schema_prefix=s.text("schema_prefix", "resgate_replay"),  # type: ignore[arg-type]
                thresholds=ReplayThresholds.from_dict(s.data.get("thresholds") or {}, s.p("thresholds")),
            )
        except ConfigError as e:
            if where != "replay" and e.where and e.where.startswith("replay."):
                raise ConfigError(str(e).split(": ", 1)[-1], where=where + e.where[len("replay") :]) from None
            raise
