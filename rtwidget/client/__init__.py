"""The kernel side of a session: where it connects (providers, keys), the connection and its
reconnect loop, the async session and the blocking one on its own thread, the recorder, voices.
Public names are re-exported from :mod:`rtwidget`."""
