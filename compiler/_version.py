"""The ffc version: in generated files' headers, locks and requirements.txt."""

__version__ = "0.1.0"
