"""Method plugins: one file per method, each registering itself by name.

Drop a file here with a `@register_method("name")` `MethodPlugin` subclass and
the workflow, the CLI and the tests pick it up; nothing else changes.
"""
