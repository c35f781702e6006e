"""catdog_lib: the shared library behind the catdog course notebooks and CLI."""

__version__ = "0.1.0"
