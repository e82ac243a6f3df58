"""The stand-in's ``PredictionService.GenerateContent``: what ``vertexai.generative_models`` calls for Gemini.

Answers are deterministic and derived from the prompt (a SHA-256 of model, prompt and generation config picks
words from a fixed list), so tests can assert on the corpus a step wrote; token counts are the whitespace
words of prompt and answer. Model names follow Vertex's publisher form
(``projects/P/locations/L/publishers/google/models/gemini-...``); any other model is NOT_FOUND, as Vertex
answers. ``fail_next`` makes the next calls answer UNAVAILABLE (retry tests); ``fail_always`` every call.
"""

from __future__ import annotations

import hashlib
import re
import threading

import grpc
from google.cloud.aiplatform_v1 import types

from expforge.standins.vertex_grpc import V1, RpcFailure, Service, invalid, not_found, rpc

_MODEL = re.compile(r"^projects/[^/]+/locations/[^/]+/publishers/google/models/(gemini-[0-9][\w.-]*)$")
WORDS = (
    "the", "river", "bends", "where", "lanterns", "sleep", "and", "quiet", "bells", "remember", "every", "name",
    "of", "morning", "light", "over", "stone", "salt", "harbour", "keeps", "a", "ledger", "small", "ships",
    "returning", "home",
)  # fmt: skip


def answer_for(model: str, prompt: str, temperature: float, max_tokens: int) -> str:
    """The stand-in's answer: a pure function of its arguments."""
    digest = hashlib.sha256(f"{model}\n{temperature:.3f}\n{prompt}".encode()).digest()
    length = 8 + digest[0] % 8
    if max_tokens > 0:
        length = min(length, max_tokens)
    return " ".join(WORDS[digest[1 + i % 31] % len(WORDS)] for i in range(length)) + "."


class Predictions(Service):
    """Gemini generate-content, in memory; every request is captured by the dispatcher."""

    SERVICE = f"{V1}.PredictionService"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fail_next = 0
        self.fail_always = False

    @rpc(types.GenerateContentRequest, types.GenerateContentResponse)
    def generate_content(self, request: types.GenerateContentRequest) -> types.GenerateContentResponse:
        """One candidate continuing the request's text parts."""
        with self._lock:
            if self.fail_always or self.fail_next > 0:
                self.fail_next = max(0, self.fail_next - 1)
                raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "stand-in: service unavailable (injected)")
        if not _MODEL.match(request.model):
            raise not_found(f"Publisher Model `{request.model}`")
        prompt = "\n".join(part.text for content in request.contents for part in content.parts if part.text)
        if not prompt:
            raise invalid("contents: at least one text part is required")
        config = request.generation_config
        text = answer_for(request.model, prompt, config.temperature, config.max_output_tokens)
        prompt_tokens, answer_tokens = len(prompt.split()), len(text.split())
        return types.GenerateContentResponse(
            candidates=[
                types.Candidate(
                    index=0,
                    content=types.Content(role="model", parts=[types.Part(text=text)]),
                    finish_reason=types.Candidate.FinishReason.STOP,
                )
            ],
            usage_metadata=types.GenerateContentResponse.UsageMetadata(
                prompt_token_count=prompt_tokens,
                candidates_token_count=answer_tokens,
                total_token_count=prompt_tokens + answer_tokens,
            ),
            model_version=_MODEL.match(request.model).group(1),  # type: ignore[union-attr]
        )
