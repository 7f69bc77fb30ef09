"""deepshrink.prune."""
