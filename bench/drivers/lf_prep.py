"""Data preparation with LLaMA-Factory's own pipeline (run with its virtual environment). Prints JSON."""

import json
import sys
import time

from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer

model, data_dir, template, cutoff, output = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
workers = int(sys.argv[6]) if len(sys.argv) > 6 else None  # preprocessing_num_workers (its default: none)
model_args, data_args, training_args, _, _ = get_train_args(
    dict(model_name_or_path=model, stage="sft", do_train=True, finetuning_type="lora", dataset="bench_alpaca",
         dataset_dir=data_dir, template=template, cutoff_len=cutoff, overwrite_cache=True, output_dir=output,
         report_to="none", preprocessing_num_workers=workers)
)  # fmt: skip
tokenizer_module = load_tokenizer(model_args)
template_obj = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
start = time.perf_counter()
module = get_dataset(template_obj, model_args, data_args, training_args, stage="sft", **tokenizer_module)
seconds = time.perf_counter() - start
train = module["train_dataset"]
print(json.dumps({"seconds": seconds, "rows": len(train), "tokens": sum(len(x) for x in train["input_ids"])}))
