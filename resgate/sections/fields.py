"""Typed, strict reading of one config mapping: each getter validates and names the field on error.

One :class:`Section` serves the gate config (with file lines, unknown keys refused by :meth:`Section.done`)
and the checkers' own sections (:meth:`Section.closed`: no file lines, unknown keys refused at once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from resgate.contract.errors import ConfigError, ConfigErrors
from resgate.sections.yamlpos import Located

_MISSING = object()
T = TypeVar("T")


class Section:
    """A view of one mapping at ``path`` in the config; call :meth:`done` to reject unknown keys.

    ``loc`` turns a field path into ``path (file:line)``; without it errors name the bare path. The
    getters :meth:`str`, :meth:`num`, :meth:`bool`, :meth:`list` … treat an explicit null as absent; the
    checker getters :meth:`text`, :meth:`number`, :meth:`integer`, :meth:`flag` and :meth:`texts` refuse an
    explicit null unless told it is optional.
    """

    def __init__(self, data: Any, path: str, loc: Located | None = None) -> None:
        if data is None:
            data = {}
        self.path = path
        self.loc = loc
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be a mapping, got {type(data).__name__}", where=self.where(path))
        self.data = dict(data)
        self._seen: set[str] = set()

    @classmethod
    def closed(cls, data: Any, path: str, known: Iterable[str]) -> Section:
        """A checker's config section: ``data`` must be a mapping (null included is refused) whose keys are
        all in ``known``; ConfigError naming ``path`` otherwise."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be a mapping, got {type(data).__name__}", where=path)
        known = tuple(known)
        unknown = sorted(set(map(str, data)) - set(known))
        if unknown:
            raise ConfigError(f"unknown keys {unknown}; known: {sorted(known)}", where=path)
        return cls(data, path)

    def where(self, path: str) -> str:
        """How errors name ``path``: with its file and line when the section knows them."""
        return self.loc.where(path) if self.loc is not None else path

    def p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, where=self.where(self.p(key)))

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
                raise ConfigError(f"must be a string, got {item!r}", where=self.where(f"{self.p(key)}[{i}]"))
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
                raise ConfigError(f"must be a scalar, got {item!r}", where=self.where(f"{self.p(key)}.{k}"))
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
                where=self.where(self.p(unknown[0])),
            )

    # --- checker getters: an explicit null is an error unless ``optional`` --------------------------

    def _given(self, key: str, default: Any, optional: bool) -> tuple[bool, Any]:
        """``(True, value)`` when ``key`` needs validating, else ``(False, default or None)``."""
        self._seen.add(key)
        if key not in self.data:
            if default is None and not optional:
                raise self.error(key, "is required")
            return False, default
        v = self.data[key]
        if v is None and optional:
            return False, None
        return True, v

    def text(self, key: str, default: str | None, *, optional: bool = False) -> str | None:
        """A non-empty string; ``default`` when absent (None and not ``optional``: required)."""
        given, v = self._given(key, default, optional)
        if given and (not isinstance(v, str) or not v):
            raise self.error(key, f"must be a non-empty string, got {v!r}")
        return v

    def number(self, key: str, default: float, *, minimum: float) -> float:
        """A number ``>= minimum``, as a float."""
        self._seen.add(key)
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum:
            raise self.error(key, f"must be a number >= {minimum:g}, got {v!r}")
        return float(v)

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        """An integer ``>= minimum``."""
        self._seen.add(key)
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self.error(key, f"must be an integer >= {minimum}, got {v!r}")
        return v

    def flag(self, key: str, default: bool) -> bool:
        """True or false."""
        self._seen.add(key)
        v = self.data.get(key, default)
        if not isinstance(v, bool):
            raise self.error(key, f"must be true or false, got {v!r}")
        return v

    def texts(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A non-empty list of non-empty strings, as a tuple."""
        self._seen.add(key)
        v = self.data.get(key, default)
        if isinstance(v, str) or not isinstance(v, Sequence) or not v:
            raise self.error(key, f"must be a non-empty list of strings, got {v!r}")
        for i, x in enumerate(v):
            if not isinstance(x, str) or not x:
                raise ConfigError(
                    f"must be a non-empty string, got {x!r}", where=self.where(f"{self.p(key)}[{i}]")
                )
        return tuple(v)


class Errors:
    """Collects the ConfigErrors of independent parts of a config, so one pass reports all of them."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def attempt(self, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``, or None after recording its ConfigError."""
        try:
            return fn(*args)
        except ConfigErrors as e:
            self.errors.extend(e.errors)
        except ConfigError as e:
            self.errors.append(e)
        return None

    def raise_any(self) -> None:
        """Raise the one error as it is, several as :class:`ConfigErrors`; nothing when there are none."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)
