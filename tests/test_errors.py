"""Every error class Baobab defines derives from `BaobabError` (and still from the builtin error it stands for)."""

import importlib
import inspect
import pkgutil

import baobab
from baobab import BaobabError

SKIPPED_PACKAGES = ("baobab.tests", "baobab.benchmarks", "baobab.examples")
# the python tool's child runs it as a script: it must not import Baobab, so it cannot share the base
STANDALONE = {"baobab.tools.sandbox_boot"}


def test_every_error_class_derives_from_baobab_error() -> None:
    modules = [m.name for m in pkgutil.walk_packages(baobab.__path__, "baobab.")
               if not m.name.startswith(SKIPPED_PACKAGES) and m.name not in STANDALONE]
    errors = {(cls.__module__, cls.__qualname__): cls for name in modules
              for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass)
              if issubclass(cls, BaseException) and cls.__module__.startswith("baobab.")}
    assert len(modules) > 60 and len(errors) >= 20, (len(modules), sorted(errors))
    assert [key for key, cls in errors.items() if not issubclass(cls, BaobabError)] == []
    assert issubclass(errors["baobab.graphs.errors", "GraphError"], ValueError)  # callers catching builtins still do
    assert issubclass(errors["baobab.store.db", "StoreError"], BaobabError)
