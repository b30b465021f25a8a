"""The conversation as data: the live pandas DataFrame, exports, and the per-turn latency table.
Public names are re-exported from :mod:`rtwidget`."""
