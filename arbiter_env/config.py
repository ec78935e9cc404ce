"""Typed configuration: YAML files loaded into dataclasses that reject unknown keys and wrong types.

Every configurable object (agents, baselines, experiments) declares its settings as a dataclass;
:func:`from_dict` builds it from a mapping and :func:`load_yaml` from a file, with errors that name
the offending key, and :func:`apply_overrides` applies command-line ``key=value`` pairs.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from arbiter_env.files import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def from_dict(cls: type[T], data: Mapping[str, Any], *, path: str = "") -> T:
    """Builds dataclass ``cls`` from ``data``, checking every key and value type.

    Nested dataclasses are built from nested mappings; ``path`` prefixes key names in errors. A
    nested mapping is applied over the field's default: keys it leaves out keep the values of
    that default (which may differ from the nested class's own, as in
    ``env: EnvConfig = field(default_factory=lambda: EnvConfig(record_wall_time=True))``).
    """
    values = _checked_values(cls, data, path)
    try:
        return cls(**values)
    except TypeError as error:  # a required key is missing
        raise ConfigError(f"{path or cls.__name__}: {error}") from None


def _checked_values(cls: type, data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The keys of ``data`` as values of ``cls``'s fields, checked and converted."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass.")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {type(data).__name__}.")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {', '.join(_join(path, k) for k in unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(fields))}."
        )
    values = {}
    for name, value in data.items():
        base = _nested_default(fields[name], hints[name])
        if base is not None and isinstance(value, Mapping):
            values[name] = dataclasses.replace(
                base, **_checked_values(type(base), value, _join(path, name))
            )
        else:
            values[name] = _coerce(hints[name], value, _join(path, name))
    return values


def _nested_default(field: dataclasses.Field[Any], hint: Any) -> Any:
    """The default instance of a field typed as a dataclass, else ``None``."""
    if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        return None
    if field.default_factory is dataclasses.MISSING:
        return None
    default = field.default_factory()
    return default if isinstance(default, hint) else None


def load_yaml(cls: type[T], file: str | Path, overrides: list[str] | None = None) -> T:
    """Loads ``cls`` from a YAML file, then applies ``key=value`` overrides."""
    return from_dict(cls, apply_overrides(read_config_mapping(file), overrides or []), path="")


def read_config_mapping(file: str | Path) -> dict[str, Any]:
    """The mapping at the top of a YAML config file; ``ConfigError`` if absent or not a mapping."""
    file = check_config_file(file)
    data = read_yaml_file(file) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of keys to values.")
    return data


def check_config_file(file: str | Path) -> Path:
    """``file`` as a path, once it is known to be a regular file that can be read.

    Raises:
        ConfigError: naming the path and what it is instead (missing, a folder, a device).
    """
    file = Path(file).expanduser()
    if not file.exists():
        raise ConfigError(f"Config file {file} does not exist.")
    if file.is_dir():
        raise ConfigError(f"Config file {file} is a folder; give a YAML file.")
    if not file.is_file():
        raise ConfigError(f"Config file {file} is not a regular file; give a YAML file.")
    return file


MAX_YAML_DEPTH = 64
"""The deepest nesting of mappings and lists a YAML config may have."""
MAX_YAML_NODES = 100_000
"""The most values a YAML config may hold once its aliases are expanded (a 'billion laughs'
document is refused, however few bytes it has)."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys, deep nesting and alias bombs.

    Plain data only, as with ``yaml.safe_load`` (python tags are refused). A mapping that repeats
    a key is refused rather than silently keeping the last value; the document's nesting is
    limited to :data:`MAX_YAML_DEPTH` and its size, aliases expanded, to :data:`MAX_YAML_NODES`
    (aliases stay usable, merge keys ``<<: *defaults`` included).
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """The next node, counting how deep it sits."""
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nesting deeper than {MAX_YAML_DEPTH} levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        """The next document, once its expanded size is known to be bounded."""
        node = super().compose_document()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"more than {MAX_YAML_NODES} values once aliases are expanded",
                node.start_mark,
            )
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """The mapping of ``node``, once no key repeats (merged ``<<`` keys may be overridden)."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """Values under ``node`` with every alias expanded; shared nodes are counted once per use."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = MAX_YAML_NODES + 1  # a node that contains itself never ends
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, sizes) for item in node.value)
    else:
        size = 1
    sizes[id(node)] = size
    return size


