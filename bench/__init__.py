"""upcs bench."""
