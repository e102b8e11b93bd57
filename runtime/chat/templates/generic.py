"""Model-agnostic formats: empty, LLaMA-Factory's default, Alpaca, Vicuna, plain ChatML, Zephyr."""

from .base import ChatTemplate, register

# ChatML's markup, shared by the families built on it (qwen, yi, internlm, ...).
CHATML = dict(
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n",
    assistant_prefix="<|im_start|>assistant\n",
    assistant_end="<|im_end|>",
    turn_sep="\n",
    stop_words=("<|im_end|>",),
)

register(
    ChatTemplate(
        name="empty",
        add_bos_token=True,
        notes="No markup: the prompt and response texts follow each other; the response ends with EOS.",
    ),
    ChatTemplate(
        name="default",
        system="System: {content}\n",
        user="Human: {content}\nAssistant:",
        turn_sep="\n",
        add_bos_token=True,
        notes="LLaMA-Factory's model-agnostic default format.",
    ),
    ChatTemplate(
        name="alpaca",
        user="### Instruction:\n{content}\n\n### Response:\n",
        turn_sep="\n\n",
        default_system=(
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        ),
        add_bos_token=True,
        notes="Stanford Alpaca's prompt format.",
    ),
    ChatTemplate(
        name="vicuna",
        system="{content} ",
        user="USER: {content} ",
        assistant_prefix="ASSISTANT:",
        response_lead=" ",
        default_system=(
            "A chat between a curious user and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the user's questions."
        ),
        add_bos_token=True,
        notes="FastChat vicuna_v1.1; FastChat's tokenizer call adds BOS, so tokenization does too.",
    ),
    ChatTemplate(name="chatml", **CHATML, notes="Plain ChatML, no default system prompt."),
    ChatTemplate(
        name="zephyr",
        system="<|system|>\n{content}{eos}\n",
        user="<|user|>\n{content}{eos}\n",
        assistant_prefix="<|assistant|>\n",
        turn_sep="\n",
        notes="Zephyr and TinyLlama-chat.",
    ),
)
