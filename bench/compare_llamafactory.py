"""ffc vs LLaMA-Factory 0.9.5 on identical work, in one invocation.

    python bench/compare_llamafactory.py [--rows 50000] [--steps 30] [--repeats 5]

Sets up what it needs under bench/.work/ (LLaMA-Factory in its own virtual environment, isolated from
ffc's; a ~17M-parameter Llama-style model with random weights and a BPE tokenizer trained on the demo
text; the data), then measures, alternating the two tools run by run:

1. time to a ready run: `ffc build` vs LLaMA-Factory's start-up until "Running training" (and
   `llamafactory-cli version` as its floor);
2. data preparation: templating and tokenising alpaca_en_demo repeated to --rows rows, same template
   (qwen) and cutoff: rows/s and peak memory;
3. training: LoRA and full SFT, same model, data, cutoff, batch, learning rate, steps and seed: wall time,
   trained (non-padding) tokens/s, peak memory, loss curves; then ffc with packing;
4. training with a realistic vocabulary: a Qwen2.5-shaped model scaled down to run here (151,936-token
   vocabulary, tied embeddings) at --big-cutoff (>= 1024), LoRA SFT, both tools' defaults (ffc:
   padding-free batches and the chunked loss; LLaMA-Factory: padded batches and full logits).

comparison.json's top-level keys sum it up: startup_ratio (LLaMA-Factory ÷ ffc time), data_speed_ratio
(ffc ÷ LLaMA-Factory rows/s), train_speed_ratio (ffc ÷ LLaMA-Factory trained tokens/s) and
train_memory_ratio (ffc ÷ LLaMA-Factory peak memory), both from the realistic-vocabulary run, and
loss_agreement (mean and largest absolute per-step loss difference of that run). Timings need a quiet
machine: other processes on the same cores make every ratio noisy.

Results: bench/results/comparison.json and .md, and the loss curves as loss_curves.png.
Needs ../shared/data/llamafactory-demo (the demo data is read by path, never copied).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
DEMO = ROOT.parent / "shared" / "data" / "llamafactory-demo"
LF_VENV = WORK / "lf-venv"
STUB = WORK / "stub"
PY = sys.executable
FFC = [PY, "-m", "ffc.compiler"]
# Each tool runs as it does by default (tokenizer threads included); only the network is switched off.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1"}
ENV.pop("TOKENIZERS_PARALLELISM", None)


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# -- setup ------------------------------------------------------------------------------------------


def setup_llamafactory() -> None:
    if (LF_VENV / "bin" / "llamafactory-cli").exists():
        return
    log("installing LLaMA-Factory 0.9.5 into its own virtual environment (a few minutes)")
    subprocess.run([sys.executable, "-m", "venv", str(LF_VENV)], check=True)
    pip = [str(LF_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    constraints = WORK / "lf-constraints.txt"
    constraints.write_text("torch==2.13.0\n")  # keep the CPU build; a newer torch would pull CUDA
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + ["-c", str(constraints), "llamafactory==0.9.5"], check=True)
    # The index's torchvision/torchaudio are CUDA builds; LLaMA-Factory imports torchaudio unconditionally.
    subprocess.run(
        [str(LF_VENV / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio"], check=True
    )
    (STUB / "torchaudio").mkdir(parents=True, exist_ok=True)
    (STUB / "torchaudio" / "__init__.py").write_text('"""Stub: never used by text-only runs."""\n')


def lf_env() -> dict:
    return {**ENV, "PYTHONPATH": str(STUB)}


def make_model(folder: Path) -> None:
    """A Qwen-style vocabulary (<|im_start|>, <|im_end|> as EOS) so both tools use the same end token."""
    if (folder / "config.json").exists():
        return
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [" ".join(str(v) for v in row.values()) for row in json.loads((DEMO / "alpaca_en_demo.json").read_text())]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(
        texts + ["system user assistant You are Qwen, created by Alibaba Cloud. You are a helpful assistant."] * 50,
        trainers.BpeTrainer(vocab_size=8000, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False),
    )  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>"], model_max_length=4096)  # fmt: skip
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                         num_attention_heads=6, num_key_value_heads=6, max_position_embeddings=2048,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


# Qwen2.5's vocabulary and layout (tied embeddings, grouped KV heads, QKV bias) at a width and depth this
# machine trains: the logits (batch x sequence x 151,936) dominate memory as they do in real fine-tuning.
QWEN_VOCAB_SHAPE = dict(vocab_size=151936, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                        max_position_embeddings=4096)  # fmt: skip


def make_big_vocab_model(folder: Path, small: Path) -> None:
    """The Qwen2.5-shaped model; its tokenizer is the small model's (ids below 8000: the vocabulary's
    other rows cost what they cost a real model, in the embedding, the head and the logits)."""
    if (folder / "config.json").exists():
        return
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(small)
    config = Qwen2Config(**QWEN_VOCAB_SHAPE, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def make_data(folder: Path, rows: int, name: str = "bench_alpaca") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    source = json.loads((DEMO / "alpaca_en_demo.json").read_text())
    data = [source[i % len(source)] for i in range(rows)]
    (folder / f"{name}.json").write_text(json.dumps(data, ensure_ascii=False))
    (folder / "dataset_info.json").write_text(json.dumps({name: {"file_name": f"{name}.json"}}))
    return folder


# -- measuring ----------------------------------------------------------------------------------------


def timed(command: list[str], env: dict, cwd: Path | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB of the process, stdout) via GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%M"] + command, env=env, cwd=cwd, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:4])} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
        peak_kb = int(report.read().strip().splitlines()[-1])
    return seconds, peak_kb / 1024, result.stdout


def timed_tree(command: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak MB, stdout) where memory is the proportional set size (PSS) summed over the
    process and all its worker processes, sampled every 250 ms (reading PSS costs CPU, so not more often): GNU time's peak would count only the
    largest single process, and summed RSS would count pages the forked workers share several times."""
    import psutil

    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        root, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            total = 0
            for member in [root, *root.children(recursive=True)]:
                try:
                    total += member.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak = max(peak, total)
            time.sleep(0.25)
        seconds = time.perf_counter() - start
        stderr = process.stderr.read() if process.stderr else ""
        out.seek(0)
        stdout = out.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return seconds, peak / 2**20, stdout


