"""The one YAML config file: schema, `${ENV}` interpolation and validation with errors that name the bad key.

Loaded once at start-up. Knows nothing about HTTP or routing decisions; the policy reads `ModelConfig.profile`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .protocol import Priority

CATEGORIES: tuple[str, ...] = (
    "code",
    "math",
    "reasoning",
    "creative_writing",
    "summarization",
    "extraction",
    "translation_multilingual",
    "roleplay_chat",
    "general_qa",
    "brainstorming",
    "classification",
)
RESERVED_MODEL_NAMES = frozenset({"auto"})
Capability = Literal["tools", "json_mode", "vision", "embeddings"]
CAPABILITY_NEEDS: dict[str, str] = {  # capability -> what an engine needs to serve it (said in errors)
    "tools": "vLLM needs --enable-auto-tool-choice --tool-call-parser hermes for Qwen2.5 (other models: their parser)",
    "json_mode": "vLLM serves response_format json_object and json_schema by guided decoding, no flag needed",
    "vision": "a vision-language model, e.g. Qwen2.5-VL",
}
VLLM_TOOL_FLAGS = ("--enable-auto-tool-choice", "--tool-call-parser")  # without both vLLM refuses tool_choice auto
MAX_GPU_SHARE = 0.95  # launched engines' gpu_memory_utilization summed per GPU; the rest: CUDA contexts, classifier
SUPERVISOR_OWNED_FLAGS = {  # `vllm serve` flag -> the config key that sets it
    "--host": "launch.host",
    "--port": "launch.port",
    "--served-model-name": "the model's served_name",
    "--gpu-memory-utilization": "launch.gpu_memory_utilization",
    "--max-model-len": "launch.max_model_len",
    "--max-num-seqs": "launch.max_num_seqs",
    "--kv-cache-memory-bytes": "launch.kv_cache_memory_gib",
}


class ConfigError(ValueError):
    """The config file is unreadable or invalid; the message names the key and what to change."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timeouts(Strict):
    """Per-phase upstream timeouts, in seconds."""

    connect_s: float = Field(3.0, gt=0, description="TCP connect to the engine.")
    first_token_s: float = Field(60.0, gt=0, description="Request sent until the first byte of the answer.")
    between_tokens_s: float = Field(60.0, gt=0, description="Longest silence inside a streamed answer.")
    total_s: float = Field(900.0, gt=0, description="Whole request, streamed or not.")


class Profile(Strict):
    """What the policy knows about a model before it has seen any traffic."""

    quality: dict[str, float] = Field(default_factory=dict, description="Category -> quality in [0, 1].")
    quality_default: float = Field(0.5, ge=0, le=1, description="Quality for categories not listed.")
    sources: dict[str, str] = Field(default_factory=dict, description="Where each quality number comes from.")
    prefill_tok_per_s: float = Field(20000.0, gt=0, description="Prompt tokens per second, one request alone.")
    decode_tok_per_s: float = Field(100.0, gt=0, description="Output tokens per second of one sequence alone.")
    base_ttft_ms: float = Field(20.0, ge=0, description="Fixed time to first token, excluding prefill.")
    max_num_seqs: int = Field(256, ge=1, description="Sequences the engine runs at once (continuous batching).")
    peak_decode_tok_per_s: float | None = Field(
        None,
        gt=0,
        description="Output tokens per second of the whole engine with max_num_seqs running; "
        "default: a third of decode_tok_per_s x max_num_seqs (H100 7B calibration).",
    )
    contention_sensitivity: float = Field(
        0.15,
        ge=0,
        description="Step-time stretch per saturated neighbour engine on the same GPU (0.1-0.27 "
        "measured on an H100 with three co-located engines).",
    )
    gpu_s_per_1k_tokens: float = Field(0.0, ge=0, description="Local cost: GPU-seconds per 1k tokens.")
    usd_per_1m_tokens: float = Field(0.0, ge=0, description="Remote cost: dollars per 1M tokens.")
    prefix_caching: bool = Field(
        True,
        description="The engine keeps prompt prefixes cached between requests (vLLM's default; off with "
        "--no-enable-prefix-caching): only then does a conversation's follow-up skip prefilling its history there.",
    )
    predictor_model: str | None = Field(
        None,
        description="This model's name in the learned quality predictor (policy.quality_predictor); "
        "when set, its predicted success probability per prompt replaces `quality`.",
    )

    @field_validator("quality")
    @classmethod
    def _known_categories(cls, value: dict[str, float]) -> dict[str, float]:
        for category, q in value.items():
            if category not in CATEGORIES:
                raise ValueError(f"unknown category '{category}'; use one of {', '.join(CATEGORIES)}")
            if not 0 <= q <= 1:
                raise ValueError(f"quality of '{category}' is {q}; it must lie in [0, 1]")
        return value


