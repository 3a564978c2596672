"""Verbs of the ``geochat`` command that live in the core package."""
