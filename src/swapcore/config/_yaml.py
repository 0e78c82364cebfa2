"""Reading configuration text and parsing YAML the way llama-swap's Go decoder does.

Private to :mod:`swapcore.config`. PyYAML is imported only when YAML is
parsed, so the rest of the package works without it.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from swapcore.errors import ConfigError

__all__ = ["parse_yaml", "read_source"]


def read_source(path_or_text: str | os.PathLike[str]) -> tuple[str, str]:
    if isinstance(path_or_text, str) and (
        "\n" in path_or_text
        or not (os.path.isfile(path_or_text) or path_or_text.endswith((".yaml", ".yml")))
    ):
        return path_or_text, "<string>"
    path = os.fspath(path_or_text)
    try:
        with open(path, encoding="utf-8-sig") as file:
            return file.read(), path
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from exc


def parse_yaml(text: str, source: str) -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading YAML configurations needs PyYAML: pip install 'swapcore[config]'"
        ) from exc
    try:
        return yaml.load(text, Loader=_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{problem} ({exc.context})"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{source}: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the YAML document is nested too deeply") from None


@functools.cache
def _loader() -> type[Any]:
    """A SafeLoader that reads YAML as llama-swap's Go decoder does.

    Only ``true``/``false`` are booleans (a model named ``on`` or ``no``
    stays a string), dates stay strings, and a key repeated in one mapping
    is an error instead of silently keeping the last value.
    """
    import yaml

    bool_tag = "tag:yaml.org,2002:bool"
    dropped = {bool_tag, "tag:yaml.org,2002:timestamp"}

    class _Loader(yaml.SafeLoader):
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
