"""Load YAML while remembering the line of every key, so config errors can name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from resgate.contract.errors import ConfigError


class Located:
    """Maps dotted field paths (``faults[0].kind``) to ``file:line`` for error messages."""

    def __init__(self, source: str, lines: dict[str, int]) -> None:
        self.source = source
        self.lines = lines

    def where(self, path: str) -> str:
        """``path (file:line)`` for the deepest known prefix of ``path``."""
        probe = path
        while probe:
            if probe in self.lines:
                return f"{path} ({self.source}:{self.lines[probe]})"
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return f"{path} ({self.source})"


def _walk(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines)


def load_yaml_with_lines(text: str, source: str) -> tuple[Any, Located]:
    """Parse YAML text; return the data and a :class:`Located` for its keys. Bad YAML is a ConfigError."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"not valid YAML: {getattr(e, 'problem', e)}", where=loc) from e
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, "", lines)
    return data, Located(source, lines)


def read_yaml_file(path: Path) -> tuple[Any, Located]:
    """Read and parse a YAML file (see :func:`load_yaml_with_lines`)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read gate config: {e.strerror}", where=str(path)) from e
    return load_yaml_with_lines(text, str(path))