class RestartPolicy(Strict):
    """How a crashed engine is restarted: exponential backoff, then give up (it stays unhealthy)."""

    max_restarts: int = Field(5, ge=0, description="Restarts in a row before giving up; 0 never restarts.")
    backoff_initial_s: float = Field(2.0, gt=0, description="Wait before the first restart; doubles each time.")
    backoff_max_s: float = Field(60.0, gt=0, description="Longest wait between restarts.")
    stable_s: float = Field(300.0, gt=0, description="Healthy this long and the restart count starts over.")


class LaunchConfig(Strict):
    """An engine process `triage serve` starts, supervises and stops itself (one per model)."""

    engine: Literal["vllm"] = Field("vllm", description="Engine kind; only vLLM is launched today.")
    model: str = Field(min_length=1, description="Hub id (e.g. Qwen/Qwen2.5-7B-Instruct) or local model folder.")
    host: str = Field("127.0.0.1", description="Engine bind address; keep it local, clients go through Triage.")
    port: int | Literal["auto"] = Field("auto", description="Engine port, or 'auto' for a free one at start.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of the GPU's memory vLLM takes.")
    max_model_len: int | None = Field(None, ge=16, description="Engine context; default: the model's context_length.")
    max_num_seqs: int | None = Field(
        None,
        ge=1,
        description="Engine batch cap; default: profile.max_num_seqs, so the policy's queue model matches the engine.",
    )
    kv_cache_memory_gib: float | None = Field(
        None,
        gt=0,
        description="Fixed KV cache size (vLLM's --kv-cache-memory-bytes). vLLM then skips sizing its cache from the "
        "memory it sees free, so engines whose GPUs hold only fixed-cache engines start at the same time; default: "
        "sized from gpu_memory_utilization, and the engines of a GPU start one after another.",
    )
    extra_args: list[str] = Field(default_factory=list, description="More `vllm serve` flags, passed as given.")
    command: list[str] | None = Field(
        None,
        min_length=1,
        description=("argv prefix before the model; default: this Python with -m vllm.entrypoints.cli.main serve."),
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the engine process.")
    startup_timeout_s: float = Field(
        900.0, gt=0, description="Start until /health answers 200 (downloads and torch.compile count)."
    )
    stop_timeout_s: float = Field(30.0, gt=0, description="SIGTERM to SIGKILL grace at shutdown.")
    restart: RestartPolicy = Field(default_factory=RestartPolicy)

    @field_validator("extra_args")
    @classmethod
    def _no_owned_flags(cls, value: list[str]) -> list[str]:
        for arg in value:
            flag = arg.split("=", 1)[0]
            if flag in SUPERVISOR_OWNED_FLAGS:
                raise ValueError(
                    f"'{flag}' is set by Triage's supervisor; use {SUPERVISOR_OWNED_FLAGS[flag]} instead of extra_args"
                )
        return value

    @property
    def connect_host(self) -> str:
        """Where the router reaches the engine: a wildcard bind address is reached on loopback."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    def endpoint(self, port: int) -> str:
        host = f"[{self.connect_host}]" if ":" in self.connect_host else self.connect_host
        return f"http://{host}:{port}/v1"


class AnswerLimits(Strict):
    """How much of an engine's answer the router will hold, in bytes (a misbehaving engine gets a 502)."""

    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="A whole non-streamed answer.")
    max_event_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="One server-sent event of a streamed answer.")


