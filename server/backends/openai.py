"""The openai kind: any other OpenAI-compatible API, remote providers included. Health is `GET /models`; no load
gauges. Triage never starts these engines."""

from __future__ import annotations

import aiohttp

from .base import EngineClient
from .kind import EngineKind

_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5.0)


class OpenAIClient(EngineClient):
    async def health(self) -> bool:
        for endpoint in self.endpoints:
            try:
                async with self.session.get(
                    endpoint + "/models", headers=self.headers, timeout=_PROBE_TIMEOUT
                ) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                continue
        return False


KIND = EngineKind(name="openai", client=OpenAIClient)  # engines run elsewhere; Triage starts none
