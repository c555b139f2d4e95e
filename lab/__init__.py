"""ablab: a containerized A/B benchmark lab."""

__version__ = "0.1.0"
