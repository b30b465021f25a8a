"""Function calls answered: functions made tools (their JSON Schema), the tool registry
(``@rt.tool``), the runner that calls tools when the model asks, and how results become
outputs. Public names are re-exported from :mod:`rtwidget` (``rtwidget.tools`` is the default
registry)."""
