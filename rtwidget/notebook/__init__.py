"""The notebook front: the voice chat widget (and its bundled page code in ``static/``), push-to-
talk, transcript rows, audio transport to the page, ``rtwidget.chat()`` and the ``%rtchat``
magics. Public names are re-exported from :mod:`rtwidget`."""
