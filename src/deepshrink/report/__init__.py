"""deepshrink.report."""