def until_line(command: list[str], marker: str, env: dict, cwd: Path) -> float:
    """Seconds from start until ``marker`` appears in the output; the process is then stopped."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if marker in line:
            elapsed = time.perf_counter() - start
            process.kill()
            process.wait()
            return elapsed
    process.wait()
    raise RuntimeError(f"{command[0]} ended without printing {marker!r}")


def medians(pairs: list[tuple[float, float]]) -> dict:
    ffc, lf = [p[0] for p in pairs], [p[1] for p in pairs]
    ratios = [b / a for a, b in pairs]
    return {"ffc": statistics.median(ffc), "llamafactory": statistics.median(lf), "ratio_median": statistics.median(ratios),
            "ratios": [round(r, 2) for r in ratios]}  # fmt: skip


# -- the three comparisons -------------------------------------------------------------------------------


def ffc_spec(
    path: Path, model: Path, data: Path, *, method: str, steps: int, cutoff: int, packing: bool = False
) -> Path:
    path.write_text(
        f"""\
name: bench_{method}
model: {{model_name_or_path: {model}}}
method: {{stage: sft, finetuning_type: {method}{", lora_rank: 8, lora_target: all" if method == "lora" else ""}}}
data: {{dataset: [bench_alpaca], dataset_dir: {data}, template: qwen, cutoff_len: {cutoff}, packing: {str(packing).lower()}}}
training:
  max_steps: {steps}
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 1
  learning_rate: 1.0e-4
  lr_scheduler_type: constant
  logging_steps: 1
  save_strategy: "no"
  seed: 42
  include_num_input_tokens_seen: true
