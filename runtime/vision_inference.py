"""Generation with images and videos: the HF engine of chat.py and serve.py for vision-language runs.

A user message may carry ``images`` (file paths or PIL images) next to its text, which holds one
``<image>`` per picture where it belongs (chat.py puts them in front of the text, as datasets do), and
``videos`` (file paths; chat.py and eval.py of runs trained on videos) with one ``<video>`` each.
The prompt is rendered with the run's chat template, each ``<image>`` expanded to the processor's
vision tokens, and the pixels go to ``generate`` with the ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .chat.templates import ChatTemplate
from .chat.vision import MediaError
from .data.multimodal import MediaTokens
from .errors import UserError
from .inference import GenerationOptions, HFEngine

MAX_REQUEST_VIDEOS = 8  # video_url parts in one message (each is decoded: see ffc.runtime.data.video's limits)


class ImageError(UserError, ValueError):
    """An image or video that cannot be used (a file that is not there or not decodable, a bad data: URL)."""


def open_image(source, name: Optional[str] = None):
    """A PIL RGB image from a path, a file object or an image; ImageError with the reason otherwise."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source.convert("RGB")
    name = name or f"image {source}"
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"{name}: not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image PIL can read") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot be read ({exc.strerror or exc})") from None


def open_url(url: str, fetch: bool = False):
    """A PIL image from an image_url of the API: a data: URL, or http(s) when ``fetch`` allows it. Never a
    local path: a client must not make the server read its files."""
    import io

    from .data.media import decode_data_url, download

    if url.startswith("data:"):
        try:
            data = decode_data_url(url)
        except ValueError as exc:
            raise ImageError(str(exc)) from None
        return open_image(io.BytesIO(data), "the data: URL image")
    if url.startswith(("http://", "https://")):
        if not fetch:
            raise ImageError(
                "this server does not download images (serve.fetch_image_urls is off): send the image as a data: URL"
            )
        try:
            data = download(url)
        except ValueError as exc:
            raise ImageError(str(exc)) from None
        return open_image(io.BytesIO(data), url)
    raise ImageError("an image_url must be a data: URL (data:image/png;base64,...) or, where enabled, http(s)")


def load_vision_model(model_path: str, adapter_path: Optional[str] = None, dtype: str = "auto"):
    """(model, tokenizer) of a vision-language model for generation, the adapter merged."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(adapter_path or model_path)
    model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch_dtype).to(device)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


class VisionHFEngine(HFEngine):
    def __init__(
        self,
        model,
        tokenizer,
        template: ChatTemplate,
        defaults: GenerationOptions,
        images: MediaTokens,
        default_system: Optional[str] = None,
    ):
        super().__init__(model, tokenizer, template, defaults, default_system=default_system)
        self.images = images  # the family's processor: image text and pixels
        self.reads_videos = images.video_processor is not None  # serve.py keeps video_url parts then
        self._last_media = None  # (what the messages name, their images and videos): see _media

    reads_images = True  # serve.py keeps image_url parts for this engine
    fetch_urls = False  # serve.fetch_image_urls

    def _images(self, messages) -> list:
        """The messages' images in order: ``images`` (paths, from chat.py) and ``image_urls`` (from the API)."""
        out = []
        for message in messages:
            out += [open_image(source) for source in message.get("images") or []]
            out += [open_url(url, self.fetch_urls) for url in message.get("image_urls") or []]
        return out

    def _videos(self, messages) -> list:
        """The messages' videos in order: ``videos`` (file paths from chat.py, or a dataset row's frame lists: see
        ffc.runtime.data.media) and ``video_urls`` (from the API: the bytes of data: URLs, or of http(s) URLs
        where fetching is on; never a local path; at most ``MAX_REQUEST_VIDEOS``)."""
        from .data.media import decode_data_url, download
        from .data.video import frame_list

        out = []
        for message in messages:
            for video in message.get("videos") or []:
                video = str(video)
                if not Path(video).is_file() and frame_list(video) is None:
                    raise ImageError(f"video {video}: not found")
                out.append(video)
            urls = message.get("video_urls") or []
            if len(urls) > MAX_REQUEST_VIDEOS:
                raise ImageError(f"{len(urls)} videos in one message: this server takes at most {MAX_REQUEST_VIDEOS}")
            for url in urls:
                try:
                    if url.startswith("data:"):
                        out.append(decode_data_url(url))
                    elif url.startswith(("http://", "https://")) and self.fetch_urls:
                        out.append(download(url))
                    else:
                        off = (
                            "" if self.fetch_urls else "; this server does not download (serve.fetch_image_urls is off)"
                        )
                        raise ValueError(f"a video_url must be a data: URL (data:video/mp4;base64,...){off}")
                except ValueError as exc:
                    raise ImageError(str(exc).replace("data: URL image", "data: URL video")) from None
        return out

    def _media(self, messages) -> tuple[list, list]:
        """(images, videos) of ``messages``, read once per conversation: ``prompt_ids`` counts their tokens and
        ``model_inputs`` makes their pixels from the same bytes (a URL fetched twice could change in between)."""
        key = tuple(
            tuple(tuple(message.get(field) or ()) for field in ("images", "image_urls", "videos", "video_urls"))
            for message in messages
        )  # what the messages name, not the list itself (chat.py's history grows in place)
        cached = self._last_media
        if cached is not None and cached[0] == key:
            return cached[1]
        media = (self._images(messages), self._videos(messages))
        self._last_media = (key, media)  # one tuple, replaced whole: safe across serve.py's threads
        return media

    def prompt_ids(self, messages: list[dict], system: Optional[str] = None, tools=None) -> list[int]:
        rendered = self.template.render(
            messages, bos=self.tokenizer.bos_token or "", eos=self.tokenizer.eos_token or "",
            system=system or self.default_system, tools=tools, add_generation_prompt=True,
        )  # fmt: skip
        try:
            text = self.images.expand(rendered, *self._media(messages))
        except MediaError as exc:
            raise ImageError(str(exc)) from None
        ids = self.tokenizer(text.text, add_special_tokens=False)["input_ids"]
        if self.template.add_bos_token and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id] + ids
        return ids

    def model_inputs(self, messages, input_ids) -> dict:
        images, videos = self._media(messages)
        try:
            extra = self.images.model_inputs(images, input_ids, videos)
        except MediaError as exc:
            raise ImageError(str(exc)) from None
        return {key: value.to(self.model.device) for key, value in extra.items()}
