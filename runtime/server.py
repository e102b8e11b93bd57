"""An OpenAI-compatible chat API over an engine of ``ffc.runtime.inference``.

``GET /v1/models`` and ``POST /v1/chat/completions`` (streamed as server-sent events
ending in ``[DONE]``, or whole), with usage counts, stop sequences and tool calls for
templates that have a tool format.

One model answers one request at a time: the others wait in a bounded first-come
queue, and a request that finds it full gets 503 with ``Retry-After``. A generation
ends when its client disconnects, when the request's time limit passes (the answer so
far comes back with finish_reason "length"), or when the server is told to stop.
``max_tokens`` is capped by the model's context and the server's limit; a prompt the
context cannot hold is refused. Every error is OpenAI-shaped JSON, 4xx for whatever
the client sent, and a bad request never stops the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import queue
import re
import secrets
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, Literal, Optional, Union

import anyio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from . import webchat
from .chat.templates import ConversationError
from .chat.templates.base import tool_results_of
from .inference import GenerationOptions, PromptTooLong, room_for_answer

log = logging.getLogger("ffc.serve")

MAX_STOPS, MAX_STOP_CHARS = 16, 256  # the stop scanner looks at each of them after every token
POLL_SECONDS = 0.25  # how often a waiting request checks whether its client is still there
MEDIA_PARTS = ("image_url", "input_audio", "file", "image", "audio", "video_url")
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidRequest(Exception):
    """A request the client must change: answered with a 400 (or ``status``) in OpenAI's error shape."""

    def __init__(self, message: str, param: Optional[str] = None, code: Optional[str] = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: Optional[str] = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Optional[str] = None
    tool_calls: Optional[list[ToolCall]] = None
    tool_call_id: Optional[str] = None
    image_urls: list[str] = Field(default_factory=list, exclude=True)  # set from image_url parts, never by clients
    video_urls: list[str] = Field(default_factory=list, exclude=True)  # likewise from video_url parts

    @model_validator(mode="before")
    @classmethod
    def _image_parts(cls, data, info: ValidationInfo):
        """For a vision-language engine, each image_url part of a user message becomes an <image> mark in the
        text (where the picture stood) and its URL is kept; likewise video_url parts (vLLM's name) become
        <video> for a run trained on videos. Text engines refuse media parts (below)."""
        if not isinstance(data, dict):
            return data
        data = {key: value for key, value in data.items() if key not in ("image_urls", "video_urls")}
        content = data.get("content")
        context = info.context or {}
        if not context.get("images") or data.get("role") != "user" or not isinstance(content, list):
            return data
        parts, urls = [], {"image_url": [], "video_url": []}
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "video_url" and not context.get("videos"):
                raise ValueError("this model was not trained on videos: send image_url and text parts")
            if kind in urls:
                url = part.get(kind)
                url = url.get("url") if isinstance(url, dict) else url
                if not isinstance(url, str):
                    raise ValueError(f'a {kind} part needs {{"{kind}": {{"url": "data:...;base64,..."}}}}')
                urls[kind].append(url)
                part = {"type": "text", "text": "<image>" if kind == "image_url" else "<video>"}
            parts.append(part)
        return {**data, "content": parts, "image_urls": urls["image_url"], "video_urls": urls["video_url"]}

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value):
        """OpenAI clients send a string or a list of parts; a text model reads the text parts, joined."""
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValueError(f"content is a JSON {_json_type(value)}: send a string or a list of text parts")
        texts = []
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in MEDIA_PARTS:
                raise ValueError(f"part {index} is of type {kind!r}, but this model reads text only: send text parts")
            else:
                raise ValueError(f'part {index} is not a text part: send {{"type": "text", "text": "..."}}')
        return "".join(texts)

    def text(self) -> str:
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI options we do not implement are accepted and ignored
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    stream: bool = False
    stream_options: Optional[dict] = None
    tools: Optional[list[dict]] = None
    n: int = Field(1, ge=1, le=1)

    @field_validator("stop")
    @classmethod
    def _few_short_stops(cls, value):
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"send at most {MAX_STOPS} stop strings of at most {MAX_STOP_CHARS} characters each")
        return value


