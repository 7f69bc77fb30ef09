"""deepshrink.recipe."""
