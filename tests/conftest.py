"""Shared by every test folder: puts tests/ on the path for :mod:`readme`."""
