"""Shipped latency lookup tables (package data, read with importlib.resources)."""
