"""Peak memory of one forward + backward of the preference/RL stages' log-probabilities, with and
without the full-vocabulary logits, on a tiny model with Qwen2.5's vocabulary (151,936 tokens).

Each case runs in its own process; its figure is the growth of the peak resident memory over the
memory held once the model and the batch exist (``ru_maxrss`` minus the resident size then), so
the model's own weights do not count. Cases:

  logits      the model's logits -> log_softmax -> the labels' log-probs (TRL's ORPO/CPO, ffc's PPO before)
  chunked     ffc's ``final_hidden_states`` + ``causal_token_logprobs`` (runtime/losses.py)
  trl_fused   TRL's ``add_fused_lm_head`` (what TRL 1.16's DPO, KTO and GRPO always use)
  orpo_trl    TRL's ORPO trainer step (loss + backward), ``PretokenizedORPOTrainer``
  orpo_ffc    the same step with ``ChunkedORPOTrainer``
  ppo_logits  ffc's PPO policy forward (log-probs + values) + backward, ``chunked_logprobs=False``
  ppo_ffc     the same with ``chunked_logprobs=True``

Usage: python bench/logprob_memory.py [--rows 4] [--seq 512] [--vocab 151936] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile

CASES = ("logits", "chunked", "trl_fused", "orpo_trl", "orpo_ffc", "ppo_logits", "ppo_ffc")


def _model(vocab: int):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False, use_cache=False,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(config).float()


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, rows: int, seq: int, vocab: int) -> dict:
    import torch

    from ffc.runtime.data.tokenize import IGNORE_INDEX

    torch.set_num_threads(1)
    model = _model(vocab)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (rows, seq), generator=gen)
    labels = ids.clone()
    labels[:, : seq // 4] = IGNORE_INDEX  # a prompt quarter, as in a preference pair
    step = None
    if case == "logits":

        def step():
            logits = model(input_ids=ids).logits[:, :-1]
            logps = torch.log_softmax(logits.float(), -1).gather(2, labels[:, 1:].clamp(min=0)[..., None])
            (logps[..., 0] * (labels[:, 1:] != IGNORE_INDEX)).sum().backward()

    elif case == "chunked":
        from ffc.runtime.losses import causal_token_logprobs, final_hidden_states

        def step():
            hidden, _, head, softcap = final_hidden_states(model, input_ids=ids)
            causal_token_logprobs(hidden, head, labels, softcap=softcap).sum().backward()

    elif case == "trl_fused":
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)

        def step():
            model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs.sum().backward()

    elif case.startswith("orpo"):
        from datasets import Dataset

        from ffc.runtime import trainers

        prompt = seq // 4
        pairs = [
            {"prompt_ids": ids[i, :prompt].tolist(), "chosen_ids": ids[i, prompt:].tolist(),
             "rejected_ids": ids[i + 1, prompt:].tolist()}
            for i in range(0, rows, 2)
        ]  # fmt: skip
        args = trainers.ORPOConfig(
            output_dir=tempfile.mkdtemp(),
            use_cpu=True,
            report_to=[],
            max_length=seq,
            per_device_train_batch_size=rows // 2,
        )
        trainer_class = trainers.ChunkedORPOTrainer if case == "orpo_ffc" else trainers.PretokenizedORPOTrainer
        tokenizer = type(
            "Tok", (), {"pad_token": "<pad>", "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": None}
        )()
        data = trainers.to_legacy_pairs(Dataset.from_list(pairs))
        trainer = trainer_class(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        batch = next(iter(trainer.get_train_dataloader()))

        def step():
            trainer.get_batch_loss_metrics(model, batch)[0].backward()

    elif case.startswith("ppo"):
        from ffc.runtime.ppo import PolicyWithValue

        policy = PolicyWithValue(model, chunked_logprobs=case == "ppo_ffc")
        mask = torch.ones_like(ids)

        def step():
            logprobs, values = policy(ids, mask, labels)
            (logprobs.sum() + values.sum()).backward()

    import gc

    gc.collect()
    before = _rss_mb()
    step()
    return {"case": case, "rss_before_mb": round(before, 1), "peak_mb": round(_peak_mb(), 1),
            "growth_mb": round(_peak_mb() - before, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4, help="sequences per step (chosen + rejected rows)")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one case, in this process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.rows, args.seq, args.vocab)))
        return
    results = []
    for case in args.cases:
        command = [sys.executable, __file__, "--case", case, "--rows", str(args.rows), "--seq", str(args.seq),
                   "--vocab", str(args.vocab)]  # fmt: skip
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{case:11s} peak growth {results[-1]['growth_mb']:8.1f} MB", flush=True)
    report = {"rows": args.rows, "seq": args.seq, "vocab": args.vocab, "results": results}
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=1)


if __name__ == "__main__":
    main()
