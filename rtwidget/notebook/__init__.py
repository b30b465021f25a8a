"""The notebook front: the voice chat widget (and its bundled page code in ``static/``), its link
to the page and the messages the two exchange, push-to-talk, transcript rows, audio transport to
the page, ``rtwidget.chat()`` and the ``%rtchat`` magics. Public names are re-exported from
:mod:`rtwidget`."""
