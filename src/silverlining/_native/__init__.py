"""C extensions, each optional: callers fall back to the standard library without them."""
