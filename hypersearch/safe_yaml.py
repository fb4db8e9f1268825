"""Reading experiment YAML safely: ``1e-3`` is a number, a repeated key is an error, and a
document that expands past a limit (a "billion laughs" file) is refused before it is built."""

from __future__ import annotations

import re
from typing import Any

import yaml

from hypersearch.errors import ExperimentError


class _Loader(yaml.SafeLoader):
    """``safe_load``, except that ``1e-3`` is a float (below)."""


# YAML 1.1 (PyYAML) needs a dot in floats, so `1e-3` would be the string "1e-3"; YAML 1.2 agrees
# with users that it is a number.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


# Nodes a document may expand to, aliases included: far above any real experiment, far below
# what a "billion laughs" file (nested aliases, exponential growth) needs to hang the reader.
MAX_YAML_NODES = 10_000
MAX_YAML_DEPTH = 50  # nesting; far deeper would exhaust Python's recursion while reading


def read_yaml(text: str, source: str = "experiment") -> Any:
    """Parse YAML safely; syntax errors, unsafe tags, repeated keys and documents that expand
    past ``MAX_YAML_NODES`` become one-line errors with a position."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        _check_nodes(node, [], [0])
        return None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(err.problem or err).split())
        raise ExperimentError(source, f"{where}{problem}") from None
    except yaml.YAMLError as err:
        raise ExperimentError(source, " ".join(str(err).split())) from None
    except RecursionError:  # nested so deeply that PyYAML's reader gives up
        raise ExperimentError(source, f"nested deeper than {MAX_YAML_DEPTH} levels") from None
    finally:
        loader.dispose()


def _check_nodes(node: yaml.Node | None, path: list[str], count: list[int]) -> None:
    """Walk the document as it expands (an alias counts each time it is used): PyYAML keeps
    the last of two equal keys silently, so a repeated key is an error here; and a document
    that expands past ``MAX_YAML_NODES`` is refused before anything is built from it."""
    count[0] += 1
    if len(path) > MAX_YAML_DEPTH:
        raise ExperimentError(
            ".".join(path[:3]) + ".…", f"nested deeper than {MAX_YAML_DEPTH} levels"
        )
    if count[0] > MAX_YAML_NODES:
        raise ExperimentError(
            ".".join(path) or "experiment",
            f"expands to more than {MAX_YAML_NODES} values through YAML aliases "
            "(a 'billion laughs' file?)",
        )
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Mark] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            mark = key_node.start_mark
            if key in seen:
                raise ExperimentError(
                    ".".join([*path, key]),
                    f"duplicate key (line "
                    f"{mark.line + 1}, column {mark.column + 1}; first at "
                    f"line {seen[key].line + 1})",
                )
            seen[key] = mark
            _check_nodes(value_node, [*path, key], count)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_nodes(item, [*path, str(index)], count)