class ModelConfig(Strict):
    name: str = Field(min_length=1, description="The name clients use; 'auto' is reserved.")
    kind: str = Field(
        "vllm",
        description="Engine kind, a key of server.backends.ENGINE_KINDS: 'vllm' (also SGLang/llama.cpp), 'openai' "
        "(any OpenAI-compatible API) or 'simulated' (Triage's own simulator, started in-process).",
    )
    # `launch` comes before `endpoints` so that the endpoints check can see it (fields validate in order).
    launch: LaunchConfig | None = Field(None, description="Start and supervise the engine process here.")
    endpoints: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description=("OpenAI base URLs, e.g. http://127.0.0.1:8001/v1; derived from `launch` when that is set."),
    )
    served_name: str | None = Field(None, description="Model name the engine expects; defaults to `name`.")
    api_key: str | None = Field(None, description="Bearer key for the engine; use ${ENV_VAR}, never a literal.")
    roles: list[str] = Field(default_factory=list, description="Role tags such as code, chat, fast.")
    capabilities: list[Capability] = Field(
        default_factory=list,
        description="What the engine serves beyond plain text: tools (function calling), json_mode "
        "(response_format), vision (images). Requests that use one only go to models that declare it. embeddings marks "
        "an embedding model, which serves only POST /v1/embeddings.",
    )
    native_apis: list[Literal["responses", "messages"]] = Field(
        default_factory=list,
        description="APIs the engine serves itself besides chat completions ('responses': OpenAI's /v1/responses, "
        "'messages': Anthropic's /v1/messages); requests in them reach this engine untranslated.",
    )
    context_length: int = Field(8192, ge=16)
    output_limit_field: Literal["max_tokens", "max_completion_tokens"] | None = Field(
        None,
        description="The field this model's chat API reads as the output cap. Set: a chat request's max_tokens "
        "and max_completion_tokens (the smaller, if both) reach it under this name only; OpenAI's reasoning models "
        "refuse max_tokens, some OpenAI-compatible servers know only max_tokens, and with model 'auto' the client "
        "cannot know which it gets. Unset: both are relayed as the client wrote them (vLLM reads either).",
    )
    remote: bool = Field(False, description="A remote provider: used only for overflow when policy allows.")
    gpu: str | None = Field(None, description="GPU id the engine runs on; engines sharing one contend.")
    max_in_flight: int = Field(512, ge=1, description="Router-side cap on concurrent requests to this model.")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    limits: AnswerLimits = Field(default_factory=AnswerLimits)
    profile: Profile = Field(default_factory=Profile)
    # Last, so that its check sees the fields it fills gaps from (name, endpoints, gpu, context_length).
    simulated: SerializeAsAny[BaseModel] | None = Field(
        None,
        validate_default=True,
        description="kind: simulated only: the simulated engine's settings (keys of server.sim.spec.SimEngineSpec; "
        "port, gpu and max_model_len default to the model's endpoint, gpu and context_length).",
    )

    @property
    def upstream_name(self) -> str:
        return self.served_name or self.name

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        from .backends import ENGINE_KINDS  # not at the top: backends imports this module

        if value not in ENGINE_KINDS:
            raise ValueError(f"unknown engine kind '{value}'; use one of: {', '.join(ENGINE_KINDS)}")
        return value

    @field_validator("simulated", mode="before")
    @classmethod
    def _kind_settings(cls, value: Any, info: ValidationInfo) -> BaseModel | None:
        """A kind's own block (the key named like the kind), typed by that kind's settings model.

        The kind's module is imported here only when the model names it: `server.sim` loads for simulated models.
        """
        block, kind = str(info.field_name), info.data.get("kind")
        if kind != block:
            if value is not None and kind is not None:  # kind None: it was invalid, and its own error says why
                raise ValueError(f"this block configures kind '{block}'; set kind: {block} or drop it")
            return None
        if "name" not in info.data or "endpoints" not in info.data:
            return None  # the model is invalid already, and those fields' own errors say why
        from .backends import engine_kind  # not at the top: backends imports this module

        settings = engine_kind(block).settings
        if settings is None:
            raise ValueError(f"kind '{kind}' takes no '{block}:' block")
        return settings({**info.data, block: value})

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_MODEL_NAMES:
            raise ValueError(f"'{value}' is reserved for automatic routing; pick another model name")
        return value

    @field_validator("endpoints")
    @classmethod
    def _http_urls(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if "launch" not in info.data:
            return value  # launch itself was invalid; its own error says why
        if info.data.get("kind") is not None:
            from .backends import engine_kind  # not at the top: backends imports this module

            if engine_kind(info.data["kind"]).in_process:
                if value or info.data["launch"] is not None:
                    raise ValueError(f"kind '{info.data['kind']}' is answered inside Triage: drop endpoints and launch")
                return value
        if info.data["launch"] is None and not value:
            raise ValueError("give at least one OpenAI base URL, or a launch block that starts the engine")
        if info.data["launch"] is not None and value:
            raise ValueError("drop endpoints: they are derived from launch (set launch.port to fix the port)")
        for url in value:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"endpoint '{url}' is not an http(s) URL like http://127.0.0.1:8001/v1")
        return [url.rstrip("/") for url in value]

    @model_validator(mode="after")
    def _endpoints_or_launch(self) -> ModelConfig:
        launch = self.launch
        if launch is None:
            return self
        if self.kind != "vllm":
            raise ValueError(f"model '{self.name}': launched engines are vLLM, so kind must be 'vllm'")
        if launch.max_model_len is not None and launch.max_model_len < self.context_length:
            raise ValueError(
                f"model '{self.name}': launch.max_model_len {launch.max_model_len} is below "
                f"context_length {self.context_length}; the router would send requests the engine "
                "refuses. Lower context_length or raise max_model_len"
            )
        flags = {arg.split("=", 1)[0] for arg in launch.extra_args}
        if "--no-enable-prefix-caching" in flags and self.profile.prefix_caching:
            raise ValueError(
                f"model '{self.name}': launch.extra_args turns vLLM's prefix cache off; set "
                "profile.prefix_caching: false so that the policy does not count on it"
            )
        if "tools" in self.capabilities:
            missing = [flag for flag in VLLM_TOOL_FLAGS if flag not in flags]
            if missing:
                raise ValueError(
                    f"model '{self.name}' declares capabilities 'tools' but launch.extra_args lacks "
                    f"{' and '.join(missing)}: add --enable-auto-tool-choice --tool-call-parser hermes (Qwen2.5; "
                    "vLLM refuses tool_choice 'auto' without them), or drop 'tools' from capabilities"
                )
        if launch.port != "auto":
            self.endpoints = [launch.endpoint(launch.port)]  # 'auto': known once the supervisor has started it
        return self

    @property
    def gpu_ids(self) -> list[str]:
        """GPUs this model's engine occupies: `gpu` split on commas ("0,1" for tensor parallel); default 0."""
        return [g.strip() for g in (self.gpu or "0").split(",") if g.strip()]


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Larger request bodies get a 413.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_in_flight: int = Field(4096, ge=1, description="Generation requests open at once, all models together.")
    admission_wait_s: float = Field(0.5, ge=0, le=30, description="Longest wait for a free slot before a 429.")
    max_waiting: int = Field(256, ge=0, description="Requests allowed to wait for a slot; more get a 429 at once.")
    drain_s: float = Field(25.0, gt=0, description="On SIGTERM: time open requests get to finish.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS), e.g. http://localhost:3000, or '*' for "
        "any; none by default.",
    )
    request_deadline_s: float = Field(
        1800.0,
        gt=0,
        description="One deadline per request across all attempts "
        "(fallbacks included) until its first byte; each attempt also has its "
        "model's timeouts.",
    )
    limit_concurrency: int = Field(
        4096,
        ge=1,
        description="Open connections (and requests) at most, counting a new one; a request that would reach it "
        "gets a 503 (Anthropic's 529 on /v1/messages) with Retry-After, and its connection is closed.",
    )
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="An idle kept-alive connection is closed after this.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection must send a request's headers within this of its first byte."
    )
    body_timeout_s: float = Field(60.0, gt=0, description="A request's body must arrive within this of its headers.")
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="Request headers larger than this in total get a 431 and a closed connection."
    )
    metrics_anonymous_loopback: bool = Field(
        False, description="With API keys required, still serve /metrics without a key to clients on loopback."
    )
    feedback_per_minute: int = Field(
        60, ge=1, description="POST /v1/feedback calls per minute per API key (open mode: per client address)."
    )

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "::1", "localhost")


