"""Generation for chat.py, serve.py and eval.py: load a run's model and talk to it with its chat template.

Two engines with one interface (``generate`` and ``stream``): transformers (default,
CPU or GPU) and vLLM (GPU only). Prompts are rendered by the run's ``ChatTemplate``
exactly as in training; stop strings come from the template.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional

from .chat.templates import ChatTemplate
from .data.tokenize import prompt_ids
from .model import Adapters, adapter_list, apply_adapters, tokenizer_source


@dataclass(frozen=True)
class GenerationOptions:
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    max_new_tokens: int = 512
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()

    def update(self, **changes) -> "GenerationOptions":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length" (also when ``should_stop`` ended it early)
    tool_calls: list[dict] = field(default_factory=list)


class PromptTooLong(ValueError):
    """A prompt that leaves no room in the model's context for even one new token."""

    def __init__(self, prompt_tokens: int, context_length: int):
        self.prompt_tokens, self.context_length = prompt_tokens, context_length
        super().__init__(
            f"the prompt is {prompt_tokens} tokens but the model's context holds {context_length} "
            f"(prompt and answer together): shorten the messages, e.g. drop early turns"
        )


def room_for_answer(prompt_tokens: int, max_new_tokens: int, context_length: Optional[int]) -> int:
    """``max_new_tokens`` capped so that prompt and answer fit in the context: a model run past its
    positions degrades or fails, and an uncapped request would hold the engine for nothing."""
    if context_length is None:
        return max_new_tokens
    if prompt_tokens >= context_length:
        raise PromptTooLong(prompt_tokens, context_length)
    return min(max_new_tokens, context_length - prompt_tokens)


