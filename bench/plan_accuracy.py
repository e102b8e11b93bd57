"""Measure training peak memory on CPU and compare it with `ffc plan`'s estimate.

    python bench/plan_accuracy.py [--out bench/results/plan_accuracy.json]

A ~70M-parameter Llama-style model (random weights) trains a few steps with transformers in fp32, for
several methods; each case runs in a fresh process that reports its peak resident memory above the
baseline taken just before the model is built. The estimate is compared without its CUDA allowance
(no GPU here). GPU peaks differ by the CUDA context and allocator behaviour.
"""

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

CONFIG = dict(vocab_size=8000, hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12,
              num_key_value_heads=12, max_position_embeddings=1024, tie_word_embeddings=False)  # fmt: skip
CASES = [
    dict(method="full", checkpointing=False, batch=4, seq=256),
    dict(method="full", checkpointing=True, batch=4, seq=256),
    dict(method="lora", checkpointing=False, batch=4, seq=256),
    dict(method="lora", checkpointing=True, batch=8, seq=512),
]


def child(case: dict) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    if case["checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if case["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, CONFIG["vocab_size"], (case["batch"], case["seq"]))
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_gb": (peak - base) / 1024**2}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/results/plan_accuracy.json")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        return child(json.loads(args.case))
    from ffc.compiler.plan import OVERHEAD_GB, Setup, Shape, estimate

    shape = Shape.from_config(CONFIG)
    rows = []
    for case in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True, check=True
        )
        measured = json.loads(out.stdout.strip().splitlines()[-1])["peak_gb"]
        estimated = (
            estimate(
                shape, Setup(case["method"], None, "float32", case["checkpointing"], case["batch"], case["seq"])
            ).total
            - OVERHEAD_GB
        )
        rows.append({**case, "params_m": round(shape.params / 1e6, 1), "measured_gb": round(measured, 3),
                     "estimated_gb": round(estimated, 3), "error": round(estimated / measured - 1, 3)})  # fmt: skip
        print(json.dumps(rows[-1]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
