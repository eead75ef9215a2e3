"""The plugin API: what a method file in `methods/` imports."""
