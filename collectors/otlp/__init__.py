"""OTLP receivers: gRPC (:4317) and HTTP (:4318) that store each export request durably.

How a request goes (the same steps on both transports, in :mod:`.ingest`):

1. bearer token (if ``auth`` is set), media type and encoding (HTTP), size limit;
2. one parse with the upb message class: that is the validation; items are counted per
   scope (``len()`` of each scope's list), never one by one;
3. one append of the request bytes, as they came (JSON is converted to protobuf first,
   gzip is undone), as one record on the signal's stream; the answer waits for it;
4. an empty Export*ServiceResponse, or a partial success for metrics without data.

Decoding into spans, points and log records happens later, in the consumers. Errors come
from the one error tree in :mod:`keiko.errors` and are told to clients by :mod:`.status`:

=========================  ===================  ====  ==========================
error                      gRPC                 HTTP  retried by exporters
=========================  ===================  ====  ==========================
InvalidInput, TooLarge     INVALID_ARGUMENT     400   no
UnsupportedMediaType       INVALID_ARGUMENT     415   no
Unauthenticated            UNAUTHENTICATED      401   no
StoreFull                  RESOURCE_EXHAUSTED   429   yes, after the delay given
StoreUnavailable,          UNAVAILABLE          503   yes, after the delay given
ShuttingDown
anything unexpected        INTERNAL             500   no (logged with traceback)
=========================  ===================  ====  ==========================

The delay goes in ``google.rpc.retryinfo-bin`` and ``grpc-status-details-bin`` trailers
(gRPC) and ``Retry-After`` (HTTP). Every request is counted by keiko.telemetry with
component ``otlp``, its signal and transport, and the outcome (``ok``, ``partial`` or the
error's reason).
"""
