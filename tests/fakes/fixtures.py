"""Session-scoped pytest fixtures for the tiny local models.

Use from any test module or conftest:  `from tests.fakes.fixtures import tiny_llama_path, tiny_encoder_path`
(importing the fixture functions into a module makes pytest see them there).
"""
from __future__ import annotations

import pytest

from tests.fakes.tiny_models import build_tiny_encoder, build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory) -> str:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), seed=0)


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory) -> str:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"), seed=0)
