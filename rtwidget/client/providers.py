"""Where a session connects and how it authenticates.

Keys are read here and nowhere else, and an :class:`Endpoint` never shows its key: not in its
``repr``, not in exceptions. Precedence: an explicit argument, then the environment, then the
embedded local server.
"""

from __future__ import annotations

import getpass
import os
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..protocol.errors import ConfigError, InvalidInput
from ..protocol.redact import looks_secret, mask_url, remember_secret

ProviderName = Literal["inworld", "openai", "azure", "url", "local"]

INWORLD_URL = "wss://api.inworld.ai/api/v1/realtime/session"
OPENAI_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_OPENAI_MODEL = "gpt-realtime"

ENV_KEYS: dict[str, str] = {"inworld": "INWORLD_API_KEY", "openai": "OPENAI_API_KEY",
                            "azure": "AZURE_OPENAI_API_KEY"}


class Secret:
    """A credential that shows as ``'***'`` wherever it is printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember_secret(value)

    def reveal(self) -> str:
        """The secret itself, for building a request header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Endpoint:
    """A resolved provider: the URL to dial and the headers to send, built per connection.

    ``session_key`` is Inworld's client-chosen session id; when ``None`` a fresh one is made for
    every connection.
    """

    provider: ProviderName
    url: str
    secret: Secret | None = field(default=None, repr=False)
    auth_scheme: Literal["basic", "bearer", "api-key", "none"] = "none"
    extra_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    dialect: Literal["ga", "beta"] = "ga"
    session_key: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    token_source: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, value in self.extra_headers.items():
            if looks_secret(name):
                remember_secret(value)
        parts = urlsplit(self.url)
        remember_secret(parts.password)
        for name, value in [*parse_qsl(parts.query), *self.query.items()]:
            if looks_secret(name):
                remember_secret(value)

    def __repr__(self) -> str:
        return (f"Endpoint(provider={self.provider!r}, url={mask_url(self.url)!r}, "
                f"auth_scheme={self.auth_scheme!r}, dialect={self.dialect!r})")

    def connect_url(self, new_key: Callable[[], str] = lambda: uuid.uuid4().hex) -> str:
        """The URL for one connection attempt."""
        params = dict(self.query)
        if self.provider == "inworld":
            params = {"key": self.session_key or new_key(), "protocol": "realtime", **params}
        if not params:
            return self.url
        parts = urlsplit(self.url)
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

    def headers(self) -> dict[str, str]:
        """Request headers for one connection attempt, with the credential (a minted JWT is
        fetched here, so this may block on the network: call it off the event loop)."""
        out = dict(self.extra_headers)
        if self.token_source is not None:
            out["Authorization"] = f"Bearer {self.token_source()}"
        elif self.secret:
            value = self.secret.reveal()
            if self.auth_scheme == "api-key":
                out["api-key"] = value
            else:
                scheme = "Basic" if self.auth_scheme == "basic" else "Bearer"
                out["Authorization"] = f"{scheme} {value}"
        if self.provider == "openai" and self.dialect == "beta":
            out["OpenAI-Beta"] = "realtime=v1"
        return out

    @property
    def is_loopback(self) -> bool:
        """Whether the URL points at this machine."""
        host = urlsplit(self.url).hostname or ""
        return host in ("localhost", "::1") or host.startswith("127.")

    def describe(self) -> str:
        """Provider and URL, never the key: safe to show in a widget or a log (query
        parameters that could hold a credential are masked)."""
        return f"{self.provider} {mask_url(self.url)}"


def ask_key(provider: str = "inworld") -> None:
    """Ask for ``provider``'s API key at a hidden prompt and keep it in this process's
    environment (``INWORLD_API_KEY``, ``OPENAI_API_KEY`` or ``AZURE_OPENAI_API_KEY``), where
    sessions find it: the key is never typed into a cell, so it is not saved in the notebook."""
    if provider not in ENV_KEYS:
        raise ConfigError(f"ask_key knows {sorted(ENV_KEYS)}, not {provider!r}")
    value = getpass.getpass(f"{provider} API key (kept in this kernel only): ").strip()
    if not value:
        raise InvalidInput("no key was entered; nothing changed")
    os.environ[ENV_KEYS[provider]] = value


def _key(explicit: str | None, env_name: str) -> Secret | None:
    value = explicit if explicit is not None else os.environ.get(env_name)
    return Secret(value) if value else None


def _inworld(url: str, api_key: str | None, jwt: str | None, key_id: str | None,
             key_secret: str | None, extra: dict[str, str],
             session_key: str | None) -> Endpoint:
    """Inworld's endpoint with the strongest credential given: a JWT (``jwt=``, or an
    ``api_key`` shaped like one) as Bearer; a key id and secret (arguments, else
    ``INWORLD_KEY``/``INWORLD_SECRET`` when no ``INWORLD_API_KEY`` is set) minted into a JWT per
    connection; else the portal key as Basic, with a pasted ``Basic `` prefix removed."""
    from .inworld_auth import JwtMinter, clean_credential, looks_like_jwt

    env_id, env_secret = os.environ.get("INWORLD_KEY"), os.environ.get("INWORLD_SECRET")
    if key_id is None and key_secret is None and api_key is None and jwt is None \
            and not os.environ.get(ENV_KEYS["inworld"]) and env_id and env_secret:
        key_id, key_secret = env_id, env_secret
    if key_id and key_secret and jwt is None:
        return Endpoint("inworld", url, None, "bearer", extra, "ga", session_key,
                        token_source=JwtMinter(key_id, key_secret))
    if (key_id or key_secret) and jwt is None:
        raise ConfigError("an Inworld JWT is minted from both key_id= and key_secret=; one of "
                         "them is missing")
    raw = jwt if jwt is not None else (api_key if api_key is not None
                                       else os.environ.get(ENV_KEYS["inworld"]))
    value = clean_credential(raw) if raw else ""
    scheme: Literal["basic", "bearer"] = "bearer" if jwt is not None or looks_like_jwt(value) \
        else "basic"
    return Endpoint("inworld", url, Secret(value) if value else None, scheme, extra, "ga",
                    session_key)