def _clean(text: Optional[str]) -> Optional[str]:
    # A lone surrogate from the request cannot be encoded as UTF-8: it would turn the error itself into a 500.
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
           kind: Optional[str] = None, headers: Optional[dict] = None) -> JSONResponse:  # fmt: skip
    if kind is None:
        kinds = {401: "authentication_error", 404: "not_found_error", 503: "server_error"}
        kind = kinds.get(status, "invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": _clean(message), "type": kind, "param": _clean(param), "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _param(loc) -> Optional[str]:
    """pydantic's error location as a path, e.g. ('messages', 0, 'content') -> 'messages[0].content'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or part in ("str", "int", "float", "bool", "dict", "list"):
            continue  # which member of a Union failed: noise to a client
        else:
            path += f".{part}" if path else part
    return path or None


def _lone_surrogate(data) -> Optional[str]:
    """Where the first lone UTF-16 surrogate is (json reads "\\ud800" happily; the tokenizer and UTF-8 cannot).
    Walked with a stack: a deeply nested body must not exhaust the recursion limit."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                inner = f"{path}.{key}" if path else key
                if _SURROGATE.search(key):
                    return inner
                stack.append((inner, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_request(raw: bytes, images: bool = False, videos: bool = False) -> ChatRequest:
    """The request body -> ChatRequest, or InvalidRequest saying what to fix. ``images``: the engine reads
    image_url parts (a vision-language run); ``videos``: also video_url parts; otherwise they are refused."""
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidRequest("the body is nested too deeply: send a flatter JSON object") from None
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not UTF-8: send JSON encoded as UTF-8") from None
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON ({exc}): send a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body is a JSON {_json_type(data)}: send a JSON object with 'model' and 'messages'")
    where = _lone_surrogate(data)
    if where is not None:
        raise InvalidRequest(
            f"{where} holds a lone UTF-16 surrogate escape (like \\ud800), which is not text: send valid Unicode",
            param=where,
        )
    try:
        return ChatRequest.model_validate(data, context={"images": images, "videos": videos})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"{param or 'request'}: {message}", param=param) from None


def to_conversation(messages: list[Message]) -> tuple[Optional[str], list[dict]]:
    """OpenAI messages -> (system prompt, ffc messages: user/assistant/function/observation)."""
    system, out = None, []
    for index, message in enumerate(messages):
        if message.role in ("system", "developer"):
            if out:
                raise ConversationError(f"messages[{index}]: a system message must come first")
            system = message.text()
        elif message.role == "assistant" and message.tool_calls:
            calls = []
            for call in message.tool_calls:
                try:
                    json.loads(call.function.arguments or "{}")
                except ValueError as exc:
                    raise ConversationError(
                        f"messages[{index}]: tool call arguments are not JSON ({exc}): send them as a JSON string"
                    ) from None
                # JSON text kept as sent: the template writes it as the model's official template does.
                calls.append({"name": call.function.name, "arguments": call.function.arguments or "{}"})
                if call.id:
                    calls[-1]["id"] = call.id  # families that write call ids (Mistral, Kimi-K2) use the client's
            # One turn with all its calls and the text beside them (the form of ffc's data converter).
            value = calls[0] if len(calls) == 1 else calls
            if message.text():
                value = {"content": message.text(), "tool_calls": calls}
            out.append({"role": "function", "content": json.dumps(value, ensure_ascii=False)})
        elif message.role == "tool":
            if out and out[-1]["role"] == "observation":  # the results of one turn's calls: one turn
                results = tool_results_of(out[-1]["content"]) + [message.text()]
                out[-1]["content"] = json.dumps({"tool_results": results}, ensure_ascii=False)
            else:
                out.append({"role": "observation", "content": message.text()})
        else:
            out.append({"role": message.role, "content": message.text()})
            if message.image_urls:
                out[-1]["image_urls"] = message.image_urls  # the vision engine opens them (data: URLs, no paths)
            if message.video_urls:
                out[-1]["video_urls"] = message.video_urls
    return system, out


def prepare(engine, body: ChatRequest, defaults: GenerationOptions, max_new_tokens_limit: int) -> dict:
    """The engine's arguments for a request: the prompt rendered and counted, ``max_tokens`` capped.
    Runs in a worker thread: tokenising a long prompt must not hold up the event loop."""
    template = engine.template
    if body.tools and not getattr(template, "renders_tools", False):
        raise InvalidRequest(
            f"the chat template {getattr(template, 'name', '')!r} has no format for tools: leave out 'tools', "
            "or serve a model trained with a template that has one (data.template)",
            param="tools",
        )
    try:
        system, conversation = to_conversation(body.messages)
        ids = engine.prompt_ids(conversation, system, body.tools)
    except (ValueError, RecursionError) as exc:  # ConversationError, bad tool-call arguments, absurd nesting
        raise InvalidRequest(f"messages: {exc}", param="messages") from None
    requested = body.max_completion_tokens or body.max_tokens or defaults.max_new_tokens
    try:
        max_new = room_for_answer(
            len(ids), min(requested, max_new_tokens_limit), getattr(engine, "context_length", None)
        )
    except PromptTooLong as exc:
        raise InvalidRequest(str(exc), param="messages", code="context_length_exceeded") from None
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    options = defaults.update(
        temperature=body.temperature,
        top_p=body.top_p,
        max_new_tokens=max_new,
        stop=tuple(dict.fromkeys(list(defaults.stop) + stops)),
    )
    return dict(messages=conversation, options=options, system=system, tools=body.tools, prompt=ids)


class Job:
    """One request's generation. The worker thread posts ("started" | "piece" | "done" | "error" | "dropped",
    value) events to the request's event loop; the request's handler reads them and cancels when it leaves."""

    def __init__(self, arguments: dict, deadline: float):
        self.arguments, self.deadline = arguments, deadline
        self.cancelled = threading.Event()
        self.events: asyncio.Queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def should_stop(self) -> bool:
        return self.cancelled.is_set() or time.monotonic() > self.deadline

    def cancel(self) -> None:
        self.cancelled.set()

    def post(self, kind: str, value=None) -> None:
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is exiting and nobody waits
            pass


class Scheduler:
    """Generations one at a time, first come first served, in a worker thread; at most ``max_queued`` wait.
    One thread because the engine runs one generation at a time anyway; a bounded queue because a client
    waiting behind an unbounded one waits for ever."""

    def __init__(self, engine, max_queued: int, timeout: float):
        self.engine, self.timeout = engine, timeout
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=max_queued)
        self.closing = False
        self.seconds_per_job = 1.0  # a running average, for Retry-After
        self.worker = threading.Thread(target=self._work, name="ffc-generation", daemon=True)
        self.worker.start()

    def submit(self, job: Job) -> bool:
        if self.closing:
            return False
        try:
            self.queue.put_nowait(job)
            return True
        except queue.Full:
            return False

    def retry_after(self) -> str:
        """Seconds until the queue has likely drained (for the Retry-After header)."""
        estimate = math.ceil(self.seconds_per_job * (self.queue.qsize() + 1))
        return str(max(1, min(estimate, math.ceil(self.timeout))))

    def close(self) -> None:
        """Take no more requests and stop every generation after its next token (SIGTERM): what each
        client was sent so far stays valid, and the process can exit in seconds."""
        self.closing = True

    def _work(self) -> None:
        while True:
            try:
                job = self.queue.get(timeout=0.2)
            except queue.Empty:
                if self.closing:
                    return
                continue
            if self.closing or job.should_stop():  # its client left, or its time ran out, while it waited
                job.post("dropped", "closing" if self.closing else "expired")
                continue
            job.post("started")
            began = time.monotonic()
            try:
                for piece in self.engine.stream(**job.arguments, should_stop=lambda: self.closing or job.should_stop()):
                    job.post("piece", piece)
                job.post("done", self.engine.last)
            except Exception as exc:  # a failed generation must not end the worker
                log.exception("generation failed")
                job.post("error", exc)
            self.seconds_per_job = 0.8 * self.seconds_per_job + 0.2 * (time.monotonic() - began)


async def _next_event(job: Job, request: Request, until: Optional[float] = None) -> tuple[str, Any]:
    """The job's next event; ("gone", None) once the client has disconnected, ("expired", None) after ``until``."""
    while True:
        wait = POLL_SECONDS if until is None else min(POLL_SECONDS, until - time.monotonic())
        if wait <= 0:
            return "expired", None
        try:
            return await asyncio.wait_for(job.events.get(), wait)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                return "gone", None


class _Guard:
    """API key and body size, checked before anything is read (a plain ASGI middleware: Starlette's
    BaseHTTPMiddleware would stand between a streamed response and its client's disconnect)."""

    def __init__(self, app, api_key: Optional[str], max_request_bytes: int):
        self.app, self.api_key, self.max_request_bytes = app, api_key, max_request_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            # The chat page is static (it holds no data and calls the API, key included, like any client).
            page = scope["method"] in ("GET", "HEAD") and scope["path"] in ("/", "/chat")
            problem = None if page else self.check(Headers(scope=scope), scope["method"])
            if problem is not None:
                return await problem(scope, receive, send)
        await self.app(scope, receive, send)

    def check(self, headers: Headers, method: str) -> Optional[Response]:
        if self.api_key is not None:
            sent = headers.get("authorization", "")
            if not secrets.compare_digest(sent.encode(), f"Bearer {self.api_key}".encode()):
                return _error(401, "invalid or missing API key: send 'Authorization: Bearer <key>'")
        length = headers.get("content-length")
        if method == "POST" and not (length and length.isdigit()):
            return _error(411, "send the body with a Content-Length header")  # the size limit needs it
        if length and length.isdigit() and int(length) > self.max_request_bytes:
            return _error(413, f"request body over {self.max_request_bytes} bytes: send a shorter conversation")
        return None


def create_app(engine, model_name: str, api_key: Optional[str] = None, max_request_bytes: int = 1_000_000,
               max_new_tokens_limit: int = 4096, request_timeout: float = 300.0, max_queued_requests: int = 32) -> FastAPI:  # fmt: skip
    """The API over ``engine``. ``request_timeout`` counts from arrival, time in the queue included."""
    defaults: GenerationOptions = engine.defaults  # per-request overrides go on top of the run's defaults
    scheduler = Scheduler(engine, max_queued_requests, request_timeout)
    # Rendering and tokenising is CPU work: more threads than cores only multiply the memory of long prompts.
    preparing = anyio.CapacityLimiter(min(4, os.cpu_count() or 1))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        scheduler.close()
        await run_in_threadpool(scheduler.worker.join, 10)

    app = FastAPI(title="ffc chat API", version="1", lifespan=lifespan)
    app.state.scheduler = scheduler
    app.add_middleware(_Guard, api_key=api_key, max_request_bytes=max_request_bytes)

    def busy(message: str, code: str) -> JSONResponse:
        return _error(503, message, code=code, headers={"Retry-After": scheduler.retry_after()})

    @app.exception_handler(InvalidRequest)
    async def invalid_request(request: Request, exc: InvalidRequest):
        return _error(exc.status, exc.message, param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = _param(first.get("loc", ())[1:])
        return _error(400, f"{param or 'request'}: {first.get('msg')}", param=param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        hints = {
            404: f"no {request.url.path} here: the API is GET /v1/models and POST /v1/chat/completions "
            "(and GET /chat, a web chat page)",
            405: f"{request.method} is not allowed on {request.url.path}: see GET /v1/models, POST /v1/chat/completions",
        }
        return _error(exc.status_code, hints.get(exc.status_code, str(exc.detail)), headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        return _error(500, f"internal error ({type(exc).__name__}): see the server's log, and report it if it repeats")

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse("/chat")

    @app.get("/chat", include_in_schema=False)
    async def chat_page():
        return HTMLResponse(webchat.PAGE, headers=webchat.HEADERS)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "ffc"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        arrived = time.monotonic()
        body = parse_request(
            await request.body(),
            images=getattr(engine, "reads_images", False),
            videos=getattr(engine, "reads_videos", False),
        )
        arguments = await anyio.to_thread.run_sync(
            prepare, engine, body, defaults, max_new_tokens_limit, limiter=preparing
        )
        job = Job(arguments, deadline=arrived + request_timeout)
        if not scheduler.submit(job):
            if scheduler.closing:
                return busy("the server is shutting down: retry shortly (or on another replica)", "shutting_down")
            return busy(
                f"all {scheduler.queue.maxsize} places in the queue are taken: retry after the Retry-After seconds",
                "queue_full",
            )
        streaming = False
        try:
            kind, value = await _next_event(job, request, until=job.deadline)
            if kind == "dropped" and value == "closing":
                return busy("the server is shutting down: retry shortly (or on another replica)", "shutting_down")
            if kind in ("expired", "dropped"):
                return busy(
                    f"waited {request_timeout:g} s for the model without starting: retry later, or raise serve.request_timeout",
                    "queue_timeout",
                )
            if kind == "gone":
                return Response(status_code=499)  # nginx's "client closed request": nobody reads it
            request_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
            if body.stream:
                usage = bool((body.stream_options or {}).get("include_usage"))
                events = _events(job, request, bool(body.tools), request_id, created, model_name, usage)
                streaming = True  # from here the response cancels the job when it ends
                return _JobStream(job, events, media_type="text/event-stream")
            while True:
                kind, value = await _next_event(job, request)
                if kind == "done":
                    break
                if kind == "error":
                    return _error(500, f"generation failed ({type(value).__name__}: {value}): see the server's log")
                if kind == "gone":
                    return Response(status_code=499)
            message: dict[str, Any] = {"role": "assistant", "content": value.text or None}
            if value.tool_calls:
                message["tool_calls"] = _tool_calls(value.tool_calls)
            return {
                "id": request_id,
                "object": "chat.completion",
                "created": created,
                "model": model_name,
                "choices": [{"index": 0, "message": message, "finish_reason": value.finish_reason}],
                "usage": _usage(value),
            }
        finally:
            if not streaming:  # answered, client gone or handler cancelled: the generation has no reader left
                job.cancel()

    return app


def serve(app: FastAPI, host: str, port: int, shutdown_seconds: float = 5.0) -> None:
    """``uvicorn.run``, except that SIGTERM (or Ctrl-C) first tells running generations to stop: uvicorn waits
    for open responses before it exits, and a long answer would otherwise keep the process alive."""

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            app.state.scheduler.close()
            await super().shutdown(sockets)

    Server(uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=shutdown_seconds)).run()


def _tool_calls(calls: list[dict]) -> list[dict]:
    return [
        {
            "index": i,
            "id": c.get("id") or f"call_{uuid.uuid4().hex[:24]}",  # the model's own id where its format has one
            "type": "function",
            "function": {"name": c["name"], "arguments": c["arguments"]},
        }
        for i, c in enumerate(calls)
    ]


def _usage(done) -> dict:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


class _JobStream(StreamingResponse):
    """A streamed answer whose generation stops however the response ends: finished, client gone (Starlette
    cancels the stream, possibly before its first chunk), or server shutting down."""

    def __init__(self, job: Job, content, **kwargs):
        super().__init__(content, **kwargs)
        self.job = job

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()


async def _events(job: Job, request: Request, tools: bool, request_id, created, model_name, include_usage):
    """Server-sent events of a streamed completion."""

    def chunk(delta: dict, finish: Optional[str] = None, usage: Optional[dict] = None) -> str:
        payload = {
            "id": request_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
            "choices": [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }  # fmt: skip
        if usage is not None:
            payload["usage"] = usage
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    while True:
        kind, value = await _next_event(job, request)
        if kind == "piece" and not tools:  # tool calls are recognised in the whole response: sent at the end
            yield chunk({"content": value})
        elif kind == "done":
            break
        elif kind == "error":
            error = {
                "message": f"generation failed ({type(value).__name__}): see the server's log",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        elif kind == "gone":
            return
    if tools:
        if value.text:
            yield chunk({"content": value.text})
        if value.tool_calls:
            yield chunk({"tool_calls": _tool_calls(value.tool_calls)})
    yield chunk({}, finish=value.finish_reason)
    if include_usage:
        yield chunk({}, usage=_usage(value))
    yield "data: [DONE]\n\n"
