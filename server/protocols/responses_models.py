"""OpenAI Responses API wire models: what `POST /v1/responses` accepts (pydantic and stdlib only).

Validates the fields Triage translates and allows every other field (logged and dropped by the adapter:
`reasoning`, `include`, `prompt_cache_key`, ...). Input items other than messages, function calls and their
outputs (reasoning, hosted tool calls, item references) are accepted and skipped. Nothing here knows how a
request is translated or routed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from ..protocol import RouteOptions


class ResponsesBase(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class InputContentPart(ResponsesBase):
    """input_text, output_text, refusal, input_image (translated); input_file and others (skipped)."""

    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: str | None = Field(None, description="input_image: an https or data: URL.")
    detail: str | None = None


class InputMessageItem(ResponsesBase):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputContentPart]


class FunctionCallItem(ResponsesBase):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str = Field(description="The call's arguments: a JSON object, as text.")


class FunctionCallOutputItem(ResponsesBase):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputContentPart]


class OtherInputItem(ResponsesBase):
    """reasoning, item_reference, hosted tools' calls: accepted and skipped (engines cannot replay them)."""

    type: str


def _item_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind is None and isinstance(value, dict) and "role" in value:
        return "message"  # an "easy input message": {role, content} without a type
    return kind if kind in ("message", "function_call", "function_call_output") else "other"


InputItem = Annotated[
    Annotated[InputMessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[OtherInputItem, Tag("other")],
    Discriminator(_item_kind),
]


class ResponsesTool(ResponsesBase):
    """A function tool is translated; hosted tools (web_search, file_search, ...) are dropped."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponsesTextFormat(ResponsesBase):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="json_schema: the JSON schema.")
    description: str | None = None
    strict: bool | None = None


class ResponsesTextConfig(ResponsesBase):
    format: ResponsesTextFormat | None = None


class ResponsesRequest(ResponsesBase):
    model: str = Field(description="A configured model name, an alias, or 'auto' to let Triage choose.")
    input: str | list[InputItem] = Field(description="Text, or items: messages, function calls, their outputs.")
    instructions: str | None = Field(None, description="A system message for this request only.")
    tools: list[ResponsesTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    text: ResponsesTextConfig | None = None
    stream: bool = False
    store: bool = Field(True, description="Keep the response, so that a later request may continue from it.")
    previous_response_id: str | None = Field(None, description="Continue from a stored response of this key.")
    user: str | None = None
    metadata: dict[str, str] | None = None
    route: RouteOptions | None = None
