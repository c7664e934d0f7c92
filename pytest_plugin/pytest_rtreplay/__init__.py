"""rtreplay pytest plugin."""
