"""The package version, in a module of its own so that every room can read it without
importing the package's top (which imports every room)."""

__version__ = "0.1.0"
