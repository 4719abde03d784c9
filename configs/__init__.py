"""Shipped search spaces and training recipes (package data, read with importlib.resources)."""
