"""Model hubs other than Hugging Face's: ModelScope (LLaMA-Factory's ``use_modelscope_hub``)."""

from __future__ import annotations

import sys
from typing import Optional

from .errors import EXIT_USER_ERROR


def from_modelscope(model_id: str, revision: str = "main", cache_dir: Optional[str] = None) -> str:
    """Download ``model_id`` from ModelScope (once; later calls find it in the cache) and return the local
    directory, which transformers then loads like any other. ModelScope names the default branch ``master``.

    Generated scripts call it where they name their model, before ``errors.run`` is in charge: a missing
    package ends the script here the way ``run`` ends one (one message, exit status 2)."""
    try:
        from modelscope import snapshot_download
    except ImportError:
        print(
            f"error: model.use_modelscope_hub: loading {model_id} from ModelScope needs the modelscope package: "
            "pip install modelscope (or download the model yourself and set model_name_or_path to its folder)",
            file=sys.stderr,
        )
        sys.exit(EXIT_USER_ERROR)
    return snapshot_download(model_id, revision="master" if revision == "main" else revision, cache_dir=cache_dir)
