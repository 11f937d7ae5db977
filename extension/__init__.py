"""The endpoint agent and osquery extension: per-process network traffic from the kernel."""

__version__ = "0.1.0"  # keep in step with pyproject.toml
