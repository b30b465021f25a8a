"""The conversation as data: the live pandas DataFrame, exports, the per-turn latency table,
usage split by kind of token, the price table and what a conversation cost.
Public names are re-exported from :mod:`rtwidget`."""
