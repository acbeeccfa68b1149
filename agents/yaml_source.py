"""YAML read with the line of every value, `${ENV}` filled in, and errors that name file, line and field.

>>> source = YamlSource.read("team.yaml")  # doctest: +SKIP
>>> source.data["agents"], source.where(("agents", "analyst"))  # doctest: +SKIP
({'analyst': {...}}, 'team.yaml:4')
"""

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from baobab.errors import BaobabError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# the union and validator tags pydantic puts in error locations, which are not keys of the data
_TYPE_TAG = re.compile(r"^([A-Z]\w*|str|int|float|bool|list|dict|\[key\]|literal\[.*|function-\w+\[.*)$")
Loc = tuple[str | int, ...]  # where a value is: its keys and list indexes from the top
Problem = tuple[Loc, str]  # a value and what was expected of it
MAX_VALUES = 100_000  # far more than any config; bounds what aliases can expand to
MERGE_TAG = "tag:yaml.org,2002:merge"  # what PyYAML resolves a plain `<<` key to


class ConfigError(BaobabError, ValueError):
    """A config that cannot be used; each line of the message is `file:line: field: what was expected`."""


class YamlSource:
    """Data loaded from one YAML file or a directory of them, with where each value came from."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.places: dict[Loc, str] = {}
        self._loader = yaml.SafeLoader("")  # builds scalars and keys from composed nodes
        self._open: set[int] = set()  # the collections being built: an alias to one of them is a cycle
        self._built = 0  # values built from the file being read, merged ones included

    @classmethod
    def read(cls, path: str | Path) -> "YamlSource":
        """Load `path`: a .yaml file, or a directory whose .yaml/.yml files are merged section by section."""
        path = Path(path)
        if path.is_dir():
            files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not files:
                raise ConfigError(f"{path}: no .yaml or .yml files in this directory")
        elif path.is_file():
            files = [path]
        else:
            raise ConfigError(f"{path}: no such file or directory")
        source = cls()
        for file in files:
            source._merge(file)
        source.places.setdefault((), str(path))  # what is missing at the top is missing from the file
        return source

    def where(self, loc: Sequence[str | int]) -> str:
        """`file:line` of the value at `loc`, or of the nearest enclosing value that has one."""
        path = tuple(loc)
        while path not in self.places and path:
            path = path[:-1]
        return self.places.get(path, "")

    def line(self, loc: Sequence[str | int], message: str) -> str:
        """`file:line: field: message` for the value at `loc`."""
        field = ".".join(_shown(p) for p in loc)
        return f"{self.where(loc)}: {field}: {message}" if field else f"{self.where(loc)}: {message}"

    def validation_problems(self, exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[Problem]:
        """Each problem of `exc` (raised validating the data at `prefix`) with where it is."""
        problems = []
        for problem in exc.errors():
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] not in ("missing", "extra_forbidden", "value_error") and "input" in problem:
                message += f", got {problem['input']!r}"
            if problem["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append((self.data_path((*prefix, *problem["loc"])), message))
        return problems

    def report(self, problems: Sequence[Problem]) -> ConfigError:
        """A ConfigError with one `file:line: field: message` line per problem, in file order, each once.

        >>> str(source.report([(("agents", "a", "model"), "not a model")]))  # doctest: +SKIP
        'team.yaml:4: agents.a.model: not a model'
        """
        lines = dict.fromkeys(self.line(loc, message) for loc, message in
                              sorted(problems, key=lambda problem: _position(self.where(problem[0]))))
        return ConfigError("\n".join(lines))

    def data_path(self, loc: Sequence[Any]) -> Loc:
        """`loc` (of a pydantic error) without the union and type tags pydantic adds, which are not keys in the
        data.

        >>> source.data_path(("workflow", "routes", 0, "by", "llm", "model"))  # doctest: +SKIP
        ('workflow', 'routes', 0, 'by', 'model')
        """
        path: list[str | int] = []
        node: Any = self.data
        for part in loc:
            if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int)):
                node = node[part] if isinstance(node, dict) or part < len(node) else None
                path.append(part)
            elif isinstance(node, dict) and part == node.get("kind"):
                continue  # the tag of a union chosen by `kind` (a router entry)
            elif isinstance(node, dict) and isinstance(part, str) and not _TYPE_TAG.match(part):
                path.append(part)  # a missing key: name it
                node = None
        return tuple(path)

    def _merge(self, file: Path) -> None:
        try:
            root = yaml.compose(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{file}{line}: not valid YAML: {exc.problem}") from exc
        except (yaml.YAMLError, UnicodeDecodeError) as exc:  # a control character, bytes that are not UTF-8
            raise ConfigError(f"{file}: not valid YAML: {' '.join(str(exc).split())}") from exc
        except RecursionError:  # "[[[[..." deeper than Python's stack; no config comes near
            raise ConfigError(f"{file}: not valid YAML: values nested too deeply") from None
        if root is None:
            return
        places: dict[Loc, str] = {}
        self._built = 0
        try:
            data = self._value(root, file, (), places)
        except RecursionError:
            raise ConfigError(f"{file}:{root.start_mark.line + 1}: values nested too deeply") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file}:{root.start_mark.line + 1}: expected a mapping of sections (models, tools, "
                              f"agents, workflow, budgets, inputs), got {type(data).__name__}")
        for section, value in data.items():
            if section not in self.data:
                self.data[section] = value
            elif isinstance(value, dict) and isinstance(self.data[section], dict):
                for name, item in value.items():
                    if name in self.data[section]:
                        raise ConfigError(f"{self.where((section, name))} and {file}: {section}.{name} is defined "
                                          f"twice")
                    self.data[section][name] = item
            else:
                raise ConfigError(f"{self.where((section,))} and {file}: section {section!r} is defined twice")
        self.places.update(places)

    def _value(self, node: yaml.Node, file: Path, path: Loc, places: dict[Loc, str]) -> Any:
        where = f"{file}:{node.start_mark.line + 1}"
        places[path] = where
        self._built += 1
        if self._built > MAX_VALUES:  # aliases can multiply a small file into billions of values
            raise ConfigError(f"{where}: more than {MAX_VALUES} values (aliases repeated too often?)")
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in self._open:
                raise ConfigError(f"{where}: {'.'.join(map(str, path))}: an alias refers to a value that contains it")
            self._open.add(id(node))
            try:
                return self._collection(node, file, path, places)
            finally:
                self._open.discard(id(node))
        try:
            value = self._loader.construct_object(node)
        except yaml.YAMLError as exc:  # a tag such as !!python/object, which safe loading refuses
            raise ConfigError(f"{where}: {'.'.join(map(str, path))}: {getattr(exc, 'problem', None) or exc}") from exc
        return self._interpolate(value, where, path) if isinstance(value, str) else value

    def _collection(self, node: yaml.MappingNode | yaml.SequenceNode, file: Path, path: Loc,
                    places: dict[Loc, str]) -> Any:
        if isinstance(node, yaml.SequenceNode):
            return [self._value(item, file, (*path, i), places) for i, item in enumerate(node.value)]
        out: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merges += value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                continue
            key = self._loader.construct_object(key_node)
            if not isinstance(key, str | int):
                raise ConfigError(f"{file}:{key_node.start_mark.line + 1}: keys must be strings, got {key!r}")
            key = str(key)
            if key in out:
                raise ConfigError(f"{file}:{key_node.start_mark.line + 1}: {'.'.join(map(str, (*path, key)))}: "
                                  f"duplicate key")
            out[key] = self._value(value_node, file, (*path, key), places)
        return {**self._merged(merges, file, path, places, out), **out} if merges else out

    def _merged(self, sources: list[yaml.Node], file: Path, path: Loc, places: dict[Loc, str],
                own: dict[str, Any]) -> dict[str, Any]:
        """What YAML 1.1 merge keys (`<<: *base`, `<<: [*a, *b]`) bring into a mapping: an earlier mapping's key
        wins over a later one's, and the mapping's `own` keys over all; a merged value keeps its own line."""
        merged: dict[str, Any] = {}
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise ConfigError(f"{file}:{source.start_mark.line + 1}: {'.'.join(map(str, path)) or '(top)'}: "
                                  f"`<<` merges a mapping or a list of mappings, got {source.tag.rpartition(':')[2]}")
            found: dict[Loc, str] = {}
            for key, item in self._value(source, file, path, found).items():
                if key not in own and key not in merged:
                    merged[key] = item
                    places.update((loc, at) for loc, at in found.items() if loc[len(path):len(path) + 1] == (key,))
        return merged

    def _interpolate(self, text: str, where: str, path: Loc) -> str:
        def fill(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: {'.'.join(map(str, path))}: environment variable {name} is not set "
                              f"(write ${{{name}:-default}} for a default)")

        return _ENV.sub(fill, text)


def _shown(key: str | int) -> str:
    """A key as an error names it: as written, or quoted when it is empty, blank at an end or not printable (one
    problem, one readable line).

    >>> _shown("agents"), _shown(" "), _shown("a\\nb")
    ('agents', "' '", "'a\\\\nb'")
    """
    text = str(key)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def _position(where: str) -> tuple[str, int]:
    """`file:line` as a key that orders places by file, then line.

    >>> _position("team.yaml:12") < _position("team.yaml:9"), _position("team.yaml")
    (False, ('team.yaml', 0))
    """
    file, _, line = where.rpartition(":")
    return (file, int(line)) if line.isdigit() else (where, 0)
