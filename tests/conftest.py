import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/model_factory.py

from model_factory import build_stopping_model_dir, build_tiny_model_dir  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A packed random model with a speaker encoder and 3 preset voices (built once per session)."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_prompt_model_dir(tmp_path_factory):
    """A packed random model without a speaker encoder (clones by prompt continuation, like the release)."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_prompt_model"), with_speaker=False, n_voices=0)


@pytest.fixture(scope="session")
def stopping_model_dir(tmp_path_factory):
    """A packed model that speaks ``model_factory.STOP_FRAMES`` frames per sentence, then stops by its stop rule."""
    return build_stopping_model_dir(tmp_path_factory.mktemp("stopping_model"))
