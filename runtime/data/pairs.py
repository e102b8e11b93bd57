"""Tokenisation for preference, KTO and online stages: a prompt and its completion(s).

As for SFT, each prompt+response is rendered by the chat template to one string
and tokenised as a whole; the prompt is the tokens before the response's first
character. The outputs are the processed columns TRL's trainers take
(``prompt_ids``/``chosen_ids``/``rejected_ids``, ``prompt_ids``/``completion_ids``/``label``),
so their own text-based tokenisation (which may add BOS/EOS the template does not
render) is never used.

Rows with images or videos (a run built for a vision-language model) pass an ``MediaTokens``
(``ffc.runtime.data.multimodal``): each prompt's ``<image>`` and ``<video>`` placeholders are written as the
model's processor writes them, the rows keep their ``images`` and ``videos`` (both responses of a pair share the
prompt's), and ``cutoff_len`` shortens only the responses, never the prompt that holds the vision tokens.
"""

from __future__ import annotations

import numpy as np

from ffc.runtime.chat.templates import ChatTemplate, ConversationError
from ffc.runtime.chat.vision import MediaError

from .tokenize import MaskOptions, _special


class CompletionEncoder:
    """Splits rendered prompt+response text into prompt and completion token ids."""

    columns: tuple[str, ...] = ()

    def __init__(self, tokenizer, template: ChatTemplate, opts: MaskOptions, vision=None):
        self.tokenizer = tokenizer
        self.template = template
        self.opts = opts
        self.vision = vision  # an MediaTokens when rows have images or videos, else None
        self.bos, self.eos = _special(tokenizer, "bos_token"), _special(tokenizer, "eos_token")
        self.bos_id = tokenizer.bos_token_id if getattr(template, "add_bos_token", False) else None

    def render_prompt(self, messages, system, tools) -> str:
        return self.template.render(
            messages, bos=self.bos, eos=self.eos, system=system or self.opts.default_system,
            tools=tools or None, add_generation_prompt=True, enable_thinking=self.opts.enable_thinking,
        ).text  # fmt: skip

    def split_text(self, messages, response: str, system, tools, media=((), ())) -> tuple[str, str]:
        """(prompt text, completion text): the completion is the last response segment, end marker included.
        With ``media`` (the row's images and videos), their placeholders are expanded to the vision tokens the
        model sees."""
        rendered = self.template.render(
            list(messages) + [{"role": "assistant", "content": response}], bos=self.bos, eos=self.eos,
            system=system or self.opts.default_system, tools=tools or None, enable_thinking=self.opts.enable_thinking,
        )  # fmt: skip
        if self.vision is not None:
            images, videos = media
            rendered = self.vision.expand(rendered, images, videos)
        last = max(i for i, s in enumerate(rendered.segments) if s.kind == "response")
        prompt = "".join(s.text for s in rendered.segments[:last])
        return prompt, rendered.segments[last].text

    @property
    def media_columns(self) -> tuple[str, ...]:
        """Columns the tokenised rows keep for the collator: the image and video paths of multimodal rows."""
        return ("images", "videos") if self.vision is not None else ()

    def _media_of(self, batch: dict) -> list:
        """Each row's (images, videos); empty ones for text rows."""
        if self.vision is None:
            return [((), ())] * len(batch["messages"])
        return list(zip(batch["images"], batch["videos"]))

    def _media(self, media) -> dict:
        return {"images": list(media[0]), "videos": list(media[1])} if self.vision is not None else {}

    def tokenize_split(self, texts: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """Tokenise each prompt+completion as one string; split at the completion's first character."""
        enc = self.tokenizer([p + c for p, c in texts], add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for (prompt, _), ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
            starts = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
            cut = int(np.searchsorted(starts, len(prompt), side="left"))
            prompt_ids, completion_ids = list(ids[:cut]), list(ids[cut:])
            if self.bos_id is not None and (not prompt_ids or prompt_ids[0] != self.bos_id):
                prompt_ids = [self.bos_id] + prompt_ids
            out.append((prompt_ids, completion_ids))
        return out

    def fit(self, prompt_ids: list[int], completions: list[list[int]]) -> tuple[list[int], list[list[int]], bool]:
        """Shorten to ``cutoff_len`` (prompt + longest completion): completions keep at least half,
        the prompt keeps its start and the template's tail (the assistant header). A prompt with media
        is never cut (that would cut through vision tokens): the completions are, and when the prompt
        alone fills ``cutoff_len`` a ``MediaError`` says so."""
        cutoff = self.opts.cutoff_len
        longest = max(len(c) for c in completions)
        if len(prompt_ids) + longest <= cutoff:
            return prompt_ids, completions, False
        if self.vision is not None:
            room = cutoff - len(prompt_ids)
            if room < 1:
                raise MediaError(
                    f"the prompt with its media ({self.vision.count(prompt_ids)} vision tokens) leaves no room for "
                    "the response within cutoff_len; raise data.cutoff_len or lower image_max_pixels "
                    "(video_max_pixels, video_maxlen)"
                )
            return prompt_ids, [c[:room] for c in completions], True
        budget = min(longest, max(cutoff // 2, cutoff - len(prompt_ids)))
        prompt_budget = cutoff - budget
        tail = min(8, prompt_budget // 2, len(prompt_ids))
        prompt_ids = prompt_ids[: prompt_budget - tail] + prompt_ids[len(prompt_ids) - tail :]
        return prompt_ids, [c[:budget] for c in completions], True


def _columns(*names: str) -> dict:
    return {name: [] for name in names + ("_drop", "_truncated", "_trained")}


class PairEncoder(CompletionEncoder):
    """Preference rows -> ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (rm, dpo, orpo, simpo)."""

    def encode_batch(self, batch: dict) -> dict:
        out = _columns("prompt_ids", "chosen_ids", "rejected_ids", *self.media_columns)
        texts, drops = [], []
        for messages, chosen, rejected, system, tools, media in zip(
            batch["messages"],
            batch["chosen"],
            batch["rejected"],
            batch["system"],
            batch["tools"],
            self._media_of(batch),
        ):
            try:
                texts += [
                    self.split_text(messages, chosen, system, tools, media),
                    self.split_text(messages, rejected, system, tools, media),
                ]
                drops.append("")
            except (ConversationError, MediaError) as exc:
                texts += [("", ""), ("", "")]
                drops.append(f"cannot render: {exc}")
            except OSError as exc:  # an image or video changed since loading checked it
                texts += [("", ""), ("", "")]
                drops.append(f"cannot read an image or video: {exc}")
        pieces = self.tokenize_split(texts)
        for i, (drop, media) in enumerate(zip(drops, self._media_of(batch))):
            (prompt, chosen), (prompt_r, rejected) = pieces[2 * i], pieces[2 * i + 1]
            if not drop and prompt != prompt_r:
                drop = "the chosen and rejected renderings disagree on the prompt"
            if not drop and not (chosen and rejected):
                drop = "empty response"
            media = self._media(media)
            if not drop:
                try:
                    prompt, (chosen, rejected), truncated = self.fit(prompt, [chosen, rejected])
                except MediaError as exc:
                    drop = str(exc)
            if drop:
                _add(out, drop=drop, prompt_ids=[], chosen_ids=[], rejected_ids=[], **media)
                continue
            _add(
                out,
                truncated=truncated,
                trained=len(chosen) + len(rejected),
                prompt_ids=prompt,
                chosen_ids=chosen,
                rejected_ids=rejected,
                **media,
            )
        return out


class KTOEncoder(CompletionEncoder):
    """Labelled conversations -> ``prompt_ids``, ``completion_ids``, ``label`` (kto)."""

    def encode_batch(self, batch: dict) -> dict:
        out = _columns("prompt_ids", "completion_ids", "label", *self.media_columns)
        texts, drops = [], []
        for messages, system, tools, media in zip(
            batch["messages"], batch["system"], batch["tools"], self._media_of(batch)
        ):
            try:
                texts.append(self.split_text(messages[:-1], messages[-1]["content"], system, tools, media))
                drops.append("")
            except (ConversationError, MediaError) as exc:
                texts.append(("", ""))
                drops.append(f"cannot render: {exc}")
            except OSError as exc:  # an image or video changed since loading checked it
                texts.append(("", ""))
                drops.append(f"cannot read an image or video: {exc}")
        rows = zip(self.tokenize_split(texts), drops, batch["label"], self._media_of(batch))
        for (prompt, completion), drop, label, media in rows:
            media = self._media(media)
            drop = drop or ("" if completion else "empty response")
            if not drop:
                try:
                    prompt, (completion,), truncated = self.fit(prompt, [completion])
                except MediaError as exc:
                    drop = str(exc)
            if drop:
                _add(out, drop=drop, prompt_ids=[], completion_ids=[], label=label, **media)
                continue
            _add(
                out,
                truncated=truncated,
                trained=len(completion),
                prompt_ids=prompt,
                completion_ids=completion,
                label=label,
                **media,
            )
        return out


class PromptEncoder(CompletionEncoder):
    """Prompts to generate from -> ``prompt_ids``, the ``prompt`` messages and the reference ``answer`` (ppo, grpo)."""

    def encode_batch(self, batch: dict) -> dict:
        out = _columns("prompt_ids", "prompt", "answer")
        texts, conversations, drops = [], [], []
        for messages, system, tools in zip(batch["messages"], batch["system"], batch["tools"]):
            system = system or self.opts.default_system
            conversations.append(([{"role": "system", "content": system}] if system else []) + list(messages))
            try:
                texts.append(self.render_prompt(messages, system, tools))
                drops.append("")
            except ConversationError as exc:
                texts.append("")
                drops.append(f"cannot render: {exc}")
        enc = self.tokenizer(texts, add_special_tokens=False)
        for ids, conversation, drop, answer in zip(enc["input_ids"], conversations, drops, batch["answer"]):
            ids = list(ids)
            if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
                ids = [self.bos_id] + ids
            if not drop and len(ids) > self.opts.cutoff_len:
                drop = "the prompt alone is longer than cutoff_len"
            _add(out, drop=drop, prompt_ids=[] if drop else ids, prompt=conversation, answer=answer)
        return out


def _add(out: dict, drop: str = "", truncated: bool = False, trained: int = 0, **values) -> None:
    for key, value in values.items():
        out[key].append(value)
    out["_drop"].append(drop)
    out["_truncated"].append(truncated)
    out["_trained"].append(trained)
