"""GLM (Zhipu AI): GLM-4."""

from .base import NextRoleEndTemplate, register

register(
    NextRoleEndTemplate(
        name="glm4",
        prefix="[gMASK]<sop>",
        system="<|system|>\n{content}",
        user="<|user|>\n{content}",
        observation="<|observation|>\n{content}",
        assistant_prefix="<|assistant|>",
        response_lead="\n",
        assistant_end="",
        stop_words=("<|user|>", "<|observation|>"),
        notes=(
            "GLM-4-chat: responses end where the next <|user|> begins, so that tag is trained; a finished "
            "conversation gets a trained EOS that the official template does not render."
        ),
    ),
)
