import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference" / "tokenizers"
DEMO_DATA = SHARED / "data" / "llamafactory-demo"

# Keep every cache inside a temp dir: tests must not touch the user's HF cache or reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def needs_shared(path: Path):
    return pytest.mark.skipif(
        not path.exists(), reason=f"{path} is absent: clone the project with ../shared beside it to run this test"
    )


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    for var in ("HF_HOME", "XDG_CACHE_HOME", "TORCH_EXTENSIONS_DIR", "HF_DATASETS_CACHE", "MPLCONFIGDIR"):
        os.environ.setdefault(var, str(cache / var.lower()))
    yield


@pytest.fixture(scope="session")
def python():
    return sys.executable
