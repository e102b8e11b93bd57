"""Phi (Microsoft): Phi-3/3.5, Phi-4, Phi-4-mini, Phi-4-reasoning."""

from .base import ChatTemplate, register

_PHI4 = dict(
    system="<|im_start|>system<|im_sep|>{content}<|im_end|>",
    user="<|im_start|>user<|im_sep|>{content}<|im_end|>",
    assistant_prefix="<|im_start|>assistant<|im_sep|>",
    assistant_end="<|im_end|>",
    stop_words=("<|im_end|>",),
)
# Phi-4-reasoning's template writes this system prompt itself (before every conversation).
_PHI4_REASONING_SYSTEM = (
    "You are Phi, a language model trained by Microsoft to help users. Your role as an assistant involves "
    "thoroughly exploring questions through a systematic thinking process before providing the final precise and "
    "accurate solutions. This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, "
    "reassessment, reflection, backtracing, and iteration to develop well-considered thinking process. Please "
    "structure your response into two main sections: Thought and Solution using the specified format: <think> "
    "{Thought section} </think> {Solution section}. In the Thought section, detail your reasoning process in steps. "
    "Each step should include detailed considerations such as analysing questions, summarizing relevant findings, "
    "brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, and revisiting "
    "previous steps. In the Solution section, based on various attempts, explorations, and reflections from the "
    "Thought section, systematically present the final solution that you deem correct. The Solution section should "
    "be logical, accurate, and concise and detail necessary steps needed to reach the conclusion. Now, try to solve "
    "the following question through the above guidelines:"
)

register(
    ChatTemplate(
        name="phi",
        system="<|system|>\n{content}<|end|>\n",
        user="<|user|>\n{content}<|end|>\n",
        assistant_prefix="<|assistant|>\n",
        assistant_end="<|end|>",
        turn_sep="\n",
        final_suffix="{eos}",
        stop_words=("<|end|>",),
        notes="Phi-3/3.5 instruct.",
    ),
    ChatTemplate(name="phi4", **_PHI4, notes="Phi-4."),
    ChatTemplate(
        name="phi4_mini",
        system="<|system|>{content}<|end|>",
        user="<|user|>{content}<|end|>",
        assistant_prefix="<|assistant|>",
        assistant_end="<|end|>",
        final_suffix="{eos}",
        stop_words=("<|end|>",),
        notes=(
            "Phi-4-mini-instruct. Its official template renders no tool calls (an assistant turn that calls tools "
            "shows up empty) and reads tool definitions only from a 'tools' string inside the system message, so "
            "ffc has no tool format for it: tool data is refused at build."
        ),
    ),
    ChatTemplate(
        name="phi4_reasoning",
        **_PHI4,
        default_system=_PHI4_REASONING_SYSTEM,
        notes=(
            "Phi-4-reasoning (not in LLaMA-Factory). Its official template always writes its own reasoning system "
            "prompt and ignores the conversation's; ffc uses it as the default and lets a given system prompt "
            "replace it. Reasoning stays in the response text as <think>...</think>, which the template trains."
        ),
    ),
)
