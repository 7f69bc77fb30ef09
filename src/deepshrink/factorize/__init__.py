"""deepshrink.factorize."""
