"""Reading config/funnel.yml: YAML whose mappings remember their line (from the YAML node marks), handed to the
validator. ``load(path)`` / ``loads(text)`` return a ``Definition`` or raise ``FunnelDefinitionError`` listing
every problem, each naming the file, the line and the rule id or key."""

from __future__ import annotations

from pathlib import Path

import yaml

from handoff import settings
from handoff.funnel.model import Definition, FunnelDefinitionError
from handoff.funnel.validation import LineDict, Validator


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise FunnelDefinitionError(loader.name, [f"{loader.name}, line {key_node.start_mark.line + 1}: key "
                                                      f"{key!r} appears twice in the same mapping"])
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(path: str | Path | None = None) -> Definition:
    """Read and validate a funnel definition; raise ``FunnelDefinitionError`` listing every problem."""
    path = Path(path or settings.FUNNEL_DEFINITION)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FunnelDefinitionError(path, [f"cannot read the file: {exc.strerror or exc}"]) from None
    return loads(text, source=str(path))


def loads(text: str, source: str = "<funnel definition>") -> Definition:
    loader = _LineLoader(text)
    loader.name = source
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise FunnelDefinitionError(source, [f"not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        raise FunnelDefinitionError(source, ["the file must be a mapping with version, scoring, mql, sql, ..."])
    return Validator(source).run(doc)

