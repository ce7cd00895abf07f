"""Importing this module registers the datasets job handlers (import, export)."""
from . import services  # noqa: F401
