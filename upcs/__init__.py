"""upcs: the Unwanted Prisoner Contact Service (CLI and configuration: the front door, thin)."""

__all__ = ["__version__"]
__version__ = "0.1.0"
