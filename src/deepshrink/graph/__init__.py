"""deepshrink.graph."""
