"""Shared fixtures: the real MiniLM encoder and the committed classifier artifact, loaded once per session."""

from __future__ import annotations

import pytest
import torch

from models.classifier import PromptClassifier
from models.encoder import SentenceEncoder


@pytest.fixture(scope="session")
def classifier() -> PromptClassifier:
    torch.set_num_threads(2)
    return PromptClassifier.load()  # models/artifacts/classifier + bundled all-MiniLM-L6-v2 on CPU


@pytest.fixture(scope="session")
def encoder(classifier: PromptClassifier) -> SentenceEncoder:
    return classifier.encoder
