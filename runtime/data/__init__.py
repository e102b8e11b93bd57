"""Datasets: dataset_info.json, row conversion, tokenisation with loss masks, packing."""
