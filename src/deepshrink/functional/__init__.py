"""deepshrink.functional."""