class BreakerConfig(Strict):
    """Per-engine circuit breaker: opens after consecutive failures, probes again after a cool-down."""

    failures: int = Field(5, ge=1, description="Consecutive failed requests that open the breaker.")
    cooldown_s: float = Field(5.0, gt=0, description="First open period; doubles on each failed probe.")
    max_cooldown_s: float = Field(60.0, gt=0, description="Longest open period.")


class AuthConfig(Strict):
    mode: Literal["open", "keys"] | None = Field(
        None,
        description="keys: every /v1 call needs an API key; open: none (local development). "
        "Default: open when bound to loopback, keys otherwise.",
    )
    db: str = Field("triage.db", description="SQLite file holding the key hashes and their usage.")


class PrivacyConfig(Strict):
    enabled: bool = Field(True, description="Scan prompts for secrets and personal data; keep those local.")
    patterns: dict[str, str] = Field(default_factory=dict, description="Extra kind -> regex to detect.")
    max_scan_chars: int = Field(
        200_000, ge=1, description="Characters of text a body may hold to be scanned; a longer one is kept local."
    )
    max_scan_ms: float = Field(
        250.0, gt=0, description="Time a scan may take; a body not scanned in time is kept local (fails closed)."
    )

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern '{kind}' is not a valid regex: {exc}") from None
        return value


