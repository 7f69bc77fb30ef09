"""deepshrink.export."""