def resolve(
    provider: str | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    headers: Mapping[str, str] | None = None,
    dialect: Literal["ga", "beta"] = "ga",
    session_key: str | None = None,
    deployment: str | None = None,
    api_version: str | None = None,
    jwt: str | None = None,
    key_id: str | None = None,
    key_secret: str | None = None,
) -> Endpoint:
    """Pick the endpoint: an explicit ``provider``/``url`` wins, then ``INWORLD_API_KEY``, then
    ``OPENAI_API_KEY``, then ``RTWIDGET_URL``; with none of them, ``local`` (the embedded
    server, whose URL the session fills in when it starts it).

    Inworld takes ``api_key`` (the portal's Basic key), ``jwt`` (sent as Bearer), or
    ``key_id`` with ``key_secret`` (a JWT is minted from them for each connection).
    ``dialect="beta"`` is deprecated: OpenAI retired the beta Realtime API in 2026.
    Azure uses the GA endpoint (``/openai/v1/realtime?model=<deployment>``) unless an
    ``api_version`` asks for the deprecated preview one."""
    if dialect == "beta":
        warnings.warn("dialect='beta' is deprecated: OpenAI retired the beta Realtime API in "
                      "2026; the GA protocol (the default) is the one to use",
                      DeprecationWarning, stacklevel=2)
    name = (provider or "").lower() or None
    if name is None:
        if url:
            name = "url"
        elif os.environ.get("INWORLD_API_KEY"):
            name = "inworld"
        elif os.environ.get("OPENAI_API_KEY"):
            name = "openai"
        elif os.environ.get("RTWIDGET_URL"):
            name, url = "url", os.environ["RTWIDGET_URL"]
        else:
            name = "local"
    extra = dict(headers or {})
    if name == "inworld":
        return _inworld(url or INWORLD_URL, api_key, jwt, key_id, key_secret, extra, session_key)
    if name == "openai":
        plain = (model or DEFAULT_OPENAI_MODEL).removeprefix("openai/")
        return Endpoint(
            "openai",
            url or OPENAI_URL,
            _key(api_key, ENV_KEYS["openai"]),
            "bearer",
            extra,
            dialect,
            query={"model": plain},
        )
    if name == "azure":
        base = url or os.environ.get("AZURE_OPENAI_ENDPOINT", "")
        if not base:
            raise ConfigError("provider 'azure' needs url= (https://<resource>.openai.azure.com) "
                             "or AZURE_OPENAI_ENDPOINT")
        parts = urlsplit(base)
        scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
        target = deployment or (model or "").removeprefix("azure/") or DEFAULT_OPENAI_MODEL
        if api_version is None:  # GA: the v1 path, the deployment as the model
            path = parts.path if parts.path.endswith("/realtime") else "/openai/v1/realtime"
            query = {"model": target}
        else:
            warnings.warn(f"Azure's preview Realtime API (api_version={api_version!r}) is "
                          "deprecated; leave api_version out to use the GA endpoint",
                          DeprecationWarning, stacklevel=2)
            path = parts.path if parts.path.endswith("/realtime") else "/openai/realtime"
            query = {"api-version": api_version, "deployment": target}
        return Endpoint("azure", urlunsplit((scheme, parts.netloc, path, "", "")),
                        _key(api_key, ENV_KEYS["azure"]), "api-key", extra, dialect,
                        query=query)
    if name == "url":
        if not url:
            raise ConfigError("provider 'url' needs url=")
        secret = Secret(api_key) if api_key else None
        return Endpoint("url", url, secret, "bearer" if secret else "none", extra, dialect)
    if name == "local":
        secret = Secret(api_key) if api_key else None
        return Endpoint(
            "local", url or "", secret, "bearer" if secret else "none", extra, dialect
        )
    raise ConfigError(f"unknown provider {provider!r}; expected inworld, openai, azure, url or "
                     "local")


# Each provider's documented speech-to-text model for the user's side of a voice chat: Inworld
# recommends its own STT model, OpenAI (and Azure OpenAI) document gpt-4o-mini-transcribe, and
# the local server transcribes with its own engine (Whisper or PocketSphinx) whatever the name.
TRANSCRIPTION_MODELS: dict[str, str] = {
    "inworld": "inworld/inworld-stt-1",
    "openai": "gpt-4o-mini-transcribe",
    "azure": "gpt-4o-mini-transcribe",
    "local": "pocketsphinx",
    "url": "gpt-4o-mini-transcribe",
}


def transcription_model(endpoint: Endpoint) -> str:
    """The speech-to-text model a voice chat on ``endpoint`` asks for by default."""
    return TRANSCRIPTION_MODELS.get(endpoint.provider, TRANSCRIPTION_MODELS["url"])
