"""Data preparation with ffc's runtime: load, convert, render with the template, tokenise. Prints JSON."""

import json
import sys
import time
from pathlib import Path

from transformers import AutoTokenizer

from ffc.runtime.chat.templates import TEMPLATES
from ffc.runtime.data.loading import load_datasets, load_registry, tokenize_dataset
from ffc.runtime.data.tokenize import ConversationEncoder, MaskOptions

model, data_dir, template, cutoff = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(model)
start = time.perf_counter()
raw = load_datasets(data_dir, load_registry(data_dir / "dataset_info.json"), ["bench_alpaca"], "sft")
encoder = ConversationEncoder(tokenizer, TEMPLATES[template], MaskOptions(cutoff_len=cutoff))
data, stats = tokenize_dataset(raw, encoder)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rows": stats.samples, "tokens": stats.tokens}))
