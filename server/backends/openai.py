"""Any other OpenAI-compatible API, remote providers included: health is `GET /models`, no load gauges."""

from __future__ import annotations

import aiohttp

from .base import EngineClient

_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5.0)


class OpenAIClient(EngineClient):
    kind = "openai"

    async def health(self) -> bool:
        for endpoint in self.model.endpoints:
            try:
                async with self.session.get(
                    endpoint + "/models", headers=self.headers, timeout=_PROBE_TIMEOUT
                ) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                continue
        return False
