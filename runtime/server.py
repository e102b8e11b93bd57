"""An OpenAI-compatible chat API over an engine of ``ffc.runtime.inference``.

``GET /v1/models`` and ``POST /v1/chat/completions`` (streamed as server-sent events
ending in ``[DONE]``, or whole), with usage counts, stop sequences and tool calls for
templates that have a tool format. Errors are OpenAI-shaped JSON with 4xx codes, and
a bad request never stops the server.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any, Literal, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from .chat.templates import ConversationError
from .inference import GenerationOptions


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


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
    content: Union[str, list[TextPart], None] = None
    tool_calls: Optional[list[ToolCall]] = None
    tool_call_id: Optional[str] = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
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


def _error(status: int, message: str, kind: str = "invalid_request_error", param: Optional[str] = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status)


def to_conversation(messages: list[Message]) -> tuple[Optional[str], list[dict]]:
    """OpenAI messages -> (system prompt, ffc messages: user/assistant/function/observation)."""
    system, out = None, []
    for index, message in enumerate(messages):
        if message.role in ("system", "developer"):
            if out:
                raise ConversationError(f"messages[{index}]: a system message must come first")
            system = message.text()
        elif message.role == "assistant" and message.tool_calls:
            for call in message.tool_calls:
                arguments = json.loads(call.function.arguments or "{}")
                out.append({"role": "function", "content": json.dumps({"name": call.function.name, "arguments": arguments}, ensure_ascii=False)})
        elif message.role == "tool":
            if out and out[-1]["role"] == "observation":
                out[-1]["content"] += "\n" + message.text()
            else:
                out.append({"role": "observation", "content": message.text()})
        else:
            out.append({"role": message.role, "content": message.text()})
    return system, out


def create_app(engine, model_name: str, api_key: Optional[str] = None, max_request_bytes: int = 1_000_000) -> FastAPI:
    app = FastAPI(title="ffc chat API", version="1")
    # Per-request overrides go on top of the run's defaults.
    defaults: GenerationOptions = engine.defaults

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if api_key is not None:
            sent = request.headers.get("authorization", "")
            if not secrets.compare_digest(sent.encode(), f"Bearer {api_key}".encode()):
                return _error(401, "invalid or missing API key: send 'Authorization: Bearer <key>'", "authentication_error")
        length = request.headers.get("content-length")
        if request.method == "POST" and not (length and length.isdigit()):
            return _error(411, "send the body with a Content-Length header")  # the size limit needs it
        if length and length.isdigit() and int(length) > max_request_bytes:
            return _error(413, f"request body over {max_request_bytes} bytes")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        return _error(400, f"{param or 'request'}: {first.get('msg')}", param=param)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "ffc"}]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        try:
            system, conversation = to_conversation(body.messages)
            engine.template.render(conversation, system=system, add_generation_prompt=True)  # reject bad orders early
        except (ConversationError, json.JSONDecodeError) as exc:
            return _error(400, f"messages: {exc}", param="messages")
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        options = defaults.update(
            temperature=body.temperature,
            top_p=body.top_p,
            max_new_tokens=body.max_completion_tokens or body.max_tokens,
            stop=tuple(dict.fromkeys(list(defaults.stop) + stops)),
        )
        request_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                _events(engine, conversation, options, system, body.tools, request_id, created, model_name, usage),
                media_type="text/event-stream",
            )
        done = await run_in_threadpool(engine.generate, conversation, options, system, body.tools)
        message: dict[str, Any] = {"role": "assistant", "content": done.text or None}
        if done.tool_calls:
            message["tool_calls"] = _tool_calls(done.tool_calls)
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": created,
            "model": model_name,
            "choices": [{"index": 0, "message": message, "finish_reason": done.finish_reason}],
            "usage": _usage(done),
        }

    return app


def _tool_calls(calls: list[dict]) -> list[dict]:
    return [
        {"index": i, "id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for i, c in enumerate(calls)
    ]


def _usage(done) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens, "total_tokens": done.prompt_tokens + done.completion_tokens}


def _events(engine, conversation, options, system, tools, request_id, created, model_name, include_usage):
    """Server-sent events of a streamed completion (a plain generator: Starlette runs it in a thread)."""

    def chunk(delta: dict, finish: Optional[str] = None, usage: Optional[dict] = None) -> str:
        payload = {
            "id": request_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
            "choices": [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }  # fmt: skip
        if usage is not None:
            payload["usage"] = usage
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    if tools:  # tool calls are recognised in the whole response, so it is not streamed piecewise
        done = engine.generate(conversation, options, system, tools)
        if done.text:
            yield chunk({"content": done.text})
        if done.tool_calls:
            yield chunk({"tool_calls": _tool_calls(done.tool_calls)})
    else:
        for piece in engine.stream(conversation, options, system):
            yield chunk({"content": piece})
        done = engine.last
    yield chunk({}, finish=done.finish_reason)
    if include_usage:
        yield chunk({}, usage=_usage(done))
    yield "data: [DONE]\n\n"
