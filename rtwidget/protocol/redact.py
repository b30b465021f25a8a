"""Credentials kept out of sight: every known key masked by value, and log records (the wire
logs of ``websockets`` included) masked by header name and URL parameter as well. Pure: no I/O;
the client registers the keys it reads, and the client and the server log through it."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

_SECRET_WORDS = "key|token|secret|pass|auth|sig|credential|jwt|code"  # in a name
_SECRET_NAME = re.compile(f"({_SECRET_WORDS})", re.I)
_SECRET_PARAM = _SECRET_NAME
_MIN_SECRET = 6  # shorter values are not masked by value (they would mask ordinary words)
_known: set[str] = set()
MASK = "***"


def looks_secret(name: str) -> bool:
    """Whether a header or parameter name says its value is a credential."""
    return bool(_SECRET_NAME.search(name))


def remember_secret(value: str | None) -> None:
    """Mask ``value`` wherever :func:`mask_secrets` runs (logs, reprs, recordings) and in every
    server event as it is decoded, whatever name it appears under."""
    if value and len(value) >= _MIN_SECRET:
        _known.add(value)


def known_secrets() -> list[str]:
    """Every credential value this process has seen, longest first."""
    return sorted(_known, key=len, reverse=True)


def mask_secrets(text: str) -> str:
    """``text`` with every known credential value replaced by ``***``."""
    for value in known_secrets():
        if value in text:
            text = text.replace(value, MASK)
    return text


def mask_url(url: str) -> str:
    """``url`` with any user info and the values of query parameters that could hold a
    credential replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = "&".join(
        f"{k}=***" if _SECRET_PARAM.search(k) else f"{k}={v}" if v else k
        for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return mask_secrets(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


_CREDENTIAL_LINE = re.compile(rf"(?im)^([<>]?\s*(?:[\w-]*(?:{_SECRET_WORDS})[\w-]*|cookie|"
                              r"set-cookie)\s*:).*$")
_CREDENTIAL_PARAM = re.compile(rf"([?&][^=&\s]*(?:{_SECRET_WORDS})[^=&\s]*=)[^&\s]+", re.I)


class RedactCredentials(logging.Filter):
    """Masks credentials in log records: header lines whose name looks secret, such as
    ``Authorization``, ``X-Goog-Api-Key`` or ``WWW-Authenticate`` (the ``websockets`` library
    logs every header at DEBUG level), secret-looking URL query values, and every known
    credential value wherever it appears."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:  # the traceback's text is masked too
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        masked = mask_secrets(
            _CREDENTIAL_PARAM.sub(r"\1***", _CREDENTIAL_LINE.sub(r"\1 ***", message)))
        if masked != message:
            record.msg, record.args = masked, None
        return True


def wire_logger(name: str) -> logging.Logger:
    """The logger to hand to ``websockets`` (``rtwidget.wire.client`` / ``.server``): its
    records pass :class:`RedactCredentials` first, so DEBUG logging shows no key."""
    return _redacted(f"rtwidget.wire.{name}")


def _redacted(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactCredentials) for f in logger.filters):
        logger.addFilter(RedactCredentials())
    return logger


for _name in ("rtwidget.session", "rtwidget.server", "rtwidget.tools", "rtwidget.recording",
              "rtwidget.widget"):  # rtwidget's own records, which may quote a server or URL
    _redacted(_name)


