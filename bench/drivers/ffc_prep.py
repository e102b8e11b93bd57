"""Data preparation with ffc's runtime: load, convert, render with the template, tokenise. Prints JSON.

Also times the Rust tokenizer alone on the same rendered texts (all cores): a floor that no pipeline
tokenising these conversations, ffc's or LLaMA-Factory's, can go below on this machine."""

import json
import sys
import time
from pathlib import Path

from transformers import AutoTokenizer

from ffc.runtime.chat.templates import TEMPLATES
from ffc.runtime.data.loading import load_datasets, load_registry, tokenize_dataset
from ffc.runtime.data.tokenize import ConversationEncoder, MaskOptions

model, data_dir, template, cutoff = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
workers = int(sys.argv[5]) if len(sys.argv) > 5 else None  # data.preprocessing_num_workers (default: per core)
tokenizer = AutoTokenizer.from_pretrained(model)
start = time.perf_counter()
raw = load_datasets(data_dir, load_registry(data_dir / "dataset_info.json"), ["bench_alpaca"], "conversations")
encoder = ConversationEncoder(tokenizer, TEMPLATES[template], MaskOptions(cutoff_len=cutoff))
data, stats = tokenize_dataset(raw, encoder, num_proc=workers)
seconds = time.perf_counter() - start

texts = [encoder.render(m, s, t).text for m, s, t in zip(raw["messages"], raw["system"], raw["tools"])]
start = time.perf_counter()
for i in range(0, len(texts), 1000):
    tokenizer.backend_tokenizer.encode_batch(texts[i : i + 1000], add_special_tokens=False)
tokenizer_seconds = time.perf_counter() - start
print(
    json.dumps(
        {"seconds": seconds, "rows": stats.samples, "tokens": stats.tokens, "tokenizer_seconds": tokenizer_seconds}
    )
)
