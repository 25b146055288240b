"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, the llama.cpp server) through the
`openai` client. The key comes from the environment (or the dashboard's secrets) and is kept only
in the client: never in a setting, a log line, the database or an error message."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Callable, Sequence
from urllib.parse import urlparse

from iml_core.backends import OPENAI_URL, BackendError, Completion, Messages, split_label_sentence, \
    without_credentials
from iml_core.errors import UserError

STRUCTURED_MODES = ("auto", "json_schema", "json_object", "text")
RETRYABLE_STATUS = (408, 409, 429)  # and every 5xx
FIRST_BACKOFF, MAX_BACKOFF, MAX_RETRY_AFTER = 0.5, 8.0, 60.0


def check_base_url(base_url: str) -> str:
    if not base_url:
        return ""
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"base URL {base_url!r} is not an http(s) URL; e.g. http://127.0.0.1:8000/v1")
    return base_url.rstrip("/")


class OpenAICompatBackend:

    def __init__(self, model: str, *, base_url: str = "", api_key: str | None = None, timeout: float = 60.0,
                 max_retries: int = 3, max_parallel: int = 8, structured_output: str = "auto",
                 price_in: float = 0.0, price_out: float = 0.0, frequency_penalty: float = 0.0,
                 presence_penalty: float = 0.0, on_retry: Callable[[str | None], None] | None = None):
        import openai

        if not model:
            raise UserError("an OpenAI-compatible backend needs a model name (--model)")
        if structured_output not in STRUCTURED_MODES:
            raise UserError(f"structured output must be one of {', '.join(STRUCTURED_MODES)}, "
                            f"got {structured_output!r}")
        self.base_url = check_base_url(base_url)
        self.model = model
        self.max_parallel = max_parallel
        self.price_in, self.price_out = price_in, price_out
        self._secret = api_key or ""
        self.max_retries = max_retries
        # Told "retrying after ..." before each retry and None once a retried request succeeds, so
        # the run can show that it is waiting on the server rather than stuck.
        self.on_retry = on_retry
        # Retries are ours, not the client's, so that they can be reported. Local servers take any
        # key; the client insists on one.
        self._client = openai.OpenAI(api_key=api_key or "not-needed", base_url=self.base_url or None,
                                     timeout=timeout, max_retries=0)
        self._mode = None if structured_output == "auto" else structured_output
        self._mode_lock = threading.Lock()
        self.identity = {"backend": "openai", "base_url": self.base_url or OPENAI_URL,
                         "model": model, "structured_output": structured_output}
        # Sent with the written phases only, and only when set: some servers refuse the fields.
        self.penalties = {name: value for name, value in (("frequency_penalty", frequency_penalty),
                                                          ("presence_penalty", presence_penalty)) if value}
        self.identity.update(self.penalties)
        self.description = f"OpenAI-compatible: {model}" + (f" at {without_credentials(self.base_url)}"
                                                             if self.base_url else "")

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6

    def _scrub(self, message: str) -> str:
        return message.replace(self._secret, "***") if self._secret else message

    def _create(self, retries: int, **kwargs):
        import openai

        for attempt in range(retries + 1):
            retry_after = None
            try:
                response = self._client.chat.completions.create(model=self.model, **kwargs)
                if attempt and self.on_retry is not None:
                    self.on_retry(None)
                return response
            except openai.APIStatusError as e:
                failure = BackendError(self._scrub(
                    f"the model server answered HTTP {e.status_code}: {_server_message(e)}"))
                if not (e.status_code in RETRYABLE_STATUS or e.status_code >= 500) or attempt == retries:
                    raise failure from None
                cause = f"HTTP {e.status_code}"
                retry_after = _retry_after(e.response)
            except openai.APITimeoutError:
                if attempt == retries:
                    raise BackendError(
                        f"the model server at {self.identity['base_url']} did not answer in time (tried "
                        f"{retries + 1} times); is it overloaded? raise the timeout or lower parallel requests"
                    ) from None
                cause = "no answer in time"
            except openai.APIConnectionError:
                if attempt == retries:
                    raise BackendError(f"cannot reach the model server at {self.identity['base_url']} (tried "
                                       f"{retries + 1} times); is it running, and is the base URL right?") from None
                cause = "no connection"
            wait = retry_after if retry_after is not None else \
                min(FIRST_BACKOFF * 2 ** attempt, MAX_BACKOFF) * (1 - 0.25 * random.random())
            if self.on_retry is not None:
                self.on_retry(f"{cause} from the model server; retry {attempt + 1} of {retries} in {wait:.1f} s")
            time.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _usage(response) -> tuple[int, int, int]:
        usage = response.usage
        if usage is None:
            return 0, 0, 0
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", 0) or 0
        return usage.prompt_tokens or 0, usage.completion_tokens or 0, cached

    def _label_formats(self, labels: Sequence[str], sentences: int) -> dict:
        properties = {"label": {"type": "string", "enum": list(labels)}}
        if sentences:  # the schema's field is the model's word, "line", as in the prompt
            # An enum rather than minimum/maximum: servers that turn schemas into grammars (the
            # llama.cpp server, vLLM) enforce enums but let a range through.
            properties["line"] = {"type": "integer", "enum": list(range(1, sentences + 1))}
        schema = {"type": "object", "properties": properties, "required": list(properties),
                  "additionalProperties": False}
        return {
            "json_schema": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}},
            "json_object": {"type": "json_object", "schema": schema},
        }

    def label(self, messages: Messages, labels: Sequence[str], *, temperature: float, seed: int,
              max_tokens: int, sentences: int = 0) -> Completion:
        formats = self._label_formats(labels, sentences)
        kwargs = dict(messages=messages, temperature=temperature, seed=seed, max_tokens=max_tokens + 16)
        with self._mode_lock:
            mode = self._mode
        if mode is None:
            mode = self._discover(formats, kwargs)
        if mode == "text":
            response = self._create(self.max_retries, **kwargs)
        else:
            response = self._create(self.max_retries, response_format=formats[mode], **kwargs)
        raw = response.choices[0].message.content or ""
        label, sentence = _parse_label(raw, labels, sentences, mode)
        return Completion(raw, label, *self._usage(response), sentence=sentence)

    def _discover(self, formats: dict, kwargs: dict) -> str:
        """json_schema where the server takes it, else json_object with the schema (what the
        llama.cpp server accepts), else plain text; found once, then kept. A mode is given up on a
        4xx at once, and on a 5xx only when it is answered again after one retry: the llama.cpp
        server answers json_schema with a 500 every time, while a server's passing hiccup must not
        cost the run its structured output for good."""
        with self._mode_lock:
            if self._mode is not None:
                return self._mode
            for mode in ("json_schema", "json_object"):
                try:
                    self._create(1, response_format=formats[mode], **{**kwargs, "max_tokens": 32})
                except BackendError as e:
                    if "HTTP 4" in str(e) or "HTTP 5" in str(e):
                        continue
                    raise
                self._mode = mode
                return mode
            self._mode = "text"
            return "text"

    def text(self, messages: Messages, *, temperature: float, seed: int, max_tokens: int,
             prefix: str = "", grammar: str | None = None) -> Completion:
        response = self._create(self.max_retries, messages=messages, temperature=temperature, seed=seed,
                                max_tokens=max_tokens, **self.penalties)
        raw = response.choices[0].message.content or ""
        return Completion(raw, raw, *self._usage(response))


def _server_message(error) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(error, "message", error))[:300]


def _retry_after(response) -> float | None:
    """A server's Retry-After in seconds when it is a plain number we are willing to wait."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except (AttributeError, ValueError):
        return None
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER else None


def _parse_label(raw: str, labels: Sequence[str], sentences: int, mode: str) -> tuple[str, int | None]:
    """The label in a structured answer, or a plain answer that is exactly one label (optionally
    followed by " | line N"); '' when there is none. Then the notes unit it names, if any."""
    if mode == "text":
        return split_label_sentence(raw, labels, sentences)
    try:
        value = json.loads(raw.strip())
    except json.JSONDecodeError:
        return "", None
    if not isinstance(value, dict):
        return "", None
    label, sentence = str(value.get("label", "")), value.get("line")
    sentence = sentence if isinstance(sentence, int) and not isinstance(sentence, bool) and 1 <= sentence <= sentences \
        else None
    return (label if label in labels else ""), sentence
