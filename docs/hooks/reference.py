"""mkdocs hooks: the YAML reference (from the config's pydantic models) and a page per `baobab` command (from the
typer app), made at build time so that neither can drift from the code.

mkdocs.yml names this file under `hooks:`; `mkdocs serve` and `mkdocs build --strict` run it.
"""

import inspect
import io
import json
import re
import shutil
import tempfile
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

import typer.main
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typer.cli import get_docs_for_click

YAML_MARKER = "<!-- yaml-reference -->"  # the line of docs/reference/yaml.md that the models' tables replace
CLI_SECTION = "Command line"  # the nav section whose pages are one per command
_linked: list[Path] = []  # the folders on_config made, removed on shutdown
_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null", Any: "any"}


@event_priority(100)  # before mkdocstrings reads its handlers' options
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Point the API reference at this checkout, and add to the nav's command-line section one page per command, in
    the app's order."""
    # the repository's root is the package: griffe finds it by a folder named baobab (an editable install's finder
    # maps the name in a way griffe does not follow)
    folder = Path(tempfile.mkdtemp(prefix="baobab-docs-"))
    (folder / "baobab").symlink_to(Path(config.config_file_path).parent, target_is_directory=True)
    config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})["paths"] = [str(folder)]
    _linked.append(folder)
    sections = list(config.nav or [])
    for entry in sections:  # grows as it goes: nested sections are looked in too
        if isinstance(entry, dict):
            if CLI_SECTION in entry:
                entry[CLI_SECTION] += [{f"baobab {name}": f"reference/cli/{name}.md"} for name in _commands()]
            sections += [item for value in entry.values() if isinstance(value, list) for item in value]
    return config


def on_shutdown() -> None:
    """Remove the folders that pointed griffe at the checkout."""
    while _linked:
        shutil.rmtree(_linked.pop())


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated command pages."""
    for name, markdown in _commands().items():
        files.append(File.generated(config, f"reference/cli/{name}.md", content=markdown))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Put the YAML reference's tables where the marker is."""
    return markdown.replace(YAML_MARKER, yaml_reference()) if YAML_MARKER in markdown else markdown


def _commands() -> dict[str, str]:
    """Each top-level command's page: its help, usage, arguments and options (and its subcommands'), as typer
    renders them."""
    from baobab.cli import app

    group = typer.main.get_command(app)
    context = typer.Context(group, info_name="baobab")
    commands = getattr(group, "commands", {})
    return {name: get_docs_for_click(obj=command, ctx=context, name=name, call_prefix="baobab")
            for name, command in commands.items() if not command.hidden}


def yaml_reference() -> str:
    """One section per model reachable from a config's top level: its fields' names, types, defaults and
    descriptions (a field's `description`, else the comment on its line in the source).

    >>> "## Config" in yaml_reference()
    True
    """
    from baobab.agents.config import Config

    models = _reachable(Config)
    return "\n\n".join(_section(model, models) for model in models)


def _reachable(root: type[BaseModel]) -> list[type[BaseModel]]:
    found = [root]
    for model in found:  # grows as it goes: breadth first, so sections follow the file's nesting
        for field in model.model_fields.values():
            found += [m for m in _models_in(field.annotation) if m not in found]
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _section(model: type[BaseModel], models: list[type[BaseModel]]) -> str:
    rows = ["| Field | Type | Default | Description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        described = field.description or _comment(model, name)
        kind = "`module:attribute`" if _imports(field.metadata) else _type(field.annotation, models)
        rows.append(f"| `{field.alias or name}` | {kind}{_bounds(field)} | "
                    f"{_default(field)} | {_cell(described)} |")
    extra = "\n\nOther keys are the built-in tool's options." if model.model_config.get("extra") == "allow" else ""
    said = inspect.cleandoc(model.__doc__ or "").split("\n>>>")[0]  # its prose, not its examples
    doc = _cell(said) + "\n\n" if said else ""
    return f"## {model.__name__}\n\n{doc}{chr(10).join(rows)}{extra}"


def _type(annotation: Any, models: list[type[BaseModel]]) -> str:
    if annotation in _NAMES:
        return _NAMES[annotation]
    if annotation in models:
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return "`module:attribute`" if _imports(args[1:]) else _type(args[0], models)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(arg, models) for arg in args)
    if origin is typing.Literal:
        return " or ".join(f"`{arg}`" for arg in args)
    if origin is list:
        return f"list of {_type(args[0], models)}"
    if origin is tuple:
        return "[" + ", ".join(_type(arg, models) for arg in args) + "]"
    if origin is dict:
        return f"mapping of {_type(args[0], models)} to {_type(args[1], models)}"
    return f"`{getattr(annotation, '__name__', annotation)}`"


def _imports(metadata: Any) -> bool:
    """Whether constraints hold a value to the `module:attribute` pattern (config.ImportRef)."""
    from baobab.agents.config import IMPORT_PATTERN

    return any(getattr(m, "pattern", None) == IMPORT_PATTERN or _imports(getattr(m, "metadata", ())) for m in metadata)


def _bounds(field: FieldInfo) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "at least", "max_length": "at most"}
    said = [f"{sign} {getattr(m, key)}" for m in field.metadata for key, sign in signs.items() if hasattr(m, key)]
    return f" ({', '.join(said)})" if said else ""


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_defaults=True)
    return f"`{json.dumps(value)}`"


def _comment(model: type[BaseModel], field: str) -> str:
    """The comment after a field's declaration, in the first of the model's classes that declares it with one."""
    declared = re.compile(rf"^\s+{field}\s*:")
    for owner in [c for c in model.__mro__ if field in inspect.get_annotations(c)]:
        for token in tokenize.generate_tokens(io.StringIO(inspect.getsource(owner)).readline):
            if token.type == tokenize.COMMENT and declared.match(token.line):
                return token.string.lstrip("# ")
    return ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
