"""Durable records shared by checkpoints, search trees and memory: one SQLAlchemy layer.

>>> from baobab.store import Store
>>> Store("sqlite://").dialect
'sqlite'
"""

from baobab.store.db import SQL, Store, StoreError, default_url
from baobab.store.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SQL", "Store", "StoreError", "default_url"]