def _context_length(model, tokenizer) -> Optional[int]:
    config = getattr(model, "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        positions = getattr(cfg, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            return positions
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else None  # unset is a huge sentinel


def load_model(model_path: str, adapters: Adapters = None, dtype: str = "auto"):
    """(model, tokenizer) ready for generation: the model with its adapters (one, a list, or none) merged in.
    The tokenizer comes from the last adapter's folder when it has one (see ``tokenizer_source``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(model_path, adapters))
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype).to(device)
    if adapter_list(adapters):
        model = apply_adapters(model, adapters)  # merged: plain forward speed
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


class _StopScanner:
    """Streams text while holding back what could be the start of a stop string."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.pending += text
        hits = [(self.pending.find(s), s) for s in self.stops if s in self.pending]
        if hits:
            self.stopped = True
            cut = min(index for index, _ in hits)
            out, self.pending = self.pending[:cut], ""
            return out
        keep = max((len(s) - 1 for s in self.stops), default=0)
        for size in range(min(keep, len(self.pending)), 0, -1):  # a stop string may be arriving
            if any(s.startswith(self.pending[-size:]) for s in self.stops):
                out, self.pending = self.pending[:-size], self.pending[-size:]
                return out
        out, self.pending = self.pending, ""
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


def parse_tool_calls(template: ChatTemplate, text: str, tools=None) -> tuple[str, list[dict]]:
    """(text, calls) of a generated answer, each call in OpenAI's form ``{"name", "arguments": JSON text(, "id")}``.
    The template reads its own call format (``ChatTemplate.parse_calls``, next to each family's rendering)."""
    if not hasattr(template, "parse_calls"):  # a tokenizer's own template (data.template: tokenizer)
        return text, []
    text, calls = template.parse_calls(text, tools)
    return text, [
        {
            **call,
            "arguments": a if isinstance(a := call["arguments"], str) else json.dumps(a, ensure_ascii=False),
        }
        for call in calls
    ]


def _until_stop(text: str, stops) -> str:
    """``text`` up to its first stop string, as generation ends it."""
    return text[: min((text.find(s) for s in stops if s and s in text), default=len(text))]


def _answer_and_calls(template, tokenizer, generated: list[int], streamed: str, stops, tools) -> tuple[str, list]:
    """The answer's text and tool calls. Calls are read from the tokens decoded with their special tokens, since
    several families mark calls with them ([TOOL_CALLS], <|tool_call_begin|>, <|channel|>, DeepSeek's tokens)
    and the streamed text leaves them out; an answer without calls keeps the streamed text."""
    eos = tokenizer.eos_token if isinstance(getattr(tokenizer, "eos_token", None), str) else None
    ends = [*stops, *template.stop_strings(eos)]  # the template's ends too, where the request set its own stops
    raw = _until_stop(tokenizer.decode(generated, skip_special_tokens=False), ends)
    text, calls = parse_tool_calls(template, raw, tools)
    return (text, calls) if calls else (streamed, [])


class HFEngine:
    """transformers ``generate`` with the run's chat template. Requests are served one at a time (a lock):
    one model, one forward pass at a time, many waiting clients."""

    def __init__(
        self,
        model,
        tokenizer,
        template: ChatTemplate,
        defaults: GenerationOptions,
        default_system: Optional[str] = None,
    ):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.default_system = default_system
        eos = tokenizer.eos_token if isinstance(tokenizer.eos_token, str) else ""
        self.defaults = defaults if defaults.stop else defaults.update(stop=tuple(template.stop_strings(eos)))
        self.lock = threading.Lock()

    def prompt_ids(self, messages: list[dict], system: Optional[str] = None, tools=None) -> list[int]:
        return prompt_ids(self.tokenizer, self.template, messages, system=system or self.default_system, tools=tools)

    def model_inputs(self, messages, input_ids) -> dict:
        """Inputs besides the token ids (a vision-language engine adds the pixels of the messages' images)."""
        return {}

    def _generate_kwargs(self, options: GenerationOptions) -> dict:
        stop_ids = [self.tokenizer.convert_tokens_to_ids(s) for s in options.stop if s in self.tokenizer.get_vocab()]
        kwargs = dict(
            max_new_tokens=options.max_new_tokens,
            repetition_penalty=options.repetition_penalty,
            eos_token_id=list(dict.fromkeys(stop_ids + [self.tokenizer.eos_token_id])),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if options.temperature > 0:
            kwargs.update(do_sample=True, temperature=options.temperature, top_p=options.top_p, top_k=options.top_k)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    @property
    def context_length(self) -> Optional[int]:
        """Most tokens (prompt and answer) the model takes; None when neither config nor tokenizer says."""
        return _context_length(self.model, self.tokenizer)

    def stream(
        self,
        messages,
        options: Optional[GenerationOptions] = None,
        system=None,
        tools=None,
        *,
        prompt: Optional[list[int]] = None,
        should_stop: Optional[Callable[[], bool]] = None,
    ) -> Iterator[str]:
        """Yields pieces of the response; ``self.last`` holds the finished ``Completion`` afterwards.

        ``prompt``: the ids ``prompt_ids`` gave for these messages (saves rendering twice).
        ``should_stop``: asked after every token; True ends the generation (finish_reason "length"),
        e.g. when the client left or the request ran out of time. Closing the iterator early stops it too.
        """
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        options = options or self.defaults
        ids = prompt if prompt is not None else self.prompt_ids(messages, system, tools)
        kwargs = self._generate_kwargs(options)
        kwargs["max_new_tokens"] = room_for_answer(len(ids), options.max_new_tokens, self.context_length)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = torch.tensor([ids], device=self.model.device)
        extra = self.model_inputs(messages, inputs)
        scanner, pieces = _StopScanner(options.stop), []
        abandoned = threading.Event()
        # A stop string already seen, a reader gone, or the caller's reason: each token generated after is waste.
        interrupt = _Interrupt(lambda: scanner.stopped or abandoned.is_set() or bool(should_stop and should_stop()))
        result: dict = {}

        def run():
            try:
                with torch.no_grad():
                    result["output"] = self.model.generate(
                        input_ids=inputs,
                        attention_mask=torch.ones_like(inputs),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([interrupt]),
                        **extra,
                        **kwargs,
                    )
            except BaseException as exc:  # re-raised in the reader's thread below
                result["error"] = exc
                streamer.end()  # else the reader waits for text forever

        with self.lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            try:
                for text in streamer:
                    piece = scanner.feed(text)
                    if piece:
                        pieces.append(piece)
                        yield piece
            finally:
                # Reached early when the reader stops iterating (GeneratorExit): the generation must end
                # before the lock is released, or abandoned generations pile up and starve the next ones.
                abandoned.set()
                worker.join()
        if "error" in result:
            raise result["error"]
        tail = scanner.flush()
        if tail:
            pieces.append(tail)
            yield tail
        generated = result["output"][0, len(ids) :].tolist()
        hit_stop = scanner.stopped or bool(generated and generated[-1] in kwargs["eos_token_id"])
        text, calls = _answer_and_calls(self.template, self.tokenizer, generated, "".join(pieces), options.stop, tools)
        finish = "tool_calls" if calls else ("stop" if hit_stop else "length")
        self.last = Completion(text, len(ids), len(generated), finish, calls)

    def generate(
        self, messages, options: Optional[GenerationOptions] = None, system=None, tools=None, **stream_args
    ) -> Completion:
        for _ in self.stream(messages, options, system, tools, **stream_args):
            pass
        return self.last


class _Interrupt:
    """A transformers stopping criterion that ends generation when ``should_stop()`` says so (checked per token)."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.should_stop(), dtype=torch.bool, device=input_ids.device)


class VLLMEngine:
    """vLLM on a GPU: the base model with the run's LoRA adapter (if any) served by vLLM's LoRA support.
    vLLM's offline API answers whole responses, so ``stream`` yields one piece."""

    def __init__(self, model_path: str, adapter_path: Optional[str], tokenizer, template: ChatTemplate,
                 defaults: GenerationOptions, default_system=None, gpu_memory_utilization=0.9, max_model_len=None, lora_rank=64):  # fmt: skip
        from vllm import LLM

        self.llm = LLM(
            model=model_path, tokenizer=adapter_path or model_path, enable_lora=adapter_path is not None,
            max_lora_rank=lora_rank, gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
        )  # fmt: skip
        self.adapter_path = adapter_path
        self.hf = HFEngine(None, tokenizer, template, defaults, default_system)  # prompt rendering and stops
        self.template, self.defaults, self.tokenizer = template, self.hf.defaults, tokenizer

    @property
    def context_length(self) -> Optional[int]:
        try:
            return self.llm.llm_engine.model_config.max_model_len
        except AttributeError:
            return self.hf.context_length

    def prompt_ids(self, messages: list[dict], system: Optional[str] = None, tools=None) -> list[int]:
        return self.hf.prompt_ids(messages, system, tools)

    def generate(self, messages, options: Optional[GenerationOptions] = None, system=None, tools=None, *,
                 prompt: Optional[list[int]] = None, should_stop: Optional[Callable[[], bool]] = None) -> Completion:  # fmt: skip
        """``prompt`` and ``should_stop`` as in ``HFEngine.stream``; vLLM's offline call cannot be interrupted,
        so ``should_stop`` is asked only before it starts (the token cap bounds the rest)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        options = options or self.defaults
        ids = prompt if prompt is not None else self.hf.prompt_ids(messages, system, tools)
        if should_stop is not None and should_stop():
            return Completion("", len(ids), 0, "length")
        params = SamplingParams(
            temperature=options.temperature, top_p=options.top_p, top_k=options.top_k or -1,
            max_tokens=room_for_answer(len(ids), options.max_new_tokens, self.context_length),
            repetition_penalty=options.repetition_penalty, stop=list(options.stop),
        )  # fmt: skip
        lora = None
        if self.adapter_path:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("run", 1, self.adapter_path)
        out = self.llm.generate(TokensPrompt(prompt_token_ids=ids), params, lora_request=lora)[0].outputs[0]
        text, calls = _answer_and_calls(
            self.template, self.tokenizer, list(out.token_ids), out.text, options.stop, tools
        )
        finish = "tool_calls" if calls else ("length" if out.finish_reason == "length" else "stop")
        return Completion(text, len(ids), len(out.token_ids), finish, calls)

    def stream(self, messages, options=None, system=None, tools=None, **generate_args) -> Iterator[str]:
        self.last = self.generate(messages, options, system, tools, **generate_args)
        yield self.last.text
