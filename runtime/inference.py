"""Generation for chat.py, serve.py and eval.py: load a run's model and talk to it with its chat template.

Two engines with one interface (``generate`` and ``stream``): transformers (default,
CPU or GPU) and vLLM (GPU only). Prompts are rendered by the run's ``ChatTemplate``
exactly as in training; stop strings come from the template.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field, replace
from typing import Iterator, Optional

from .chat.templates import ChatTemplate
from .data.tokenize import prompt_ids


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
    finish_reason: str  # "stop" or "length"
    tool_calls: list[dict] = field(default_factory=list)


def load_model(model_path: str, adapter_path: Optional[str] = None, dtype: str = "auto"):
    """(model, tokenizer) ready for generation. The tokenizer comes from the adapter's folder when there is one:
    a run saves its tokenizer (with the chat template) next to the adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(adapter_path or model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype).to(device)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload()  # merged: plain forward speed
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


def parse_tool_calls(template: ChatTemplate, text: str) -> tuple[str, list[dict]]:
    """Tool calls the model wrote in its template's call format (e.g. Qwen's <tool_call>{...}</tool_call>)."""
    if not template.tools or template.function == "{content}":
        return text, []
    before, _, after = template.function.partition("{content}")
    pattern = re.escape(before) + r"(.*?)" + re.escape(after)
    calls = []
    for match in re.finditer(pattern, text, flags=re.S):
        try:
            call = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if isinstance(call, dict) and "name" in call:
            arguments = call.get("arguments", {})
            calls.append({"name": call["name"], "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)})
    if not calls:
        return text, []
    return re.sub(pattern, "", text, flags=re.S).strip(), calls


class HFEngine:
    """transformers ``generate`` with the run's chat template. Requests are served one at a time (a lock):
    one model, one forward pass at a time, many waiting clients."""

    def __init__(self, model, tokenizer, template: ChatTemplate, defaults: GenerationOptions, default_system: Optional[str] = None):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.default_system = default_system
        eos = tokenizer.eos_token if isinstance(tokenizer.eos_token, str) else ""
        self.defaults = defaults if defaults.stop else defaults.update(stop=tuple(template.stop_strings(eos)))
        self.lock = threading.Lock()

    def prompt_ids(self, messages: list[dict], system: Optional[str] = None, tools=None) -> list[int]:
        return prompt_ids(self.tokenizer, self.template, messages, system=system or self.default_system, tools=tools)

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

    def stream(self, messages, options: Optional[GenerationOptions] = None, system=None, tools=None) -> Iterator[str]:
        """Yields pieces of the response; ``self.last`` holds the finished ``Completion`` afterwards."""
        import torch
        from transformers import TextIteratorStreamer

        options = options or self.defaults
        ids = self.prompt_ids(messages, system, tools)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = torch.tensor([ids], device=self.model.device)
        result: dict = {}
        kwargs = self._generate_kwargs(options)

        def run():
            with torch.no_grad():
                result["output"] = self.model.generate(
                    input_ids=inputs, attention_mask=torch.ones_like(inputs), streamer=streamer, **kwargs
                )

        scanner, pieces = _StopScanner(options.stop), []
        with self.lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            for text in streamer:
                piece = scanner.feed(text)
                if piece:
                    pieces.append(piece)
                    yield piece
            worker.join()
        tail = scanner.flush()
        if tail:
            pieces.append(tail)
            yield tail
        generated = result["output"][0, len(ids) :].tolist()
        hit_stop = scanner.stopped or (generated and generated[-1] in kwargs["eos_token_id"])
        finish = "stop" if hit_stop or len(generated) < options.max_new_tokens else "length"
        text, calls = parse_tool_calls(self.template, "".join(pieces))
        self.last = Completion(text, len(ids), len(generated), "tool_calls" if calls else finish, calls)

    def generate(self, messages, options: Optional[GenerationOptions] = None, system=None, tools=None) -> Completion:
        for _ in self.stream(messages, options, system, tools):
            pass
        return self.last


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

    def generate(self, messages, options: Optional[GenerationOptions] = None, system=None, tools=None) -> Completion:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        options = options or self.defaults
        ids = self.hf.prompt_ids(messages, system, tools)
        params = SamplingParams(
            temperature=options.temperature, top_p=options.top_p, top_k=options.top_k or -1,
            max_tokens=options.max_new_tokens, repetition_penalty=options.repetition_penalty, stop=list(options.stop),
        )  # fmt: skip
        lora = None
        if self.adapter_path:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("run", 1, self.adapter_path)
        out = self.llm.generate(TokensPrompt(prompt_token_ids=ids), params, lora_request=lora)[0].outputs[0]
        text, calls = parse_tool_calls(self.template, out.text)
        finish = "tool_calls" if calls else ("length" if out.finish_reason == "length" else "stop")
        return Completion(text, len(ids), len(out.token_ids), finish, calls)

    def stream(self, messages, options=None, system=None, tools=None) -> Iterator[str]:
        self.last = self.generate(messages, options, system, tools)
        yield self.last.text
