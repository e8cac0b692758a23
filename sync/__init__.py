"""upcs sync."""
