"""HTTP adapter for `lineage serve`: an OpenAI-compatible Starlette app on uvicorn, Prometheus metrics.

Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics.
Every answer names the generation and commit that produced it (headers X-Lineage-Generation and
X-Lineage-Commit, and a `lineage` field). Inference runs on one worker thread: requests queue, the
event loop stays free for /health and /metrics. What answers is the Backend (lineage/loop/serve.py).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ..core.errors import BadRequestError, ServeError
from .serving import Answer, Ask

log = logging.getLogger("lineage")


class Backend(Protocol):
    """What the app asks: an answer (on the worker thread), health, the models, the limits."""

    @property
    def max_prompt_chars(self) -> int: ...

    @property
    def max_new_tokens(self) -> int: ...

    def answer(self, ask: Ask) -> Answer: ...

    def health(self) -> dict: ...

    def models(self) -> list[dict]: ...


class Metrics:
    """The Prometheus series of one server, in its own registry (prometheus_client)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("lineage_requests", "HTTP requests answered", ["endpoint", "status", "generation"],
                                registry=self.registry)
        self.latency = Histogram("lineage_request_seconds", "Request latency, queueing included", ["endpoint"],
                                 registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.tokens = Counter("lineage_tokens", "Tokens read and written", ["kind", "generation"],
                              registry=self.registry)
        self.served = Gauge("lineage_generation_served", "1 for the generation and commit now served",
                            ["generation", "commit"], registry=self.registry)
        self.cutovers = Counter("lineage_cutovers", "Cut-overs by result (done, failed, rolled_back)", ["result"],
                                registry=self.registry)
        self.shadow_parity = Gauge("lineage_shadow_parity", "Share of mirrored answers the shadow candidate agrees on",
                                   ["candidate"], registry=self.registry)
        self.shadow_samples = Counter("lineage_shadow_samples", "Requests mirrored to the shadow candidate",
                                      ["candidate", "agree"], registry=self.registry)

    def serving(self, generation: str, commit: str) -> None:
        """Mark what is served now (the series of the one served before is removed)."""
        self.served.clear()
        self.served.labels(generation, commit).set(1)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# ---------------------------------------------------------------- request parsing (OpenAI's shapes)


def _number(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise BadRequestError(f"'{key}' must be a number between {lo} and {hi}, got {value!r}", key)
    return float(value)


def parse_ask(kind: str, body: Any, max_prompt_chars: int, max_new_tokens: int) -> Ask:
    """Validate an OpenAI completion or chat request body.

    Raises:
        BadRequestError: a missing or mistyped field, a stream request, an oversized prompt.
    """
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    if body.get("stream"):
        raise BadRequestError("streaming is not supported: send 'stream': false", "stream")
    if body.get("n", 1) != 1:
        raise BadRequestError("only n=1 is supported", "n")
    prompt: Any = None
    messages: tuple[tuple[str, str], ...] = ()
    if kind == "completion":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise BadRequestError("'prompt' must be a string", "prompt")
        size = len(prompt)
    else:
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise BadRequestError("'messages' must be a non-empty list of {role, content}", "messages")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                   for m in raw):
            raise BadRequestError("each message needs a string 'role' and a string 'content'", "messages")
        messages = tuple((m["role"], m["content"]) for m in raw)
        size = sum(len(content) for _, content in messages)
    if size > max_prompt_chars:
        raise BadRequestError(f"the prompt is {size} characters; this server takes at most {max_prompt_chars} "
                              "(serve.max_prompt_chars in params.yaml)", "prompt", "prompt_too_long")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 16))
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= max_new_tokens:
        raise BadRequestError(f"'max_tokens' must be an integer from 1 to {max_new_tokens}, got {max_tokens!r}",
                              "max_tokens")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
        raise BadRequestError("'stop' must be a string or a list of strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequestError("'seed' must be an integer", "seed")
    return Ask(kind, prompt, messages, max_tokens, _number(body, "temperature", 0.0, 0.0, 2.0),
               _number(body, "top_p", 1.0, 0.0, 1.0), tuple(stop), seed)


def response_body(kind: str, answer: Answer) -> dict:
    """An OpenAI-shaped response with a `lineage` field naming generation and commit."""
    usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
             "total_tokens": answer.prompt_tokens + answer.completion_tokens}
    if kind == "completion":
        choice: dict = {"index": 0, "text": answer.text, "finish_reason": answer.finish_reason, "logprobs": None}
        prefix, obj = "cmpl", "text_completion"
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": answer.text},
                  "finish_reason": answer.finish_reason}
        prefix, obj = "chatcmpl", "chat.completion"
    return {"id": f"{prefix}-{uuid.uuid4().hex[:24]}", "object": obj, "created": int(time.time()),
            "model": answer.generation, "choices": [choice], "usage": usage,
            "lineage": {"generation": answer.generation, "commit": answer.commit}}


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# ---------------------------------------------------------------- the app


