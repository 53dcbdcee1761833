"""Anthropic Messages API wire models: what `POST /v1/messages` and `/v1/messages/count_tokens` accept
(pydantic and stdlib only).

Validates the fields Triage translates and allows every other field (`thinking`, `cache_control`,
`service_tier`, ... are logged and dropped by the adapter). Content blocks other than text, image, tool_use and
tool_result (thinking, documents, server tools' blocks) are accepted and skipped. Nothing here knows how a
request is translated or routed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from ..protocol import RouteOptions


class AnthropicBase(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class AnthropicTextBlock(AnthropicBase):
    type: Literal["text"]
    text: str


class AnthropicImageSource(AnthropicBase):
    type: Literal["base64", "url"]
    media_type: str | None = Field(None, description="base64: image/png, image/jpeg, image/gif or image/webp.")
    data: str | None = None
    url: str | None = None


class AnthropicImageBlock(AnthropicBase):
    type: Literal["image"]
    source: AnthropicImageSource


class AnthropicToolUseBlock(AnthropicBase):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class AnthropicToolResultBlock(AnthropicBase):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[AnthropicTextBlock | AnthropicImageBlock] | None = None
    is_error: bool | None = None


class AnthropicOtherBlock(AnthropicBase):
    """thinking, redacted_thinking, document, server tools' blocks: accepted and skipped."""

    type: str


def _block_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("text", "image", "tool_use", "tool_result") else "other"


ContentBlock = Annotated[
    Annotated[AnthropicTextBlock, Tag("text")]
    | Annotated[AnthropicImageBlock, Tag("image")]
    | Annotated[AnthropicToolUseBlock, Tag("tool_use")]
    | Annotated[AnthropicToolResultBlock, Tag("tool_result")]
    | Annotated[AnthropicOtherBlock, Tag("other")],
    Discriminator(_block_kind),
]


class AnthropicMessage(AnthropicBase):
    role: Literal["user", "assistant", "system"] = Field(description="system: mid-conversation instructions.")
    content: str | list[ContentBlock]


class AnthropicTool(AnthropicBase):
    """A client tool (no `type`, or `custom`) is translated; server tools (`web_search_...`, `bash_...`) are
    dropped."""

    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class AnthropicToolChoice(AnthropicBase):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class AnthropicMetadata(AnthropicBase):
    user_id: str | None = None


class AnthropicOutputFormat(AnthropicBase):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON schema the answer must follow.")


class AnthropicOutputConfig(AnthropicBase):
    """Structured outputs: `format` is translated to a JSON-schema `response_format`; `effort` is dropped."""

    format: AnthropicOutputFormat | None = None


class CountTokensRequest(AnthropicBase):
    model: str = Field(description="A configured model name, an alias (e.g. claude-*), or 'auto'.")
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[AnthropicTextBlock] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    metadata: AnthropicMetadata | None = None
    output_config: AnthropicOutputConfig | None = None
    route: RouteOptions | None = None


class TokenCount(BaseModel):
    input_tokens: int