def parse_yaml(text: Any) -> Any:
    """Plain data from YAML text or a stream, through :class:`StrictLoader`."""
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass


def read_yaml_file(file: str | Path) -> Any:
    """Parses a YAML file; a syntax error becomes one ``ConfigError`` line ``FILE:LINE:COLUMN: ...``.

    The file is read with :class:`StrictLoader`: plain data only (python tags such as
    ``!!python/object`` are refused as a syntax error), so a config file can never run code; and
    a duplicate key, deep nesting or an alias bomb is refused the same way.
    """
    file = Path(file)
    try:
        with file.open(encoding="utf-8") as handle:
            return parse_yaml(handle)
    except yaml.YAMLError as error:
        raise ConfigError(_yaml_error_line(str(file), error)) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{file}: not a text (UTF-8) file: {error}.") from None


def _yaml_error_line(where: str, error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    if context:
        problem = f"{problem} ({context})"
    position = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    return f"{where}{position}: invalid YAML: {problem}"


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Returns a copy of ``data`` with ``a.b.c=value`` overrides applied (values parsed as YAML)."""
    result = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"Override {item!r} is not of the form key=value.")
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError as error:
            raise ConfigError(_yaml_error_line(f"override {item!r}", error)) from None
        _set_dotted(result, key, value, item)
    return result


def apply_values(data: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Returns a copy of ``data`` with dotted keys (``env.num_intervals``) set to typed values.

    The typed counterpart of :func:`apply_overrides`, for settings that come from code: nothing is
    parsed, and each value replaces what is there.
    """
    result = _deep_copy(dict(data))
    for key, value in values.items():
        _set_dotted(result, key, value, key)
    return result


def _set_dotted(result: dict[str, Any], key: str, value: Any, item: str) -> None:
    target = result
    parts = key.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"Override {item!r}: {part!r} is not a mapping.")
    target[parts[-1]] = value


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML- and ``wandb.config``-friendly dict of a config dataclass."""
    return _plain(dataclasses.asdict(config))


def save_yaml(config: Any, file: str | Path) -> None:
    """Writes the resolved config, so a run folder records exactly what ran."""
    atomic_write_text(file, yaml.safe_dump(to_dict(config), sort_keys=False))


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        return _coerce_union(hint, args, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}.")
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path=key)  # type: ignore[arg-type]
    if origin in (list, tuple) or hint in (list, tuple):
        return _coerce_sequence(hint, origin, args, value, key)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}.")
        return dict(value)
    return _coerce_scalar(hint, value, key)


def _coerce_union(hint: Any, args: tuple[Any, ...], value: Any, key: str) -> Any:
    if value is None and type(None) in args:
        return None
    for option in (a for a in args if a is not type(None)):
        # contextlib.suppress would hide that the loop returns on the first match.
        try:
            return _coerce(option, value, key)
        except ConfigError:
            continue
    raise ConfigError(f"{key}: {value!r} matches none of {_name(hint)}.")


def _coerce_sequence(hint: Any, origin: Any, args: tuple[Any, ...], value: Any, key: str) -> Any:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{key}: expected a list, got {value!r}.")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}.")
        return tuple(
            _coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    item = args[0] if args else Any
    items = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if (origin or hint) is tuple else items


def _coerce_scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}.")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}.")
        return value
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}.")
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}.")
    return value


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def plain(value: Any) -> Any:
    """``value`` as YAML/JSON-friendly data; callables by their qualified name, else ``repr``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalar
        return value.item()
    func = getattr(value, "func", None)  # functools.partial
    if func is not None and hasattr(value, "keywords"):
        return {"function": plain(func), "kwargs": plain(value.keywords)}
    name = getattr(value, "__qualname__", None)
    if name is not None:
        return f"{getattr(value, '__module__', '')}.{name}".lstrip(".")
    return repr(value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


__all__ = [
    "ConfigError",
    "StrictLoader",
    "apply_overrides",
    "apply_values",
    "check_config_file",
    "from_dict",
    "load_yaml",
    "parse_yaml",
    "plain",
    "read_config_mapping",
    "read_yaml_file",
    "save_yaml",
    "to_dict",
]
