"""LLaVA (llava-hf): LLaVA-1.5 and LLaVA-NeXT (llava-v1.6-mistral). Images: ffc.runtime.chat.vision."""

from .base import ChatTemplate, register

register(
    ChatTemplate(
        name="llava",
        system="{content} ",
        user="USER: {content} ",
        assistant_prefix="ASSISTANT:",
        response_lead=" ",
        add_bos_token=True,
        stop_words=("USER:",),
        notes=(
            "LLaVA-1.5 (llava-hf), as its processor's chat template writes a prompt: a bare system text, "
            "'USER: ' turns with each <image> as '<image>\\n', 'ASSISTANT:'. Responses end with the EOS "
            "LLaVA was trained with (vicuna_v1: 'answer</s>USER: ...'), where the processor template writes a "
            "space and no EOS; no default system prompt (the processor template has none; LLaMA-Factory's llava "
            "uses vicuna's). The tokenizer adds BOS."
        ),
    ),
    ChatTemplate(
        name="llava_next",
        system="<<SYS>>\n{content}\n<</SYS>>\n\n",
        user="[INST] {content} [/INST]",
        response_lead=" ",
        turn_sep=" ",
        add_bos_token=True,
        notes=(
            "LLaVA-NeXT on Mistral (llava-v1.6-mistral-7b-hf), as its processor's chat template: a <<SYS>> block, "
            "'[INST] ... [/INST]' turns with each <image> as '<image>\\n', ' answer</s> '. The template has no "
            "generation prompt (the prompt ends with ' [/INST]'); the tokenizer adds BOS."
        ),
    ),
)
