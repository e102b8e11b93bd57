"""Scale-out on CPU: generated launch files, DeepSpeed/accelerate config validation, and real
multi-process runs (torchrun with gloo): DDP, DeepSpeed ZeRO-2/3 and ZeRO-3 with CPU offload."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ffc.compiler.build import build_files
from ffc.compiler.loader import load_spec
from ffc.compiler.writer import write_run

from .conftest import MINIMAL_SPEC, ROOT, free_port

HOSTILE = "eth0; echo pwned > /tmp/ffc-pwned $(id)"


def test_launch_files_are_safe_shell(write_spec, tmp_path):
    spec = write_spec(
        MINIMAL_SPEC
        + "distributed:\n  backend: ddp\n  num_processes: 16\n  num_machines: 2\n  main_process_ip: 10.1.2.3\n  slurm: {partition: gpu}\n"
    )
    run = tmp_path / "run"
    write_run(run, build_files(load_spec(spec, [f"distributed.env.NCCL_SOCKET_IFNAME={HOSTILE}"]), run)[1])
    for name in ("launch.sh", "slurm.sbatch"):
        assert subprocess.run(["bash", "-n", str(run / name)]).returncode == 0, name
        assert os.access(run / name, os.X_OK)
    launch = (run / "launch.sh").read_text()
    assert '--machine_rank "$MACHINE_RANK"' in launch and "SLURM_NODEID" in launch
    exports = "\n".join(line for line in launch.splitlines() if line.startswith("export "))
    shown = subprocess.run(
        ["bash", "-c", exports + '\nprintf %s "$NCCL_SOCKET_IFNAME"'], capture_output=True, text=True
    )
    assert shown.stdout == HOSTILE and not Path("/tmp/ffc-pwned").exists()
    sbatch = (run / "slurm.sbatch").read_text()
    assert "#SBATCH --nodes=2" in sbatch and "#SBATCH --gpus-per-node=8" in sbatch and "srun" in sbatch


def test_torchrun_launcher(write_spec, tmp_path):
    spec = write_spec(MINIMAL_SPEC + "distributed: {backend: ddp, num_processes: 4, launcher: torchrun}\n")
    launch = build_files(load_spec(spec), tmp_path / "run")[1]["launch.sh"].decode()
    assert "torchrun" in launch and "--nproc_per_node 4" in launch and "accelerate launch" not in launch


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            [
                "distributed.backend=ddp",
                "distributed.num_processes=3",
                "distributed.num_machines=2",
                "distributed.main_process_ip=h",
            ],
            "do not split evenly",
        ),
        (["distributed.backend=ddp", "distributed.num_processes=1"], "ddp with one process"),
        (
            ["distributed.backend=fsdp", "distributed.num_processes=2", "model.quantization_bit=4"],
            "FSDP with bitsandbytes",
        ),
        (
            ["distributed.backend=deepspeed", "distributed.deepspeed.zero_stage=3", "model.quantization_bit=4"],
            "ZeRO-3 cannot shard",
        ),
        (
            ["distributed.backend=deepspeed", "distributed.deepspeed.offload_param=true"],
            "parameter offload needs zero_stage: 3",
        ),
        (["distributed.slurm.partition=gpu;rm"], "distributed.slurm.partition"),
    ],
)
def test_incompatible_distributed_choices(write_spec, overrides, message):
    from ffc.compiler.loader import SpecError

    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(), overrides)


@pytest.mark.parametrize("stage,offload", [(0, False), (1, False), (2, False), (2, True), (3, False), (3, True)])
def test_deepspeed_config_passes_deepspeed_validation(write_spec, tmp_path, stage, offload):
    """The generated ds_config.json, with its "auto" values filled from the Trainer's arguments as
    transformers does at launch, is accepted by DeepSpeed's own config parser."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    overrides = [
        "distributed.backend=deepspeed",
        "distributed.num_processes=2",
        f"distributed.deepspeed.zero_stage={stage}",
        "training.bf16=true",
    ]
    if offload:
        overrides += ["distributed.deepspeed.offload_optimizer=true"] + (
            ["distributed.deepspeed.offload_param=true"] if stage == 3 else []
        )
    files = build_files(load_spec(write_spec(), overrides), tmp_path / "run")[1]
    config = json.loads(files["ds_config.json"])
    assert config["zero_optimization"]["stage"] == stage
    args = TrainingArguments(
        output_dir=str(tmp_path / "o"),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=8,
        bf16=True,
        use_cpu=True,
    )
    hf = HfTrainerDeepSpeedConfig(config)
    hf.trainer_config_process(args)
    filled = hf.config
    for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"):
        if filled["zero_optimization"].get(key) == "auto":
            filled["zero_optimization"][key] = 1_000_000  # transformers fills these from the model's hidden size
    parsed = DeepSpeedConfig(filled, mpu=None)
    assert parsed.zero_optimization_stage == stage and parsed.bfloat16_config.enabled
    assert parsed.gradient_clipping == 1.0 and parsed.gradient_accumulation_steps == 8
    if stage == 3:
        assert parsed.zero_config.gather_16bit_weights_on_model_save


# -- multi-process runs ----------------------------------------------------------------------------------

