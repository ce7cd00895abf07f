"""Importing this module registers curation's job handlers and scorers."""
import curation.scoring  # noqa: F401  (registers the curation.score job handler)
