"""Typed, strict reading of one config mapping: each getter validates and names the field on error."""

from __future__ import annotations

from typing import Any

from resgate.config.yamlpos import Located
from resgate.contract.errors import ConfigError

_MISSING = object()


class Section:
    """A view of one mapping at ``path`` in the config; call :meth:`done` to reject unknown keys."""

    def __init__(self, data: Any, path: str, loc: Located) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"must be a mapping, got {type(data).__name__}", where=loc.where(path))
        self.data = dict(data)
        self.path = path
        self.loc = loc
        self._seen: set[str] = set()

    def p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, where=self.loc.where(self.p(key)))

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._seen.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.error(key, "is required")
            return default
        return self.data[key]

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def str(self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] | None = None) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, str) or not v:
            raise self.error(key, f"must be a non-empty string, got {v!r}")
        if choices and v not in choices:
            raise self.error(key, f"must be one of {list(choices)}, got {v!r}")
        return v

    def num(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        min: float | None = None,
        max: float | None = None,
        integer: bool = False,
    ) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int)):
            kind = "an integer" if integer else "a number"
            raise self.error(key, f"must be {kind}, got {v!r}")
        if min is not None and v < min:
            raise self.error(key, f"must be >= {min}, got {v}")
        if max is not None and v > max:
            raise self.error(key, f"must be <= {max}, got {v}")
        return v

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.error(key, f"must be true or false, got {v!r}")
        return v

    def list(self, key: str, default: Any = _MISSING) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, list):
            raise self.error(key, f"must be a list, got {type(v).__name__}")
        return v

    def str_list(self, key: str, default: Any = _MISSING) -> Any:
        v = self.list(key, default)
        if v is default and default is not _MISSING:
            return v
        for i, item in enumerate(v):
            if not isinstance(item, str | int | float) or isinstance(item, bool):
                raise ConfigError(
                    f"must be a string, got {item!r}", where=self.loc.where(f"{self.p(key)}[{i}]")
                )
        return [str(x) for x in v]

    def str_map(self, key: str, default: Any = _MISSING) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, dict):
            raise self.error(key, f"must be a mapping, got {type(v).__name__}")
        out = {}
        for k, item in v.items():
            if isinstance(item, dict | list) or item is None:
                raise ConfigError(
                    f"must be a scalar, got {item!r}", where=self.loc.where(f"{self.p(key)}.{k}")
                )
            out[str(k)] = str(item).lower() if isinstance(item, bool) else str(item)
        return out

    def section(self, key: str, required: bool = False) -> Section:
        v = self.raw(key, _MISSING if required else {})
        return Section(v, self.p(key), self.loc)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise ConfigError(
                f"unknown field {unknown[0]!r}; known here: {sorted(self._seen)}",
                where=self.loc.where(self.p(unknown[0])),
            )
