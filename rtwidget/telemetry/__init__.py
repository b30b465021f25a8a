"""OpenTelemetry traces and metrics of a conversation (the ``telemetry`` extra): live from a
session, or after the fact from a recording, timed exactly as the DataFrame's latency columns.

>>> watch = rt.telemetry(tracer_provider, meter_provider).watch(chat)   # doctest: +SKIP
>>> rt.telemetry.export(rt.load_recording("talk"))                      # doctest: +SKIP

The OpenTelemetry packages are imported only when this is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emit import Emitter
    from .live import Watch

_MISSING = ("rt.telemetry needs the OpenTelemetry SDK: pip install 'rtwidget[telemetry]' "
            "(opentelemetry-sdk and the OTLP/HTTP exporter)")


def _otlp_providers(endpoint: str) -> tuple[Any, Any]:
    """A tracer and a meter provider that send to the OTLP/HTTP collector at ``endpoint``
    (``http://host:4318``)."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    base = endpoint.rstrip("/")
    resource = Resource.create({"service.name": "rtwidget"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))
    return tracer_provider, MeterProvider(resource=resource, metric_readers=[reader])


class Telemetry:
    """Where spans and metrics go: a tracer and a meter provider (OpenTelemetry's global ones
    when ``None``), or an OTLP/HTTP ``endpoint`` for which both are made (then
    :meth:`shutdown` flushes them)."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None, *,
                 endpoint: str | None = None) -> None:
        try:
            from . import emit  # noqa: F401
        except ImportError as exc:
            raise ImportError(_MISSING) from exc
        self._own = endpoint is not None
        if endpoint is not None:
            tracer_provider, meter_provider = _otlp_providers(endpoint)
        self.tracer_provider, self.meter_provider = tracer_provider, meter_provider

    def emitter(self, provider: str | None = None, model: str | None = None) -> Emitter:
        from .emit import Emitter

        return Emitter(self.tracer_provider, self.meter_provider, provider=provider,
                       model=model)

    def watch(self, session: Any) -> Watch:
        """Emit ``session``'s (or the chat widget's) spans as it goes on; ``.stop()`` on the
        result (or a ``with`` block) ends the session span."""
        from .live import Watch

        return Watch(session, self.emitter())

    def export(self, source: Any, provider: str | None = None,
               model: str | None = None) -> int:
        """Emit a finished conversation — a recording, a session, the chat widget or a
        :class:`~rtwidget.protocol.Conversation` — after the fact; returns its number of
        turns. ``provider`` defaults to the recording's."""
        from .emit import export_conversation

        conversation = getattr(source, "conversation", source)
        inner = getattr(source, "session", None)
        conversation = getattr(inner, "conversation", conversation)
        meta = getattr(source, "meta", None)
        if provider is None and isinstance(meta, dict) and isinstance(meta.get("endpoint"),
                                                                       dict):
            provider = meta["endpoint"].get("provider")
        endpoint = getattr(inner or source, "endpoint", None)
        provider = provider or getattr(endpoint, "provider", None)
        count = export_conversation(conversation, self.emitter(provider, model))
        if self._own:
            self.flush()
        return count

    def flush(self) -> None:
        """Send what the providers hold now (when they can be flushed)."""
        for provider in (self.tracer_provider, self.meter_provider):
            flush = getattr(provider, "force_flush", None)
            if callable(flush):
                flush()

    def shutdown(self) -> None:
        """Flush and shut down the providers this object made for an ``endpoint``."""
        if self._own:
            for provider in (self.tracer_provider, self.meter_provider):
                provider.shutdown()


class _Entry:
    """``rt.telemetry``: call it for a :class:`Telemetry`, or use ``rt.telemetry.export``
    for a one-off export through the global (or given) providers."""

    def __call__(self, tracer_provider: Any = None, meter_provider: Any = None, *,
                 endpoint: str | None = None) -> Telemetry:
        return Telemetry(tracer_provider, meter_provider, endpoint=endpoint)

    def export(self, source: Any, tracer_provider: Any = None, meter_provider: Any = None,
               *, endpoint: str | None = None, provider: str | None = None,
               model: str | None = None) -> int:
        """Emit a recorded (or finished) conversation's spans and metrics; see
        :meth:`Telemetry.export`."""
        telemetry = Telemetry(tracer_provider, meter_provider, endpoint=endpoint)
        try:
            return telemetry.export(source, provider, model)
        finally:
            telemetry.shutdown()

    def __repr__(self) -> str:
        return "<rtwidget.telemetry: call with tracer_provider=, meter_provider= or endpoint=>"


telemetry = _Entry()
"""``rt.telemetry``."""

__all__ = ["Telemetry", "telemetry"]
