"""The demo system: a small shop with an LLM shopping assistant.

    loadgen ─► frontend ─┬─► cart ─► redis (a CLIENT span only: no server is started)
                         ├─► checkout ─┬─► cart
                         │             └─► payment (JSON-RPC: PaymentService/Charge)
                         └─► llm-agent ─┬─► model-api (an external LLM API, not instrumented)
                                        └─► cart (the agent's get_cart tool)

Each service does a little simulated work (log-normal sleeps, so latencies have tails),
and every hop is a real HTTP request on loopback.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from keiko.demo import MODEL_API, REDIS, SERVICES
from keiko.demo.faults import FaultPlan, InjectedFault
from keiko.demo.otel import ExportTally, ExportTarget, build_telemetry, service_resource
from keiko.demo.service import (
    POLL_S,
    BadRequest,
    Directory,
    Json,
    Request,
    Route,
    Service,
    UpstreamError,
)

VERSIONS = {
    "frontend": "1.4.2",
    "checkout": "2.1.0",
    "cart": "1.9.3",
    "payment": "0.8.1",
    "llm-agent": "0.3.0",
}
MODEL = "gpt-4o-mini"
PRODUCTS = {
    "OLJCESPC7Z": 19.99,
    "66VCHSJNUP": 349.0,
    "1YMWWN1N4O": 109.99,
    "L9ECAV7KIM": 8.99,
    "2ZYFJ3GM2N": 24.5,
    "0PUK6V6EV0": 65.0,
    "LS4PSXUNUM": 12.49,
    "9SIQT8TOJO": 31.0,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_cart",
            "description": "The items in the user's cart",
            "parameters": {"type": "object", "properties": {"user": {"type": "string"}}},
        },
    }
]


_RNG = random.Random()


def work(median_ms: float) -> None:
    """Simulated work: a log-normal sleep around ``median_ms`` (a long tail, like real code)."""
    time.sleep(_RNG.lognormvariate(0.0, 0.4) * median_ms / 1000)


def cart_items(user: str) -> list[Json]:
    """A stable cart per user, so repeated reads agree."""
    digest = hashlib.sha256(user.encode()).digest()
    skus = list(PRODUCTS)
    return [
        {"sku": skus[b % len(skus)], "quantity": 1 + b % 3, "price": PRODUCTS[skus[b % len(skus)]]}
        for b in digest[: 1 + digest[-1] % 4]
    ]


def _user(request: Request) -> str:
    user = request.query.get("user") or request.body.get("user")
    if not user:
        raise BadRequest("missing user")
    return str(user)


# -- the services -----------------------------------------------------------------------


def frontend_routes(svc: Service) -> list[Route]:
    """Pages: home (reads the cart), checkout, and the shopping assistant."""

    def home(req: Request) -> Json:
        work(2)
        cart = svc.call("cart", "GET", f"/cart?user={_user(req)}")
        return {"page": "home", "cart_items": len(cart["items"])}

    def checkout(req: Request) -> Json:
        work(1.5)
        return svc.call("checkout", "POST", "/checkout", {"user": _user(req)})

    def assistant(req: Request) -> Json:
        work(1)
        return svc.call(
            "llm-agent",
            "POST",
            "/ask",
            {"user": _user(req), "question": req.body.get("question", "")},
        )

    return [
        Route("GET", "/", home),
        Route("POST", "/checkout", checkout),
        Route("POST", "/assistant", assistant),
    ]


def cart_routes(svc: Service) -> list[Route]:
    """The cart, kept in a (fake) Redis: every access is a redis CLIENT span."""

    def redis(operation: str, key: str) -> None:
        attributes: dict[str, AttributeValue] = {
            "db.system.name": "redis",
            "db.system": "redis",
            "db.operation.name": operation,
            "db.query.text": f"{operation} {key}",
            "db.namespace": "0",
            "server.address": "redis-cart",
            "server.port": 6379,
            "peer.service": REDIS,
        }
        with svc.client_span(operation, attributes) as span:
            try:
                svc.faults.apply(REDIS)
                work(0.5)
            except InjectedFault as exc:
                span.set_attribute("error.type", "InjectedFault")
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise UpstreamError(REDIS, str(exc)) from exc

    def get(req: Request) -> Json:
        user = _user(req)
        redis("HGETALL", f"cart:{user}")
        return {"user": user, "items": cart_items(user)}

    def empty(req: Request) -> Json:
        redis("DEL", f"cart:{_user(req)}")
        return {"emptied": True}

    return [Route("GET", "/cart", get), Route("DELETE", "/cart", empty)]


def checkout_routes(svc: Service) -> list[Route]:
    """Checkout: read the cart, charge the payment service, empty the cart."""

    def checkout(req: Request) -> Json:
        user = _user(req)
        items = svc.call("cart", "GET", f"/cart?user={user}")["items"]
        total = round(sum(i["price"] * i["quantity"] for i in items), 2)
        work(3)
        charge = {
            "jsonrpc": "2.0",
            "method": "Charge",
            "id": uuid.uuid4().hex[:8],
            "params": {"amount": total, "currency": "EUR", "user": user},
        }
        result = svc.call("payment", "POST", "/rpc", charge, rpc=("PaymentService", "Charge"))
        svc.call("cart", "DELETE", f"/cart?user={user}")
        return {
            "order_id": uuid.uuid4().hex[:12],
            "total": total,
            "transaction_id": result["result"]["transaction_id"],
        }

    return [Route("POST", "/checkout", checkout)]


def payment_routes(svc: Service) -> list[Route]:
    """PaymentService/Charge over JSON-RPC 2.0, with an internal fraud-check span."""

    def charge(req: Request) -> Json:
        with svc.tracer.start_as_current_span(
            "fraud_check",
            attributes={"payment.amount": float(req.body.get("params", {}).get("amount", 0))},
        ):
            work(4)
        work(3)
        return {
            "jsonrpc": "2.0",
            "id": req.body.get("id"),
            "result": {"transaction_id": uuid.uuid4().hex[:16]},
        }

    return [Route("POST", "/rpc", charge, rpc=("PaymentService", "Charge"))]


class Agent:
    """The LLM shopping assistant: chat → tool call (get_cart) → chat, with gen_ai.* spans."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.tokens = svc.meter.create_histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Tokens used per model call",
            explicit_bucket_boundaries_advisory=(16, 64, 256, 1024, 4096, 16384, 65536),
        )
        self.duration = svc.meter.create_histogram(
            "gen_ai.client.operation.duration", "s", "Duration of model calls"
        )

    def routes(self) -> list[Route]:
        """``POST /ask``."""
        return [Route("POST", "/ask", self.ask)]

    def ask(self, req: Request) -> Json:
        """Answer a question about the user's cart: one tool call between two model calls."""
        user = _user(req)
        messages: list[Json] = [
            {"role": "system", "content": "You are the shop's assistant."},
            {"role": "user", "content": req.body.get("question") or "What is in my cart?"},
        ]
        with self.svc.tracer.start_as_current_span(
            "invoke_agent shop-assistant",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "shop-assistant",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": MODEL,
            },
        ):
            first = self.chat(messages)
            for call in first["message"].get("tool_calls", []):
                messages.append(first["message"])
                messages.append(self.run_tool(call, user))
            final = self.chat(messages)
        return {"answer": final["message"]["content"]}

    def run_tool(self, call: Json, user: str) -> Json:
        """Execute one tool call inside an ``execute_tool`` span."""
        name = call["function"]["name"]
        with self.svc.tracer.start_as_current_span(
            f"execute_tool {name}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": call["id"],
            },
        ):
            cart = self.svc.call("cart", "GET", f"/cart?user={user}")
        return {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(cart["items"])}

    def chat(self, messages: list[Json]) -> Json:
        """One chat completion inside a CLIENT span with the gen_ai semantic conventions."""
        host, port = self.svc.directory.addresses[MODEL_API]
        common = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": MODEL,
        }
        attributes: dict[str, AttributeValue] = {
            **common,
            "gen_ai.system": "openai",
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 512,
            "server.address": host,
            "server.port": port,
            "peer.service": MODEL_API,
        }
        started = time.perf_counter()
        with self.svc.client_span(f"chat {MODEL}", attributes) as span:
            try:
                reply = self.svc.exchange(
                    span,
                    MODEL_API,
                    "POST",
                    "/v1/chat/completions",
                    {"model": MODEL, "messages": messages, "tools": TOOLS},
                )
            except UpstreamError:
                self.duration.record(
                    time.perf_counter() - started, {**common, "error.type": "UpstreamError"}
                )
                raise
            choice, usage = reply["choices"][0], reply["usage"]
            span.set_attributes(
                {
                    "gen_ai.response.model": reply["model"],
                    "gen_ai.response.id": reply["id"],
                    "gen_ai.response.finish_reasons": [choice["finish_reason"]],
                    "gen_ai.usage.input_tokens": usage["prompt_tokens"],
                    "gen_ai.usage.output_tokens": usage["completion_tokens"],
                }
            )
        self.duration.record(time.perf_counter() - started, common)
        self.tokens.record(usage["prompt_tokens"], {**common, "gen_ai.token.type": "input"})
        self.tokens.record(usage["completion_tokens"], {**common, "gen_ai.token.type": "output"})
        return dict(choice)