def build_app(backend: Backend, metrics: Metrics):
    """The Starlette app; inference on one worker thread, so a cut-over falls between two requests."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    worker = ThreadPoolExecutor(1, thread_name_prefix="lineage-infer")

    def lineage_headers(answer: Answer | None) -> dict:
        if answer is None:
            return {}
        return {"X-Lineage-Generation": answer.generation, "X-Lineage-Commit": answer.commit}

    async def infer(request: Request, kind: str, endpoint: str) -> Response:
        start = time.perf_counter()
        status, generation = 200, "-"
        try:
            try:
                body = json.loads(await read_body(request) or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadRequestError(f"the request body is not JSON: {exc}") from None
            ask = parse_ask(kind, body, backend.max_prompt_chars, backend.max_new_tokens)
            answer = await asyncio.get_running_loop().run_in_executor(worker, backend.answer, ask)
            generation = answer.generation
            metrics.tokens.labels("prompt", generation).inc(answer.prompt_tokens)
            metrics.tokens.labels("completion", generation).inc(answer.completion_tokens)
            return JSONResponse(response_body(kind, answer), headers=lineage_headers(answer))
        except BadRequestError as exc:
            status = 400
            return JSONResponse(error_body(exc.problem, param=exc.param, code=exc.code), status_code=400)
        except Exception as exc:  # a bug or a broken model: this request fails, the server keeps serving
            status = 500
            log.exception("serve: %s failed", endpoint)
            return JSONResponse(error_body(f"{type(exc).__name__}: {exc}".splitlines()[0], "server_error"),
                                status_code=500)
        finally:
            metrics.requests.labels(endpoint, str(status), generation).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    async def read_body(request: Request) -> bytes:
        # a body far beyond any allowed prompt is refused while it arrives, never held whole in memory
        limit = backend.max_prompt_chars * 8 + 65536  # JSON escapes a character in at most 6 bytes
        if int(request.headers.get("content-length") or 0) > limit:
            raise BadRequestError(f"the request body is over {limit} bytes", "prompt", "prompt_too_long")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BadRequestError(f"the request body is over {limit} bytes", "prompt", "prompt_too_long")
        return bytes(body)

    async def completions(request: Request) -> Response:
        return await infer(request, "completion", "/v1/completions")

    async def chat(request: Request) -> Response:
        return await infer(request, "chat", "/v1/chat/completions")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": backend.models()})

    async def health(request: Request) -> Response:
        state = backend.health()
        headers = {"X-Lineage-Generation": state["generation"], "X-Lineage-Commit": state["commit"]}
        return JSONResponse(state, status_code=200 if state["status"] != "stopping" else 503, headers=headers)

    async def prometheus(request: Request) -> Response:
        body, content_type = metrics.text()
        return Response(body, media_type=content_type)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'not found')}"),
                            status_code=status)

    routes = [Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/chat/completions", chat, methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]), Route("/health", health, methods=["GET"]),
              Route("/metrics", prometheus, methods=["GET"])]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one), so a taken port fails before loading.

    Raises:
        ServeError: the port is in use, or the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is in use",
                             "Stop what listens there, or pass --port N (--port 0 picks a free one).") from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}", "Pass --bind with a local address.") \
            from None
    sock.listen(256)
    return sock


class _Stopped(Exception):
    """SIGTERM arrived: stop like Ctrl-C does."""


def _stop(signum, frame) -> None:
    raise _Stopped


def run(app, sock: socket.socket) -> None:
    """Serve app on a bound socket with uvicorn until SIGINT or SIGTERM; return when stopped."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=10)
    # uvicorn shuts down gracefully on both signals, then raises the signal again: make that an
    # exception here rather than the default SIGTERM death, so the caller's cleanup runs.
    previous = signal.signal(signal.SIGTERM, _stop) if threading.current_thread() is threading.main_thread() else None
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
