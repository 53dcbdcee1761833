"""Every shipped config (configs/*.yaml) runs the real thing: the MiniLM classifier, the triage policy, models
that declare their capabilities, the learned quality predictor wherever its models are configured; and every
Qwen2.5 profile number is what its stated source and arithmetic give, copied exactly wherever it is used."""

from __future__ import annotations

import re
from pathlib import Path
from statistics import fmean

import pytest
import yaml

from server.app import check_config
from server.config import VLLM_TOOL_FLAGS, Profile, TriageConfig, load_config
from server.load import LoadBoard
from server.policy import POLICIES

CONFIGS = Path(__file__).parents[2] / "configs"
SHIPPED = sorted(CONFIGS.glob("*.yaml"))
PROFILES = {
    name: Profile.model_validate(p)
    for name, p in yaml.safe_load((CONFIGS / "profiles" / "qwen2.5.yaml").read_text()).items()
}


@pytest.fixture(scope="module", params=SHIPPED, ids=lambda p: p.name)
def shipped(request: pytest.FixtureRequest) -> TriageConfig:
    return load_config(request.param)


def test_there_is_something_to_check() -> None:
    assert {p.name for p in SHIPPED} >= {"demo.yaml", "single-gpu.yaml", "routerdc-7.yaml"}


def test_runs_the_minilm_classifier_and_the_triage_policy(shipped: TriageConfig) -> None:
    check_config(shipped)  # what `triage serve` checks before it starts anything
    assert shipped.classifier.kind == "minilm"
    assert shipped.policy.name == "triage"
    policy = POLICIES[shipped.policy.name](shipped.models, LoadBoard(), shipped.policy)
    if shipped.policy.quality_predictor is not None:  # the predictor loads and knows every mapped model
        columns = policy.learned.columns  # type: ignore[attr-defined]
        assert [c is not None for c in columns] == [m.profile.predictor_model is not None for m in shipped.models]


def test_models_declare_capabilities_and_launched_vllm_serves_tool_calls(shipped: TriageConfig) -> None:
    for model in shipped.models:
        assert model.capabilities, f"{model.name} declares no capabilities"
        if model.launch is not None and "tools" in model.capabilities:
            args = model.launch.extra_args
            assert all(flag in args for flag in VLLM_TOOL_FLAGS) and "hermes" in args  # Qwen2.5's tool-call format


def test_the_learned_predictor_is_used_wherever_the_models_have_one(shipped: TriageConfig) -> None:
    mapped = [m.name for m in shipped.models if m.profile.predictor_model is not None]
    assert bool(mapped) == (shipped.policy.quality_predictor is not None)


def test_profiles_are_copied_exactly(shipped: TriageConfig) -> None:
    for model in shipped.models:
        if not any("[Q25" in text for text in model.profile.sources.values()):
            continue
        copied = [name for name, p in PROFILES.items() if p.sources == model.profile.sources]
        assert copied, f"{model.name}: sources match no profile in configs/profiles/qwen2.5.yaml"
        original = PROFILES[copied[0]]
        assert model.profile.quality == original.quality, model.name
        assert model.profile.quality_default == original.quality_default, model.name


# What each number is, from the published tables: [Q25] Qwen2.5 Technical Report (arXiv:2412.15115), [Q25C]
# Qwen2.5-Coder Technical Report (arXiv:2409.12186). (category, value as published arithmetic, digits kept).
MT_BENCH_7B, IFEVAL_7B, MMLU_REDUX_7B = 8.75 / 10, 71.2 / 100, 75.4 / 100
DERIVED: dict[str, list[tuple[str, float, int]]] = {
    "qwen2.5-coder-7b-instruct": [
        ("code", fmean([88.4, 83.5]) / 100, 2),  # HumanEval, MBPP
        ("math", fmean([66.8, 86.7]) / 100, 2),  # MATH, GSM8K
        ("reasoning", fmean([68.7, 45.6]) / 100, 2),  # MMLU, MMLU-Pro
        ("creative_writing", 0.78 * MT_BENCH_7B, 2),
        ("summarization", fmean([0.78 * MT_BENCH_7B, 58.6 / 100]), 2),  # with the coder's IFEval
        ("extraction", 58.6 / 100, 2),  # IFEval
        ("translation_multilingual", 0.8 * round(MMLU_REDUX_7B * 0.93, 2), 2),
        ("roleplay_chat", 0.7 * MT_BENCH_7B, 2),
        ("general_qa", 68.7 / 100, 2),  # MMLU
        ("brainstorming", 0.75 * MT_BENCH_7B, 2),
        ("classification", 68.7 / 100, 2),
    ],
    "qwen2.5-7b-instruct": [
        ("code", fmean([84.8, 79.2]) / 100, 3),
        ("math", fmean([75.5, 91.6]) / 100, 3),
        ("reasoning", fmean([75.4, 56.3]) / 100, 3),
        ("creative_writing", MT_BENCH_7B, 3),
        ("summarization", fmean([MT_BENCH_7B, IFEVAL_7B]), 3),
        ("extraction", IFEVAL_7B, 3),
        ("translation_multilingual", MMLU_REDUX_7B * 0.93, 2),
        ("roleplay_chat", MT_BENCH_7B, 3),
        ("general_qa", MMLU_REDUX_7B, 3),
        ("brainstorming", MT_BENCH_7B, 3),
        ("classification", MMLU_REDUX_7B, 3),
    ],
    "qwen2.5-1.5b-instruct": [
        ("code", fmean([61.6, 63.2]) / 100, 3),
        ("math", fmean([55.2, 73.2]) / 100, 3),
        ("reasoning", fmean([50.7, 32.4]) / 100, 3),
        ("creative_writing", MT_BENCH_7B * 42.5 / 71.2, 2),
        ("summarization", fmean([round(MT_BENCH_7B * 42.5 / 71.2, 2), 42.5 / 100]), 2),
        ("extraction", 42.5 / 100, 3),
        ("translation_multilingual", 50.7 / 100 * 0.9, 2),
        ("roleplay_chat", MT_BENCH_7B * 42.5 / 71.2, 2),
        ("general_qa", 50.7 / 100, 3),
        ("brainstorming", MT_BENCH_7B * 42.5 / 71.2, 2),
        ("classification", 50.7 / 100, 3),
    ],
}


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_every_quality_number_is_its_sources_arithmetic(name: str) -> None:
    profile = PROFILES[name]
    assert set(profile.quality) == {category for category, _, _ in DERIVED[name]} == set(profile.sources)
    for category, value, digits in DERIVED[name]:
        expected = round(value + 1e-9, digits)  # half up, as written by hand
        assert profile.quality[category] == pytest.approx(expected), f"{name}.{category}: {value:.4f}"
        stated = re.search(r"(?:-> mean|=) (0\.\d+)", profile.sources[category])  # the result the text gives
        if stated is not None:
            assert float(stated.group(1)) == pytest.approx(expected), profile.sources[category]
