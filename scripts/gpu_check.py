"""The GPU check: what ffc's lean training paths do on one GPU, written to docs/gpu-results.md.

    bash scripts/gpu_check.sh [--dry-run] [--work DIR] [--steps N]

On a GPU (sized for under 10 minutes on one H200): a random model of Qwen2.5-0.5B's shape (494M
parameters, 151,936-token vocabulary) trained through ffc-built run directories with their defaults
(padding-free batches, chunked loss): bf16 LoRA and full SFT (tokens/s, MFU = 6·N·tokens/s ÷ 790
TFLOP/s, peak memory), the padded batch and Liger for comparison, QLoRA when bitsandbytes is
installed, DPO, GRPO with transformers generation, and serve.py streaming an answer; plus
packed-vs-separate logits of the same samples on the GPU; then issue 15's GPU-only paths (shift_attn,
LoftQ, torchao int4, fp8, Unsloth, GPTQ export: docs/methods.md) as far as the machine has their packages,
and the vision-language runs on the demo VLM (images, videos, QLoRA) (``--only NAME,...`` runs a subset). ``--dry-run`` builds every run directory it
would launch and writes the model's config and tokenizer, without torch or a GPU (the test suite runs
it). Missing packages travel as wheels: scripts/fetch_gpu_wheels.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
H200_BF16_FLOPS = 790e12  # dense bf16 matrix products measured on this workplace's H200 (device KINDS.md)
# Qwen2.5-0.5B's shape; the weights are random: the check measures speed and memory, not quality.
MODEL_SHAPE = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
    rope_theta=1000000.0,
)


def runs(steps: int, have: set[str], vlm_dir: Path) -> dict[str, dict]:
    """name -> spec overrides, each a run directory to build and train (only those the GPU's packages allow)."""
    sft = {
        "method.stage": "sft",
        "method.finetuning_type": "lora",
        "method.lora_target": "all",
        "data.dataset": "demo_alpaca,demo_sharegpt",
        "data.template": "chatml",
        "data.cutoff_len": 1024,
        "training.bf16": True,
        "training.max_steps": steps,
        "training.per_device_train_batch_size": 16,
        "training.gradient_accumulation_steps": 1,
        "training.learning_rate": 1e-4,
        "training.logging_steps": 1,
        "training.include_num_input_tokens_seen": True,
        "training.save_strategy": "no",
        "logging.report_to": "none",
        "logging.plot_loss": False,
    }
    out = {
        "sft_lora": sft,
        "sft_lora_padded": {**sft, "data.padding_free": False, "training.chunked_loss": False},
        "sft_full": {
            **{k: v for k, v in sft.items() if k != "method.lora_target"},
            "method.finetuning_type": "full",
            "training.learning_rate": 1e-5,
        },
    }
    if "liger_kernel" in have:
        out["sft_lora_liger"] = {**sft, "model.enable_liger_kernel": True}
    if "bitsandbytes" in have:
        out["sft_qlora"] = {**sft, "model.quantization_bit": 4}
    out["dpo_lora"] = {
        **sft,
        "method.stage": "dpo",
        "data.dataset": "demo_pairs",
        "training.per_device_train_batch_size": 8,
        "training.include_num_input_tokens_seen": False,
    }
    # ORPO's log-probabilities and NLL term come from ffc's chunked path (ChunkedORPOTrainer, runtime/losses.py);
    # DPO above uses TRL's fused LM head.
    out["orpo_lora"] = {**out["dpo_lora"], "method.stage": "orpo"}
    out["grpo_lora"] = {
        **sft,
        "method.stage": "grpo",
        "method.reward_funcs": str(ROOT / "examples" / "rewards.py"),
        "method.num_generations": 4,
        "method.max_new_tokens": 64,
        "data.dataset": "demo_alpaca",
        "training.per_device_train_batch_size": 8,
        "training.max_steps": max(2, steps // 4),
        "training.include_num_input_tokens_seen": False,
    }
    out.update(method_runs(sft, steps, have))
    out.update(vision_runs(sft, steps, have, vlm_dir))
    return out


def vision_runs(sft: dict, steps: int, have: set[str], vlm_dir: Path) -> dict[str, dict]:
    """Issue 12's GPU claims for vision-language runs: bf16 LoRA with gradient checkpointing on images and on
    videos (PyAV decodes the clips), QLoRA (the vision tower and projector stay unquantized), on the demo VLM."""
    vision = {
        **sft,
        "model.model_name_or_path": str(vlm_dir),
        "data.dataset": "demo_vision",
        "data.template": "qwen2_vl",
        "data.cutoff_len": 512,
        "training.max_steps": max(2, steps // 3),
        "training.per_device_train_batch_size": 8,
        "training.gradient_checkpointing": True,
        "training.include_num_input_tokens_seen": False,
    }
    out = {"vlm_lora": vision}
    if "av" in have:
        out["vlm_video_lora"] = {**vision, "data.dataset": "demo_video"}
    if "bitsandbytes" in have:
        out["vlm_qlora"] = {**vision, "model.quantization_bit": 4}
    return out


def method_runs(sft: dict, steps: int, have: set[str]) -> dict[str, dict]:
    """Issue 15's GPU-only paths (docs/methods.md): each trains a few steps; export_* runs then run export.py.
    Only those whose packages the GPU machine has (unsloth, 28 MiB, does not fit fetch_gpu_wheels.sh's budget;
    gptqmodel has no wheel on the index, only a source archive that compiles CUDA kernels)."""
    short = {**sft, "training.max_steps": max(2, steps // 5), "training.include_num_input_tokens_seen": False}
    out = {"sft_shift_attn": {**short, "model.shift_attn": True}}  # S2-Attn at cutoff 1024: four groups of 256
    if "bitsandbytes" in have:
        out["sft_qlora_loftq"] = {**short, "model.quantization_bit": 4, "method.loftq_init": True}
    if "torchao" in have:
        out["sft_qlora_torchao_int4"] = {
            **short, "model.quantization_method": "torchao", "model.quantization_bit": 4
        }  # fmt: skip
        out["sft_fp8"] = {**short, "training.bf16": False, "training.fp8": True, "training.fp8_backend": "torchao"}
    if "unsloth" in have:
        out["sft_unsloth"] = {**short, "model.use_unsloth": True, "model.use_unsloth_gc": True}
        if "bitsandbytes" in have:
            out["sft_unsloth_qlora"] = {**short, "model.use_unsloth": True, "model.quantization_bit": 4}
    if "gptqmodel" in have and "optimum" in have:
        out["export_gptq"] = {
            **short,
            "export.export_quantization_bit": 4,
            "export.export_quantization_dataset": "calibration.jsonl",  # written by prepare(), next to the specs
            "export.export_quantization_nsamples": 16,
            "export.export_quantization_maxlen": 256,
        }
    return out


def prepare(work: Path, dry_run: bool, videos: bool) -> Path:
    """The demo data and the model folder (config and tokenizer; random bf16 weights unless dry_run), the demo
    VLM (tiny, on the CPU) with its pictures, and its clips where PyAV is installed (``videos``)."""
    from ffc.devtools.demo import write_demo_data
    from ffc.devtools.tiny import train_tokenizer
    from ffc.devtools.vlm import make_tiny_vlm, write_video_data, write_vision_data

    data = work / "data"
    if not (data / "dataset_info.json").exists():
        write_vision_data(write_demo_data(data))
        if videos:
            write_video_data(data)
    if not (work / "tiny-vlm" / "config.json").exists():
        make_tiny_vlm(work / "tiny-vlm")
    calibration = work / "specs" / "calibration.jsonl"  # GPTQ calibration text (export_gptq)
    calibration.parent.mkdir(parents=True, exist_ok=True)
    from ffc.devtools.demo import corpus

    text = " ".join(corpus())
    calibration.write_text("".join(json.dumps({"text": text[i : i + 4000]}) + "\n" for i in range(0, 40000, 4000)))
    model_dir = work / "qwen2.5-0.5b-shaped"
    model_dir.mkdir(parents=True, exist_ok=True)
    if not (model_dir / "tokenizer.json").exists():
        train_tokenizer().save_pretrained(model_dir)
    from transformers import Qwen2Config

    config = Qwen2Config(**MODEL_SHAPE, torch_dtype="bfloat16")
    config.save_pretrained(model_dir)
    if not dry_run and not (model_dir / "model.safetensors").exists():
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(model_dir)
        del model
        torch.cuda.empty_cache()
    return model_dir


def build(work: Path, model_dir: Path, name: str, overrides: dict) -> Path:
    spec = {"name": name, "model": {"model_name_or_path": str(model_dir)}, "data": {"dataset_dir": str(work / "data")}}
    spec_file = work / "specs" / f"{name}.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(spec, indent=1))  # JSON is YAML
    run_dir = work / "runs" / name
    command = [sys.executable, "-m", "ffc.compiler", "build", str(spec_file), "-o", str(run_dir), "--force"]
    for key, value in overrides.items():
        command += ["--set", f"{key}={json.dumps(value) if isinstance(value, bool) else value}"]
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode:
        raise SystemExit(f"gpu_check: ffc build of {name} failed:\n{built.stdout}{built.stderr}")
    return run_dir


# Runs train.py in-process so that the peak GPU memory of the whole run can be read at its end.
RUNNER = """
import json, runpy, sys, time, torch
sys.argv = ["train.py"]
start = time.time()
try:
    runpy.run_path("train.py", run_name="__main__")
finally:
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
    json.dump({"peak_gib": peak / 2**30, "wall_s": time.time() - start},
              open("gpu_stats.json", "w"))
"""


def train(run_dir: Path, timeout: int) -> dict:
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", RUNNER], cwd=run_dir, capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 0 and run_dir.name.startswith("export_"):  # then the export script (GPTQ)
        left = max(1, int(timeout - (time.time() - started)))
        proc = subprocess.run([sys.executable, "export.py"], cwd=run_dir, capture_output=True, text=True, timeout=left)
    result = {"ok": proc.returncode == 0, "wall_s": time.time() - started}
    if proc.returncode:
        result["error"] = (proc.stderr or proc.stdout)[-1500:]
    stats = run_dir / "gpu_stats.json"
    if stats.exists():
        result.update(json.loads(stats.read_text()))
    log = run_dir / "output" / "trainer_log.jsonl"
    if log.exists():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        losses = [r["loss"] for r in rows if "loss" in r]
        result["first_loss"], result["last_loss"] = (losses[0], losses[-1]) if losses else (None, None)
        final = next((r for r in reversed(rows) if "train_runtime" in r), {})
        seen = next((r["num_input_tokens_seen"] for r in reversed(rows) if "num_input_tokens_seen" in r), None)
        if final and seen:
            result["tokens_per_s"] = seen / final["train_runtime"]
    return result


def packed_logits(model_dir: Path) -> dict:
    """Max |logit difference| of samples run together in one padding-free row vs each alone, per attention."""
    import torch
    from transformers import AutoModelForCausalLM

    from ffc.runtime.data.packing import Collator

    gen = torch.Generator().manual_seed(0)
    samples = [torch.randint(10, 700, (n,), generator=gen).tolist() for n in (37, 300, 5, 129)]
    batch = Collator(0, padding_free=True)([{"input_ids": s, "labels": s} for s in samples])
    out = {}
    for attention in ("sdpa", "flash_attention_2", "eager"):
        try:
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation=attention)
        except (ImportError, ValueError) as error:
            out[attention] = f"unavailable ({str(error).splitlines()[0][:80]})"
            continue
        model = model.cuda().eval()
        with torch.no_grad():
            together = model(**{k: v.cuda() for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
            worst, start = 0.0, 0
            for s in samples:
                alone = model(input_ids=torch.tensor([s], device="cuda")).logits[0]
                worst = max(worst, (together[start : start + len(s)] - alone).abs().max().item())
                start += len(s)
        out[attention] = worst
        del model
        torch.cuda.empty_cache()
    return out


def serve_stream(run_dir: Path, timeout: int = 120) -> dict:
    """Start the trained run's serve.py, stream one chat answer, count the server-sent chunks."""
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = run_dir / "serve.log"  # a file, not a pipe: a pipe nobody reads would stall the server once full
    proc = subprocess.Popen(
        [sys.executable, "serve.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=run_dir,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as listing:
                    model = json.load(listing)["data"][0]["id"]
                break
            except OSError:
                if proc.poll() is not None:
                    return {"ok": False, "error": log.read_text()[-1500:]}
                time.sleep(1)
        else:
            return {"ok": False, "error": f"serve.py did not answer within {timeout} s"}
        body = {"model": model, "messages": [{"role": "user", "content": "Hello"}], "stream": True, "max_tokens": 32}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        started, first, chunks = time.time(), None, 0
        with urllib.request.urlopen(request, timeout=60) as response:
            for line in response:
                if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
                    chunks += 1
                    first = first or time.time() - started
        return {"ok": chunks > 1, "chunks": chunks, "first_chunk_s": first, "total_s": time.time() - started}
    except urllib.error.HTTPError as error:
        return {"ok": False, "error": f"{error}: {error.read().decode(errors='replace')[:500]}"}
    except OSError as error:
        return {"ok": False, "error": str(error)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def report(path: Path, params: int, results: dict, logits: dict, serve: dict, skipped: list[str]) -> None:
    import torch

    lines = [
        "# GPU check results",
        "",
        f"Written by `scripts/gpu_check.sh` on {torch.cuda.get_device_name()} (torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}). Model: random weights of Qwen2.5-0.5B's shape, {params / 1e6:.0f}M "
        "parameters, 151,936-token vocabulary; demo data, chatml, cutoff 1024, bf16.",
        "MFU = 6·N·tokens/s ÷ 790 TFLOP/s (N: all parameters, also for LoRA, whose backward skips the frozen "
        "weights' gradients: its MFU is an upper bound).",
        "",
        "| run | ok | tokens/s | MFU | peak GiB | wall s | loss first → last |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        tps = r.get("tokens_per_s")
        mfu = f"{6 * params * tps / H200_BF16_FLOPS:.1%}" if tps else "–"
        loss = f"{r['first_loss']:.3f} → {r['last_loss']:.3f}" if r.get("first_loss") is not None else "–"
        lines.append(
            f"| {name} | {'yes' if r['ok'] else 'NO'} | {f'{tps:,.0f}' if tps else '–'} | {mfu} | "
            f"{r.get('peak_gib', float('nan')):.1f} | {r['wall_s']:.0f} | {loss} |"
        )
    lines += ["", "Packed (padding-free) row vs each sample alone, max |logit difference| (bf16):", ""]
    lines += [f"- {k}: {v if isinstance(v, str) else f'{v:.3g}'}" for k, v in logits.items()]
    lines += ["", f"serve.py streaming: {json.dumps(serve)}", ""]
    if skipped:
        lines += ["Not run: " + "; ".join(skipped), ""]
    for name, r in results.items():
        if not r["ok"]:
            lines += [f"## {name} failed", "", "```", r.get("error", ""), "```", ""]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="build every run directory; no torch, no GPU")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ffc-gpu-check"), help="scratch folder")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps of each sft run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gpu-results.md")
    parser.add_argument("--timeout", type=int, default=150, help="seconds allowed to each training run")
    parser.add_argument("--budget", type=int, default=540, help="seconds for the whole check: later runs are skipped")
    parser.add_argument("--only", help="comma-separated run names (e.g. sft_lora,sft_shift_attn): run just these")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.work.mkdir(parents=True, exist_ok=True)

    have, skipped = set(), []
    modules = (
        ("liger_kernel", "Liger on/off"),
        ("bitsandbytes", "QLoRA and LoftQ"),
        ("torchao", "torchao int4 and fp8"),
        ("unsloth", "Unsloth"),
        ("optimum", "GPTQ export"),
        ("gptqmodel", "GPTQ export"),
        ("av", "the video run"),
    )
    for module, what in modules:
        try:
            __import__(module) if not args.dry_run or module == "av" else None  # av: the dry run writes clips
            have.add(module)
        except ImportError:
            skipped.append(f"{what} ({module} not installed)")
    model_dir = prepare(args.work, args.dry_run, videos="av" in have)
    plan = runs(args.steps, have, args.work / "tiny-vlm")
    if args.only:
        unknown = set(args.only.split(",")) - set(plan)
        if unknown:
            parser.error(f"--only: no run named {', '.join(sorted(unknown))} (runs: {', '.join(plan)})")
        plan = {name: overrides for name, overrides in plan.items() if name in args.only.split(",")}
    run_dirs = {name: build(args.work, model_dir, name, overrides) for name, overrides in plan.items()}
    if args.dry_run:
        for name, run_dir in run_dirs.items():
            print(f"built {name}: {run_dir}")
        return 0

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible (use --dry-run to only build)", file=sys.stderr)
        return 2
    from safetensors.torch import load_file

    params = sum(t.numel() for t in load_file(model_dir / "model.safetensors").values())  # tied head counted once
    logits = packed_logits(model_dir)
    print("packed vs separate logits:", logits, flush=True)
    results, started = {}, time.time()
    for name, run_dir in run_dirs.items():
        left = args.budget - (time.time() - started)
        if left < 30:
            skipped.append(f"{name} (the {args.budget} s budget was spent)")
            continue
        try:
            results[name] = train(run_dir, int(min(args.timeout, left)))
        except subprocess.TimeoutExpired:
            results[name] = {"ok": False, "wall_s": min(args.timeout, left), "error": "timed out"}
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "error"}), flush=True)
        if not results[name]["ok"]:
            print(results[name]["error"], flush=True)
    trained = results.get("sft_lora", {}).get("ok")
    serve = serve_stream(run_dirs["sft_lora"]) if trained else {"ok": False, "error": "sft_lora did not train here"}
    print("serve:", serve, flush=True)
    report(args.out, params, results, logits, serve, skipped)
    return 0 if all(r["ok"] for r in results.values()) and (serve.get("ok") or "sft_lora" not in plan) else 1


if __name__ == "__main__":
    sys.exit(main())
