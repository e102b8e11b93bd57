"""Model hubs other than Hugging Face's, as LLaMA-Factory reaches them: ModelScope (``use_modelscope_hub``)
and Modelers (``use_openmind_hub``). Each downloads the model once into its cache and returns the folder,
which transformers then loads like any other."""

from __future__ import annotations

import importlib
import sys
from typing import Optional

from .errors import EXIT_USER_ERROR

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