logging: {{report_to: [none], plot_loss: false}}
"""
    )
    return path


def lf_config(path: Path, model: Path, data: Path, output: Path, *, method: str, steps: int, cutoff: int) -> Path:
    config = dict(
        model_name_or_path=str(model), stage="sft", do_train=True, finetuning_type=method, lora_rank=8, lora_target="all",
        dataset="bench_alpaca", dataset_dir=str(data), template="qwen", cutoff_len=cutoff, overwrite_cache=True,
        output_dir=str(output), overwrite_output_dir=True, logging_steps=1, save_strategy="no", plot_loss=False,
        report_to="none", per_device_train_batch_size=4, gradient_accumulation_steps=1, learning_rate=1.0e-4,
        lr_scheduler_type="constant", max_steps=steps, seed=42, include_num_input_tokens_seen="non_padding",
    )  # fmt: skip
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def startup(model: Path, repeats: int) -> dict:
    data = make_data(WORK / "data_small", 100)
    spec = ffc_spec(WORK / "startup.yaml", model, data, method="lora", steps=1, cutoff=256)
    config = lf_config(
        WORK / "startup_lf.yaml", model, data, WORK / "lf_startup_out", method="lora", steps=1, cutoff=256
    )
    lf_cli = str(LF_VENV / "bin" / "llamafactory-cli")
    pairs, floors = [], []
    for i in range(repeats):
        ffc_seconds, _, _ = timed(FFC + ["build", str(spec), "-o", str(WORK / "startup_run"), "--force"], ENV)
        lf_seconds = until_line([lf_cli, "train", str(config)], "Running training", lf_env(), WORK)
        floors.append(timed([lf_cli, "version"], lf_env())[0])
        pairs.append((ffc_seconds, lf_seconds))
        log(f"start-up {i + 1}/{repeats}: ffc build {ffc_seconds:.2f} s, LLaMA-Factory to training {lf_seconds:.2f} s")
    return {**medians(pairs), "llamafactory_version_floor": statistics.median(floors)}


def data_prep(model: Path, rows: int, repeats: int, cutoff: int) -> dict:
    """ffc with its defaults (one process per core for data this size) against LLaMA-Factory with its
    default (one process) and with as many worker processes as ffc uses."""
    data = make_data(WORK / "data_prep", rows)
    workers = str(min(os.cpu_count() or 1, 8))
    rates = {"ffc": [], "llamafactory": [], "llamafactory_workers": []}
    memory = {name: [] for name in rates}
    floors = []
    for i in range(repeats):
        runs = {
            "ffc": [PY, str(BENCH / "drivers" / "ffc_prep.py"), str(model), str(data), "qwen", str(cutoff)],
            "llamafactory": [str(LF_VENV / "bin" / "python"), str(BENCH / "drivers" / "lf_prep.py"), str(model), str(data), "qwen", str(cutoff), str(WORK / "lf_prep_out")],
        }  # fmt: skip
        runs["llamafactory_workers"] = runs["llamafactory"] + [workers]
        for name, args in runs.items():
            with tempfile.TemporaryDirectory() as cache:
                env = {**(ENV if name == "ffc" else lf_env()), "HF_DATASETS_CACHE": cache}
                _, peak_mb, out = timed_tree(args, env)
            result = json.loads(out.strip().splitlines()[-1])
            rates[name].append(rows / result["seconds"])
            memory[name].append(peak_mb)
            if name == "ffc":
                floors.append(rows / result["tokenizer_seconds"])
        log(f"data {i + 1}/{repeats}: " + ", ".join(f"{name} {rates[name][-1]:.0f} rows/s" for name in rates)
            + f"; tokenizer alone {floors[-1]:.0f} rows/s")  # fmt: skip
    return {
        "rows": rows,
        "workers": int(workers),
        "rows_per_s": {
            **{name: statistics.median(values) for name, values in rates.items()},
            "ratio_median": statistics.median(a / b for a, b in zip(rates["ffc"], rates["llamafactory"])),
            "ratio_workers_median": statistics.median(
                a / b for a, b in zip(rates["ffc"], rates["llamafactory_workers"])
            ),
            "tokenizer_alone": statistics.median(floors),
        },
        "peak_mb": {name: statistics.median(values) for name, values in memory.items()},
    }


def read_training(output: Path) -> dict:
    results = json.loads((output / "all_results.json").read_text())
    log_lines = [json.loads(line) for line in (output / "trainer_log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in log_lines if "loss" in entry]
    tokens = results.get("num_input_tokens_seen") or max(
        (e.get("num_input_tokens_seen", 0) for e in log_lines), default=0
    )
    if not tokens:
        state = json.loads((output / "trainer_state.json").read_text())
        tokens = state.get("num_input_tokens_seen", 0)
    runtime = results["train_runtime"]
    return {
        "train_runtime_s": runtime,
        "tokens": tokens,
        "tokens_per_s": tokens / runtime if runtime else 0,
        "losses": losses,
    }


def training(model: Path, steps: int, cutoff: int, repeats: int, methods=("lora", "full"), packed: bool = True) -> dict:
    data = make_data(WORK / "data_train", 4 * steps * 2)
    out: dict = {}
    lf_cli = str(LF_VENV / "bin" / "llamafactory-cli")
    for method in methods:
        runs = {"ffc": [], "llamafactory": []}
        for i in range(repeats):
            spec = ffc_spec(WORK / f"train_{method}.yaml", model, data, method=method, steps=steps, cutoff=cutoff)
            run_dir = WORK / f"ffc_{method}"
            shutil.rmtree(run_dir, ignore_errors=True)
            subprocess.run(FFC + ["build", str(spec), "-o", str(run_dir)], check=True, env=ENV, capture_output=True)
            wall, mb, _ = timed([PY, "train.py"], ENV, cwd=run_dir)
            runs["ffc"].append({**read_training(run_dir / "output"), "wall_s": wall, "peak_mb": mb})
            lf_out = WORK / f"lf_{method}"
            shutil.rmtree(lf_out, ignore_errors=True)
            config = lf_config(
                WORK / f"train_{method}_lf.yaml", model, data, lf_out, method=method, steps=steps, cutoff=cutoff
            )
            wall, mb, _ = timed([lf_cli, "train", str(config)], lf_env(), cwd=WORK)
            runs["llamafactory"].append({**read_training(lf_out), "wall_s": wall, "peak_mb": mb})
            log(f"{method} {i + 1}/{repeats}: ffc {runs['ffc'][-1]['tokens_per_s']:.0f} tok/s, {runs['ffc'][-1]['peak_mb']:.0f} MB; "
                f"LLaMA-Factory {runs['llamafactory'][-1]['tokens_per_s']:.0f} tok/s, {runs['llamafactory'][-1]['peak_mb']:.0f} MB")  # fmt: skip
        out[method] = summarize(runs)
    if not packed:
        return out
    # ffc with packing, for the record
    spec = ffc_spec(WORK / "train_packed.yaml", model, data, method="lora", steps=steps, cutoff=cutoff, packing=True)
    run_dir = WORK / "ffc_packed"
    shutil.rmtree(run_dir, ignore_errors=True)
    subprocess.run(FFC + ["build", str(spec), "-o", str(run_dir)], check=True, env=ENV, capture_output=True)
    wall, mb, _ = timed([PY, "train.py"], ENV, cwd=run_dir)
    out["lora_packed_ffc"] = {**read_training(run_dir / "output"), "wall_s": wall, "peak_mb": mb}
    log(f"lora packed: ffc {out['lora_packed_ffc']['tokens_per_s']:.0f} tok/s")
    return out


def summarize(runs: dict) -> dict:
    def median(tool, key):
        return statistics.median(r[key] for r in runs[tool])

    result = {
        tool: {key: median(tool, key) for key in ("wall_s", "train_runtime_s", "tokens", "tokens_per_s", "peak_mb")}
        for tool in runs
    }
    result["tokens_per_s_ratio"] = result["ffc"]["tokens_per_s"] / result["llamafactory"]["tokens_per_s"]
    result["peak_mb_ratio"] = result["ffc"]["peak_mb"] / result["llamafactory"]["peak_mb"]
    result["losses"] = {tool: runs[tool][0]["losses"] for tool in runs}
    a, b = result["losses"]["ffc"], result["losses"]["llamafactory"]
    result["mean_abs_loss_difference"] = sum(abs(x - y) for x, y in zip(a, b)) / max(1, min(len(a), len(b)))
    result["max_abs_loss_difference"] = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
    return result


def headline(results: dict) -> dict:
    """The four ratios of issue 16 and the loss-curve agreement, from the parts measured so far."""
    out = {}
    if "startup" in results:
        out["startup_ratio"] = results["startup"]["ratio_median"]
    if "data" in results:
        out["data_speed_ratio"] = results["data"]["rows_per_s"]["ratio_median"]
    big = results.get("training_qwen_vocab", {}).get("lora")
    if big:
        out["train_speed_ratio"] = big["tokens_per_s_ratio"]
        out["train_memory_ratio"] = big["peak_mb_ratio"]
        out["loss_agreement"] = {
            "mean_abs_loss_difference": big["mean_abs_loss_difference"],
            "max_abs_loss_difference": big["max_abs_loss_difference"],
            "steps": min(len(v) for v in big["losses"].values()),
        }
    return out


# -- report ------------------------------------------------------------------------------------------------


def report(results: dict) -> str:
    s, d, t = results["startup"], results["data"], results["training"]
    lines = [
        "# ffc vs LLaMA-Factory 0.9.5",
        "",
        f"Machine: {results['machine']}. Medians of alternating runs; ratio = LLaMA-Factory time / ffc time, or ffc rate / LLaMA-Factory rate.",
        "Measured with: " + "; ".join(f"{part}: `{cmd}`" for part, cmd in results.get("commands", {}).items()) + ".",
        "",
        "| measure | ffc | LLaMA-Factory | ratio (median of pairs) |",
        "|---|---:|---:|---:|",
        f"| time to a ready run (s) | {s['ffc']:.2f} (`ffc build`) | {s['llamafactory']:.2f} (start-up to training; `version` alone {s['llamafactory_version_floor']:.2f}) | {s['ratio_median']:.1f}x faster |",
        f"| data preparation, {d['rows']} rows (rows/s; both tools' defaults, ffc: {d['workers']} processes) | {d['rows_per_s']['ffc']:.0f} | {d['rows_per_s']['llamafactory']:.0f} | {d['rows_per_s']['ratio_median']:.2f}x |",
        f"| data preparation, LLaMA-Factory with preprocessing_num_workers: {d['workers']} (rows/s) | | {d['rows_per_s']['llamafactory_workers']:.0f} | {d['rows_per_s']['ratio_workers_median']:.2f}x |",
        f"| the Rust tokenizer alone on the same rendered texts, all cores (rows/s; the ceiling of any pipeline here) | {d['rows_per_s']['tokenizer_alone']:.0f} | | {d['rows_per_s']['tokenizer_alone'] / d['rows_per_s']['llamafactory']:.2f}x |",
        f"| data preparation peak memory, PSS summed over worker processes (MB) | {d['peak_mb']['ffc']:.0f} | {d['peak_mb']['llamafactory']:.0f} ({d['peak_mb']['llamafactory_workers']:.0f} with workers) | |",
    ]
    for method in ("lora", "full"):
        r = t[method]
        lines += [
            f"| {method} SFT: trained tokens/s | {r['ffc']['tokens_per_s']:.0f} | {r['llamafactory']['tokens_per_s']:.0f} | {r['tokens_per_s_ratio']:.2f}x |",
            f"| {method} SFT: train runtime / process wall (s) | {r['ffc']['train_runtime_s']:.1f} / {r['ffc']['wall_s']:.1f} | {r['llamafactory']['train_runtime_s']:.1f} / {r['llamafactory']['wall_s']:.1f} | |",
            f"| {method} SFT: peak memory (MB) | {r['ffc']['peak_mb']:.0f} | {r['llamafactory']['peak_mb']:.0f} | {r['peak_mb_ratio']:.2f} |",
            f"| {method} SFT: mean abs. loss difference per step | {r['mean_abs_loss_difference']:.3f} | | |",
        ]
    big = results.get("training_qwen_vocab", {}).get("lora")
    if big:
        cutoff = results["training_qwen_vocab"]["cutoff"]
        lines += [
            f"| 151,936-token vocabulary (Qwen2.5-shaped, cutoff {cutoff}), LoRA SFT: trained tokens/s | {big['ffc']['tokens_per_s']:.0f} | {big['llamafactory']['tokens_per_s']:.0f} | {big['tokens_per_s_ratio']:.2f}x |",
            f"| 151,936-token vocabulary, LoRA SFT: peak memory (MB) | {big['ffc']['peak_mb']:.0f} | {big['llamafactory']['peak_mb']:.0f} | {big['peak_mb_ratio']:.2f} |",
            f"| 151,936-token vocabulary, LoRA SFT: mean / max abs. loss difference per step | {big['mean_abs_loss_difference']:.3f} / {big['max_abs_loss_difference']:.3f} | | |",
        ]
    p = t["lora_packed_ffc"]
    lines += [
        f"| LoRA SFT with packing (ffc only): trained tokens/s | {p['tokens_per_s']:.0f} | | {p['tokens_per_s'] / t['lora']['llamafactory']['tokens_per_s']:.2f}x LLaMA-Factory unpacked |",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, method in zip(axes, ("lora", "full")):
        for tool, losses in results["training"][method]["losses"].items():
            ax.plot(range(1, len(losses) + 1), losses, label=tool)
        ax.set(title=f"{method} SFT", xlabel="step", ylabel="loss")
        ax.legend()
    fig.savefig(path, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5, help="start-up runs per tool")
    parser.add_argument("--data-repeats", type=int, default=3)
    parser.add_argument("--train-repeats", type=int, default=1)
    parser.add_argument("--big-cutoff", type=int, default=1024, help="cutoff of the realistic-vocabulary run")
    parser.add_argument(
        "--only",
        choices=["startup", "data", "training", "vocab"],
        help="re-measure one part; keep the others' last results",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where comparison.json/.md go (a trial run: elsewhere)"
    )
    parser.add_argument(
        "--report", action="store_true", help="rewrite the report from the last results, measuring nothing"
    )
    args = parser.parse_args()
    results_dir = args.results
    if args.report:
        results = json.loads((results_dir / "comparison.json").read_text())
        (results_dir / "comparison.md").write_text(report(results))
        return print(report(results))
    if not DEMO.exists():
        sys.exit(f"{DEMO} not found: the benchmark reads LLaMA-Factory's demo data from ../shared")
    random.seed(0)
    WORK.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    setup_llamafactory()
    model = WORK / "model"
    make_model(model)
    previous = results_dir / "comparison.json"
    results = json.loads(previous.read_text()) if args.only and previous.exists() else {}
    results.update(machine=f"{os.cpu_count()} CPU cores, Python {sys.version.split()[0]}")
    command = "python bench/compare_llamafactory.py " + " ".join(sys.argv[1:])
    results.pop("command", None)
    commands = results.setdefault("commands", {})
    for part in ("startup", "data", "training", "vocab"):
        if args.only in (None, part):
            commands[part] = command.strip()
    if args.only in (None, "startup"):
        results["startup"] = startup(model, args.repeats)
    if args.only in (None, "data"):
        results["data"] = data_prep(model, args.rows, args.data_repeats, args.cutoff)
    if args.only in (None, "training"):
        results["training"] = training(model, args.steps, args.cutoff, args.train_repeats)
    if args.only in (None, "vocab"):
        big = WORK / "model_qwen_vocab"
        make_big_vocab_model(big, model)
        vocab_run = training(big, args.steps, args.big_cutoff, args.train_repeats, methods=("lora",), packed=False)
        results["training_qwen_vocab"] = {"cutoff": args.big_cutoff, "shape": QWEN_VOCAB_SHAPE, **vocab_run}
    results.update(headline(results))
    (results_dir / "comparison.json").write_text(json.dumps(results, indent=2) + "\n")
    (results_dir / "comparison.md").write_text(report(results))
    plot(results, results_dir / "loss_curves.png")
    print(report(results))


if __name__ == "__main__":
    main()
