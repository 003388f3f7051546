"""Built-in components; one module each."""