# -- the model API (an external dependency: plain HTTP, no telemetry) --------------------


class ModelApi:
    """A fake OpenAI-style chat completions endpoint; slow-ish, and faultable."""

    def __init__(self, faults: FaultPlan, directory: Directory) -> None:
        self.faults = faults
        self.directory = directory
        self.rng = random.Random()
        self._server: ThreadingHTTPServer | None = None

    def complete(self, request: Json) -> Json:
        """A completion: a tool call first, an answer once a tool result is in the messages."""
        self.faults.apply(MODEL_API)
        messages = request.get("messages", [])
        prompt = 120 + sum(len(str(m.get("content", ""))) for m in messages) // 4
        answered = any(m.get("role") == "tool" for m in messages)
        completion = self.rng.randint(40, 220) if answered else self.rng.randint(12, 30)
        time.sleep((8 + completion * 0.08) * self.rng.lognormvariate(0, 0.3) / 1000)
        if answered:
            message: Json = {
                "role": "assistant",
                "content": "Your cart holds "
                + ", ".join(i["sku"] for i in json.loads(messages[-1]["content"]))
                + ".",
            }
        else:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_" + uuid.uuid4().hex[:10],
                        "type": "function",
                        "function": {"name": "get_cart", "arguments": "{}"},
                    }
                ],
            }
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12],
            "model": f"{MODEL}-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "stop" if answered else "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }

    def start(self) -> None:
        """Listen on a free loopback port."""
        complete = self.complete

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    status, body = 200, complete(json.loads(raw or b"{}"))
                except InjectedFault as exc:
                    status, body = 503, {"error": f"model overloaded ({exc})"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.directory.addresses[MODEL_API] = ("127.0.0.1", server.server_address[1])
        threading.Thread(
            target=server.serve_forever, args=(POLL_S,), name="demo-model-api", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# -- the whole system ------------------------------------------------------------------

_ROUTES: dict[str, Callable[[Service], list[Route]]] = {
    "frontend": frontend_routes,
    "checkout": checkout_routes,
    "cart": cart_routes,
    "payment": payment_routes,
    "llm-agent": lambda svc: Agent(svc).routes(),
}


class Shop:
    """Every demo service and the model API, started and stopped together."""

    def __init__(self, target: ExportTarget, tally: ExportTally, faults: FaultPlan) -> None:
        self.directory = Directory()
        self.faults = faults
        self.model_api = ModelApi(faults, self.directory)
        self.services: list[Service] = []
        self.resources = [service_resource(name, VERSIONS[name]) for name in SERVICES]
        for name, resource in zip(SERVICES, self.resources, strict=True):
            telemetry = build_telemetry(resource, target, tally)
            svc = Service(name, telemetry, faults, self.directory)
            svc.add_routes(_ROUTES[name](svc))
            self.services.append(svc)

    def instance_ids(self) -> set[str]:
        """The ``service.instance.id`` of every service: what tells this run's data apart."""
        return {str(r.attributes["service.instance.id"]) for r in self.resources}

    @property
    def frontend_url(self) -> str:
        """Where the load generator sends its requests."""
        return self.directory.url("frontend")

    def start(self) -> None:
        """Start the model API and every service on free loopback ports."""
        self.model_api.start()
        for svc in self.services:
            svc.start()

    def flush(self, timeout_s: float) -> bool:
        """Export every buffered span, metric point and log record; False on a timeout."""
        return all([svc.telemetry.force_flush(timeout_s) for svc in self.services])

    def stop(self) -> None:
        """Stop serving and shut the SDK providers down (which flushes them once more)."""
        for svc in self.services:
            svc.stop()
        self.model_api.stop()
        for svc in self.services:
            svc.telemetry.shutdown()