class ClassifierConfig(Strict):
    kind: Literal["keyword", "minilm"] = Field("keyword", description="keyword: regex rules; minilm: encoder.")
    artifact: str | None = Field(None, description="Heads artifact dir; default: the one shipped in models/.")
    encoder: str | None = Field(None, description="Local path or hub id of a BERT-family encoder.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    impl: Literal["auto", "eager", "compile", "triton"] = Field(
        "auto", description="Encoder path: auto = Triton kernels on a GPU, PyTorch eager on a CPU."
    )
    batch_window_ms: float = Field(1.0, ge=0, le=50, description="How long a prompt waits for batch-mates.")
    max_batch: int = Field(256, ge=1, description="Prompts encoded in one call at most.")


class PolicyConfig(Strict):
    name: str = Field("triage", description="A key of server.policy.POLICIES (checked at start-up).")
    preset: Priority = Field("balanced", description="Utility weights: a key of server.policy.presets.PRESETS.")
    allow_remote: bool = Field(
        False, description="Whether remote providers may be used at all; false is a ceiling no request can lift."
    )
    explore_share: float = Field(0.02, ge=0, le=0.2, description="Share of decisions that explore (Thompson).")
    store: str | None = Field(
        None, description="SQLite file for the decision audit log and feedback statistics; null: memory only."
    )
    store_prompts: bool = Field(False, description="Keep prompt text in the audit log, not only its hash.")
    quality_predictor: str | None = Field(
        None,
        description="Learned per-model quality predictor: an artifact dir, or 'default' for the one "
        "shipped in models/artifacts/quality. Needs classifier.kind: minilm (embeddings).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="The policy's own settings, checked against its `Options` at start-up."
    )


