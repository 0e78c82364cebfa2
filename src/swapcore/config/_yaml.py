"""Reading configuration text and parsing YAML the way llama-swap's Go decoder does.

Private to :mod:`swapcore.config`. PyYAML is imported only when YAML is
parsed, so the rest of the package works without it. Text and the composed
YAML graph are held to :mod:`swapcore.config.limits` before anything is
built from them.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from swapcore.config.limits import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES
from swapcore.errors import ConfigError

__all__ = ["parse_yaml", "read_source"]


def _too_big(source: str) -> ConfigError:
    return ConfigError(
        f"{source}: the configuration is larger than {MAX_CONFIG_BYTES:,} bytes, "
        "the most swapcore reads"
    )


def read_source(path_or_text: str | os.PathLike[str]) -> tuple[str, str]:
    if isinstance(path_or_text, str) and (
        "\n" in path_or_text
        or not (os.path.isfile(path_or_text) or path_or_text.endswith((".yaml", ".yml")))
    ):
        return path_or_text, "<string>"
    path = os.fspath(path_or_text)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)  # never more than the limit allows
        if len(data) > MAX_CONFIG_BYTES:
            raise _too_big(path)
        return data.decode("utf-8-sig"), path
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from exc


class _LimitExceeded(Exception):
    """The composed document broke a limit; the message says which and where."""


def parse_yaml(text: str, source: str) -> Any:
    if len(text) > MAX_CONFIG_BYTES or len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise _too_big(source)
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading YAML configurations needs PyYAML: pip install 'swapcore[config]'"
        ) from exc
    try:
        return yaml.load(text, Loader=_loader())
    except _LimitExceeded as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{problem} ({exc.context})"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{source}: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:  # a safety net: the depth limit stops nesting long before
        raise ConfigError(f"{source}: the YAML document is nested too deeply") from None


@functools.cache
def _loader() -> type[Any]:
    """A SafeLoader that reads YAML as llama-swap's Go decoder does.

    Only ``true``/``false`` are booleans (a model named ``on`` or ``no``
    stays a string), dates stay strings, and a key repeated in one mapping
    is an error instead of silently keeping the last value.

    While composing, it measures the document as if every alias were a copy
    of the value it names (each node's expanded size and depth, memoised, so
    the measure is linear in the text) and stops at the first limit broken,
    before anything is constructed: flattening merge keys and every later
    pass walk values as trees.
    """
    import yaml

    bool_tag = "tag:yaml.org,2002:bool"
    dropped = {bool_tag, "tag:yaml.org,2002:timestamp"}

    class _Loader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._depth = 0  # nodes being composed, outermost first
            self._expanded = 0  # values so far, every alias use counted in full
            self._measured: dict[int, tuple[int, int]] = {}  # id(node) -> (size, depth)

        def compose_node(self, parent: Any, index: Any) -> Any:
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
            if self.check_event(yaml.AliasEvent):
                node = super().compose_node(parent, index)
                # An alias of a node still being composed (a cycle) counts once:
                # the loader reports the cycle itself.
                size, depth = self._measured.get(id(node), (1, 1))
                self._grow(size, self._depth + depth, line)
                return node
            self._depth += 1
            self._grow(1, self._depth, line)
            try:
                node = super().compose_node(parent, index)
            finally:
                self._depth -= 1
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = []
            measures = [self._measured.get(id(child), (1, 1)) for child in children]
            self._measured[id(node)] = (
                1 + sum(size for size, _ in measures),
                1 + max((depth for _, depth in measures), default=0),
            )
            return node

        def _grow(self, size: int, depth: int, line: int) -> None:
            self._expanded += size
            if self._expanded > MAX_CONFIG_NODES:
                raise _LimitExceeded(
                    f"line {line}: the document expands to more than {MAX_CONFIG_NODES:,} "
                    "values (each use of a YAML alias counts the whole value it names)"
                )
            if depth > MAX_CONFIG_DEPTH:
                raise _LimitExceeded(
                    f"line {line}: the document is nested more than {MAX_CONFIG_DEPTH} "
                    "levels deep (counting through YAML aliases)"
                )

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:
                        continue  # unhashable: the base class reports it
                    if duplicate:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"found duplicate key {key!r}",
                            key_node.start_mark,
                        )
            return super().construct_mapping(node, deep=deep)

    # The class's own copy, so SafeLoader itself is left unchanged.
    resolvers = {
        first: [(tag, regexp) for tag, regexp in found if tag not in dropped]
        for first, found in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    setattr(_Loader, "yaml_implicit_resolvers", resolvers)  # noqa: B010 - stubs call it an instance var
    _Loader.add_implicit_resolver(
        bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return _Loader
