"""deepshrink.encode."""
