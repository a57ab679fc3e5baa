"""Gossamer: a multi-zone federated service mesh. This package is the shared kernel."""

__version__ = "0.1.0"
