"""Sealgate: sign container images and enforce Rego policies at push and at deploy."""

__version__ = "0.1.0"
