"""Model hubs other than Hugging Face's, as LLaMA-Factory reaches them: ModelScope (``use_modelscope_hub``)
and Modelers (``use_openmind_hub``). Each downloads the model once into its cache and returns the folder,
which transformers then loads like any other."""

from __future__ import annotations

import importlib
import sys
from typing import Optional

from .errors import EXIT_USER_ERROR, UserError

# hub -> (module with snapshot_download, pip package, spec option, the hub's name for the default branch)
HUBS = {
    "modelscope": ("modelscope", "modelscope", "model.use_modelscope_hub", "master"),
    "openmind": ("openmind.utils.hub", "openmind", "model.use_openmind_hub", "main"),
}


def download_model(hub: str, model_id: str, revision: str = "main", cache_dir: Optional[str] = None) -> str:
    """``model_id`` from ``hub`` (a key of HUBS) -> its local folder.

    Generated scripts call it where they name their model, before ``errors.run`` is in charge: a missing
    package ends the script here the way ``run`` ends one (one message, exit status 2)."""
    module, package, option, default_branch = HUBS[hub]
    try:
        snapshot_download = importlib.import_module(module).snapshot_download
    except ImportError:
        print(
            f"error: {option}: loading {model_id} from {hub} needs the {package} package: pip install {package} "
            "(or download the model yourself and set model_name_or_path to its folder)",
            file=sys.stderr,
        )
        sys.exit(EXIT_USER_ERROR)
    return snapshot_download(model_id, revision=default_branch if revision == "main" else revision, cache_dir=cache_dir)


# hub -> (module and class whose ``load`` reads a dataset, pip package): LLaMA-Factory's loaders for
# dataset_info.json's ms_hub_url and om_hub_url entries.
HUB_DATASETS = {
    "modelscope": ("modelscope", "MsDataset", "load", "modelscope"),
    "openmind": ("openmind", "OmDataset", "load_dataset", "openmind"),
}


def load_hub_dataset(
    hub: str,
    dataset_id: str,
    subset: Optional[str],
    folder: Optional[str],
    split: str,
    streaming: bool,
    cache_dir: Optional[str],
):
    """A dataset from ModelScope or Modelers as a ``datasets`` Dataset (or IterableDataset when streaming)."""
    module, cls, method, package = HUB_DATASETS[hub]
    try:
        loader = getattr(getattr(importlib.import_module(module), cls), method)
    except (ImportError, AttributeError):
        raise UserError(
            f"dataset {dataset_id}: loading it from {hub} needs the {package} package: pip install {package} "
            "(or download it and give dataset_info.json a file_name for it)"
        ) from None
    if hub == "modelscope":
        dataset = loader(
            dataset_name=dataset_id,
            subset_name=subset,
            data_dir=folder,
            split=split,
            cache_dir=cache_dir,
            use_streaming=streaming,
        )
        to_hf = getattr(dataset, "to_hf_dataset", None)  # MsDataset wraps a datasets.Dataset
        return to_hf() if callable(to_hf) else dataset
    return loader(path=dataset_id, name=subset, data_dir=folder, split=split, cache_dir=cache_dir, streaming=streaming)
