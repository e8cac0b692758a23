"""upcs hub."""
