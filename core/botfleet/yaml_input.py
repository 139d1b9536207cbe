"""Reading a YAML file a person wrote, the way kubectl would accept it, with one-line errors.

Every error names the file (and the line and column where YAML knows them): not UTF-8,
not YAML, a key given twice in one mapping (kubectl refuses those; PyYAML would keep
the last silently), nesting too deep to read.
"""

from __future__ import annotations

from typing import Any

import yaml

from botfleet.errors import UserError, one_line


class YamlInputError(UserError, ValueError):
    """A file that cannot be read as YAML; the message is ``FILE[:LINE:COL]: problem``."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping.

    A merge key (``<<: *anchor``) is left to the base class (an explicit key may override
    a merged one, as in kubectl); keys are compared with their tags, so ``1`` and ``true``
    are two keys, as they are in YAML."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = (key_node.tag, key) in seen
                    seen.add((key_node.tag, key))
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {one_line(repr(key), 60)}", key_node.start_mark
                    )
        return super().construct_mapping(node, deep)


def _where(path: str, error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path


def parse_yaml(text: str, path: str) -> Any:
    """The one document in ``text``; ``path`` names it in errors."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        problem = " ".join(part for part in (error.context, error.problem) if part) or "not valid YAML"
        raise YamlInputError(f"{_where(path, error)}: {one_line(problem, 200)}") from None
    except yaml.YAMLError as error:
        raise YamlInputError(f"{path}: not valid YAML: {one_line(error, 200)}") from None
    except RecursionError:
        raise YamlInputError(f"{path}: nested too deeply to read") from None


def read_yaml(path: str) -> Any:
    """Read and parse the YAML file at ``path``."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as error:
        raise YamlInputError(f"{path}: cannot read: {error.strerror}") from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlInputError(f"{path}: not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})") from None
    return parse_yaml(text, path)
