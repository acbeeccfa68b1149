"""Built-in tools by name, with options checked."""

from pathlib import Path

import pytest

from baobab.tools import BUILTINS, Tool, builtin_tools


def test_every_name_makes_tools(tmp_path: Path) -> None:
    made = {name: [t.name for t in builtin_tools(name, **options)] for name, options in {
        "python": {"workspace": tmp_path}, "files": {"workspace": tmp_path}, "read_file": {"workspace": tmp_path},
        "write_file": {"workspace": tmp_path}, "list_files": {"workspace": tmp_path},
        "http_get": {"allow_hosts": ["127.0.0.1"]}, "calculator": {},
    }.items()}
    assert made == {"python": ["python"], "files": ["read_file", "write_file", "list_files"],
                    "read_file": ["read_file"], "write_file": ["write_file"], "list_files": ["list_files"],
                    "http_get": ["http_get"], "calculator": ["calculator"]}
    assert set(made) == set(BUILTINS)


def test_options_reach_the_factory(tmp_path: Path) -> None:
    (python_tool,) = builtin_tools("python", workspace=tmp_path, time_limit=3)
    assert isinstance(python_tool, Tool) and python_tool.timeout == 13
    reader, writer, _ = builtin_tools("files", workspace=tmp_path)
    assert not writer.run_sync({"path": "a.txt", "content": "shared"}).error
    assert reader.run_sync({"path": "a.txt"}).content == "shared"


def test_unknown_names_and_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown built-in tool 'shell'; known: python, files, read_file"):
        builtin_tools("shell")
    with pytest.raises(TypeError, match="built-in tool 'python' has no option 'memory'; its options: workspace, "):
        builtin_tools("python", memory=100)
    with pytest.raises(TypeError, match="built-in tool 'http_get': missing a required argument: 'allow_hosts'"):
        builtin_tools("http_get")
