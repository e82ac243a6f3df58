"""The ``vertex`` backend of generate-prompted-text: Gemini through ``vertexai.generative_models``.

Model name, region and safety settings are parameters; a transient failure (UNAVAILABLE, RESOURCE_EXHAUSTED,
DEADLINE_EXCEEDED, INTERNAL) is retried with exponential backoff, anything else fails at once, and after the
last retry the step fails naming the last error. Token usage of every answer is returned for the metrics.
The endpoint and TLS roots come from the task environment (``EXPFORGE_VERTEX_ENDPOINT``), so the same code
talks to Vertex AI or to the local stand-in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from expforge.errors import ExpforgeError
from expforge.text.prompted import Generation

#: Gemini model ids as Vertex names them (``gemini-2.0-flash-001``); anything else Vertex refuses.
MODEL_NAME = re.compile(r"^gemini-[0-9][a-z0-9.-]*$")
DEFAULT_MODEL = "gemini-2.0-flash-001"
DEFAULT_REGION = "us-central1"
RETRIES = 4
BACKOFF_S = 0.5


def check_model_name(model: str) -> str:
    """A Gemini model id (``gemini-2.0-flash-001``); one line naming it otherwise."""
    if not isinstance(model, str) or not MODEL_NAME.match(model):
        raise ExpforgeError(f"--model: {model!r} is not a Gemini model id Vertex AI accepts (e.g. {DEFAULT_MODEL})")
    return model


def _safety_settings(settings: Mapping[str, str]) -> list[Any]:
    from vertexai.generative_models import HarmBlockThreshold, HarmCategory, SafetySetting

    chosen = []
    for category, threshold in settings.items():
        try:
            harm = getattr(HarmCategory, category)
            block = getattr(HarmBlockThreshold, str(threshold))
            chosen.append(SafetySetting(category=harm, threshold=block))
        except (AttributeError, TypeError) as exc:
            raise ExpforgeError(
                f"--safety: {category}={threshold} is not a known category/threshold "
                f"(e.g. HARM_CATEGORY_HATE_SPEECH=BLOCK_ONLY_HIGH)"
            ) from exc
    return chosen


class VertexGeminiBackend:
    """Gemini on Vertex AI (or the stand-in the task environment points at)."""

    name = "vertex"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        region: str = DEFAULT_REGION,
        project: str | None = None,
        safety: Mapping[str, str] | None = None,
        max_output_tokens: int = 128,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from expforge.gcloud_clients import init_aiplatform
        from expforge.task_env import TaskEnvironment

        self.model_name = check_model_name(model)
        if retries < 0:
            raise ExpforgeError(f"--retries: {retries} is negative")
        env = TaskEnvironment.from_env()
        self.project = project or env.project or "expforge-local"
        init_aiplatform(self.project, region, endpoint=env.vertex_endpoint)
        from vertexai.generative_models import GenerativeModel

        self.safety = _safety_settings(safety or {})
        self.model = GenerativeModel(self.model_name, safety_settings=self.safety or None)
        self.max_output_tokens, self.retries, self.backoff_s, self._sleep = max_output_tokens, retries, backoff_s, sleep

    def generate(self, prompt: str, *, temperature: float, seed: int) -> Generation:
        from google.api_core import exceptions
        from vertexai.generative_models import GenerationConfig

        transient = (
            exceptions.ServiceUnavailable,
            exceptions.TooManyRequests,
            exceptions.DeadlineExceeded,
            exceptions.InternalServerError,
        )
        config = GenerationConfig(temperature=temperature, max_output_tokens=self.max_output_tokens, seed=seed)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self.model.generate_content(prompt, generation_config=config)
            except transient as exc:
                last = exc
                continue
            except exceptions.GoogleAPICallError as exc:
                raise ExpforgeError(f"vertex: {self.model_name}: {exc.message or exc}") from exc
            usage = response.usage_metadata
            return Generation(
                response.text,
                {
                    "prompt_tokens": int(usage.prompt_token_count),
                    "output_tokens": int(usage.candidates_token_count),
                    "total_tokens": int(usage.total_token_count),
                },
            )
        raise ExpforgeError(f"vertex: {self.model_name}: failed after {self.retries + 1} attempts; last error: {last}")
