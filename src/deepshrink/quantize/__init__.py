"""deepshrink.quantize."""