RUN_SPEC = """\
name: dist
model: {{model_name_or_path: {model}}}
method: {{stage: sft, finetuning_type: full}}
data: {{dataset: [demo_alpaca], dataset_dir: {data}, template: chatml, cutoff_len: 64, max_samples: 64}}
training:
  max_steps: {steps}
  per_device_train_batch_size: {batch}
  gradient_accumulation_steps: 1
  learning_rate: {lr}
  optim: {optim}
  max_grad_norm: 0.0
  lr_scheduler_type: constant
  logging_steps: 1
  save_strategy: "no"
  gradient_checkpointing: false
logging: {{report_to: [none], plot_loss: false}}
"""


def _run(demo, tmp_path, name, *, processes, batch, steps=1, lr=1.0, optim="sgd", overrides=(), env=None):
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        RUN_SPEC.format(model=demo / "tiny-model", data=demo / "data", steps=steps, batch=batch, lr=lr, optim=optim)
    )
    run = tmp_path / name
    args = [sys.executable, "-m", "ffc.compiler", "build", str(spec), "-o", str(run)]
    for item in overrides:
        args += ["--set", item]
    subprocess.run(args, check=True, capture_output=True)
    torchrun = [
        str(Path(sys.executable).with_name("torchrun")),
        "--nproc_per_node",
        str(processes),
        "--master_port",
        str(free_port()),
    ]
    command = torchrun + ["train.py"] if processes > 1 else [sys.executable, "train.py"]
    result = subprocess.run(
        command, cwd=run, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    return run


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process_with_twice_the_batch(demo, tmp_path):
    """One SGD step (lr 1, no clipping): the weight change is the gradient. 2 processes x batch 2 == 1 x batch 4."""
    base = _weights(demo / "tiny-model")
    single = _weights(_run(demo, tmp_path, "single", processes=1, batch=4) / "output")
    ddp = _weights(
        _run(
            demo,
            tmp_path,
            "ddp",
            processes=2,
            batch=2,
            overrides=["distributed.backend=ddp", "distributed.num_processes=2"],
        )
        / "output"
    )
    compared = 0
    for name, before in base.items():
        step_single, step_ddp = single[name] - before, ddp[name] - before
        assert torch.allclose(step_ddp, step_single, rtol=1e-3, atol=1e-6), name
        compared += step_single.abs().sum().item() > 0
    assert compared > 10  # the step really moved the weights


@pytest.mark.slow
@pytest.mark.parametrize(
    "zero,offload",
    [(2, False), (3, False), (3, True)],
    ids=["zero2", "zero3", "zero3-offload"],
)
def test_deepspeed_trains_on_cpu_and_saves_a_normal_model(demo, tmp_path, zero, offload):
    from transformers import AutoModelForCausalLM

    overrides = [
        "distributed.backend=deepspeed",
        "distributed.num_processes=2",
        f"distributed.deepspeed.zero_stage={zero}",
    ]
    if offload:
        overrides += ["distributed.deepspeed.offload_optimizer=true", "distributed.deepspeed.offload_param=true"]
    # DeepSpeed compiles its CPU Adam for offload on first use; keep the build between test runs.
    env = {"TORCH_EXTENSIONS_DIR": str(ROOT / ".cache" / "torch_extensions")}
    run = _run(
        demo,
        tmp_path,
        f"zero{zero}",
        processes=2,
        batch=4,
        steps=4,
        lr=1e-3,
        optim="adamw_torch",
        overrides=overrides,
        env=env,
    )
    log = [json.loads(line) for line in (run / "output" / "trainer_log.jsonl").read_text().splitlines()]
    assert len([entry for entry in log if "loss" in entry]) == 4
    model = AutoModelForCausalLM.from_pretrained(run / "output")  # ZeRO-3 saved gathered 16-bit weights
    reference = AutoModelForCausalLM.from_pretrained(demo / "tiny-model")
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    moved = sum(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert moved > 10


def test_unset_num_processes_means_every_visible_gpu(write_spec, tmp_path):
    """As in LLaMA-Factory: a backend without num_processes runs one process per GPU that launch.sh finds."""
    from ffc.compiler.loader import SpecError

    spec = write_spec(MINIMAL_SPEC + "distributed:\n  backend: ddp\n")
    resolved, files = build_files(load_spec(spec), tmp_path / "run")
    assert resolved.spec.distributed.num_processes is None
    launch = files["launch.sh"].decode()
    assert '--num_processes "$((NPROC_PER_NODE * NUM_MACHINES))"' in launch
    # The count launch.sh computes: NPROC_PER_NODE wins, else torch's visible GPUs (at least one).
    snippet = next(line for line in launch.splitlines() if line.startswith("NPROC_PER_NODE="))
    shown = subprocess.run(["bash", "-c", f"{snippet}; echo $NPROC_PER_NODE"], capture_output=True, text=True,
                           env={"PATH": os.environ["PATH"], "NPROC_PER_NODE": "3"})  # fmt: skip
    assert shown.stdout.strip() == "3"
    assert "one process per visible GPU" in files["README.md"].decode()
    resolved, _ = build_files(load_spec(write_spec(MINIMAL_SPEC)), tmp_path / "run1")
    assert resolved.spec.distributed.num_processes == 1  # backend none: one process
    slurm = MINIMAL_SPEC + "distributed:\n  backend: ddp\n  slurm:\n    partition: gpu\n"
    with pytest.raises(SpecError, match="set distributed.num_processes or distributed.slurm.gpus_per_node"):
        load_spec(write_spec(slurm))
    resolved, _ = build_files(load_spec(write_spec(slurm + "    gpus_per_node: 4\n")), tmp_path / "run2")
    assert resolved.spec.distributed.num_processes == 4
