"""Recorded sessions loaded back, re-run against a server, and two runs compared turn by turn
(the format is :mod:`rtwidget.protocol.record_format`; the client writes it). Public names are
re-exported from :mod:`rtwidget`."""