class ResponsesConfig(Strict):
    """Where `/v1/responses` keeps stored responses (`store: true`) for `previous_response_id`."""

    store: str | None = Field(None, description="SQLite file; null: kept in memory (lost on restart).")
    ttl_s: float = Field(30 * 86400.0, gt=0, description="How long a stored response can be continued from.")
    max_mb: float = Field(64.0, gt=0, description="Stored conversations, all keys together; the oldest go first.")


class TriageConfig(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    models: list[ModelConfig] = Field(min_length=1)
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Model names clients send -> a configured model or 'auto'; keys are globs (fnmatch: "
        "'claude-*'), tried in order after the exact model names.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> TriageConfig:
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise ValueError(f"model name '{model.name}' appears twice; names must be unique")
            seen.add(model.name)
        return self

    @model_validator(mode="after")
    def _aliases_name_models(self) -> TriageConfig:
        names = {m.name for m in self.models} | RESERVED_MODEL_NAMES
        for pattern, target in self.aliases.items():
            if target not in names:
                raise ValueError(
                    f"aliases: '{pattern}' points at '{target}', which is no model; use 'auto' or one of: "
                    f"{', '.join(m.name for m in self.models)}"
                )
        return self

    @model_validator(mode="after")
    def _gpu_shares_fit(self) -> TriageConfig:
        for gpu, shares in gpu_shares(self.models).items():
            total = sum(shares.values())
            if total > MAX_GPU_SHARE + 1e-9:
                parts = " + ".join(f"{name} {share:g}" for name, share in shares.items())
                raise ValueError(
                    f"launched engines on GPU {gpu} ask for {parts} = {total:.2f} of its memory, "
                    f"more than {MAX_GPU_SHARE}; lower their launch.gpu_memory_utilization"
                )
        ports = [m.launch.port for m in self.models if m.launch is not None and m.launch.port != "auto"]
        clash = sorted({p for p in ports if ports.count(p) > 1 or p == self.server.port})
        if clash:
            raise ValueError(f"launch.port {clash[0]} is used twice (engines and server.port need their own)")
        return self

    @model_validator(mode="after")
    def _encoder_models(self) -> TriageConfig:
        for model in self.models:
            if model.kind != "minilm":
                continue
            if self.classifier.kind != "minilm":
                raise ValueError(
                    f"model '{model.name}' (kind: minilm) answers with the classifier's encoder; set classifier.kind: "
                    "minilm"
                )
            if "embeddings" not in model.capabilities:
                raise ValueError(
                    f"model '{model.name}' (kind: minilm) is an embedding model; add capabilities: [embeddings]"
                )
        return self

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


def gpu_shares(models: list[ModelConfig]) -> dict[str, dict[str, float]]:
    """GPU id -> {model: gpu_memory_utilization} for the models Triage launches."""
    shares: dict[str, dict[str, float]] = {}
    for model in models:
        if model.launch is not None:
            for gpu in model.gpu_ids:
                shares.setdefault(gpu, {})[model.name] = model.launch.gpu_memory_utilization
    return shares


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(node: Any, env: Mapping[str, str] | None = None, path: str = "") -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed YAML tree."""
    variables: Mapping[str, str] = os.environ if env is None else env
    if isinstance(node, dict):
        return {k: interpolate_env(v, variables, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_env(v, variables, f"{path}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in variables:
            return variables[var]
        if default is not None:
            return default
        raise ConfigError(
            f"{path}: environment variable {var} is not set (write ${{{var}:-default}} to give a default)"
        )

    return _ENV_REF.sub(substitute, node)


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(data: Any, source: str = "config") -> TriageConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with a 'models' list")
    data = interpolate_env(data)
    try:
        config = TriageConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None
    return config


def load_config(path: str | Path) -> TriageConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(data, str(path))
