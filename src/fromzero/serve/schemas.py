"""The JSON the server reads and writes, as pydantic models: OpenAI's shapes, fromzero's limits.

The field names, meanings and defaults are OpenAI's, so that any OpenAI client works unchanged;
the bounds are checked here, before a request reaches the model, so a bad value is a 400 that
names its field (:mod:`fromzero.serve.errors`), never a crash in the middle of decoding.
Unknown fields are ignored (``extra="ignore"``): :mod:`fromzero.serve.app` lists the OpenAI
fields this server accepts and does not act on.

The same models describe the API in ``/openapi.json``, which is what the fuzzing test reads.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_N = 16  # choices per request; more are better sent as several requests
MAX_STOP = 4  # stop strings per request, as OpenAI allows
SEED_BOUND = 2**63  # torch seeds are 64-bit; seed + i (for n choices) must stay in range
MAX_TOP_LOGPROBS = 20  # OpenAI's bound on a chat completion's top_logprobs
MAX_COMPLETION_LOGPROBS = 5  # and on a completion's logprobs
MAX_EMBEDDING_INPUTS = 2048  # texts per embeddings request, as OpenAI allows

StopText = Annotated[str, Field(min_length=1)]
Stop = StopText | Annotated[list[StopText], Field(max_length=MAX_STOP)]


class Request(BaseModel):
    """What both completion endpoints share: the model, the sampling settings, streaming."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str = Field(description='"base", or the name of an adapter (GET /v1/models lists them)')
    max_tokens: int | None = Field(None, ge=1, description="new tokens at most; capped to what the context leaves")
    temperature: float = Field(1.0, ge=0, le=2, description="0 = greedy (always the most likely token)")
    top_p: float = Field(1.0, ge=0, le=1, description="nucleus sampling (1 = off, 0 = greedy)")
    n: int = Field(1, ge=1, le=MAX_N, description="how many answers; with a seed, answer i uses seed + i")
    stop: Stop | None = Field(None, description="text that ends an answer (not included in it)")
    seed: int | None = Field(None, ge=-SEED_BOUND, lt=SEED_BOUND - MAX_N,
                             description="makes sampling repeatable, whatever else the server is doing")
    stream: bool = Field(False, description="send the answer as server-sent events while it is written")
    stream_options: StreamOptions | None = None
    # fromzero's extra knobs (OpenAI has no such fields; OpenAI clients send them via extra_body)
    top_k: int | None = Field(None, ge=0, description="sample among the k most likely tokens (0 or null = all)")
    min_p: float | None = Field(None, ge=0, le=1, description="drop tokens below min_p x the top probability")
    repetition_penalty: float = Field(1.0, gt=0, le=100, description="> 1 discourages repeating tokens (1 = off)")
    no_repeat_ngram_size: int = Field(0, ge=0, le=64, description="never repeat an n-gram of this size (0 = off)")

    @property
    def stop_strings(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = Field(False, description="send a last chunk with the usage counts")


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"] = Field(
        description='"json_object": the answer is a JSON object (constrained decoding); "json_schema" is refused')


class TextPart(BaseModel):
    """A piece of a message's content when it is given as a list (OpenAI's content parts): text only."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"] = Field(
        description='"developer" is OpenAI\'s newer name for "system" and is read as it')
    content: str | list[TextPart]

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatRequest(Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens")
    rag: bool = Field(True, description="fromzero's: false answers without the server's --rag index (no retrieval)")
    logprobs: bool = Field(False, description="give each answer token's log-probability (the model's own: before "
                           "temperature, top_p and the other sampling settings)")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS,
                                     description="and the most likely tokens' at each step (needs logprobs)")
    response_format: ResponseFormat | None = None
    continue_final_message: bool = Field(False, description="vLLM's: the messages end with the start of an answer "
                                         "(assistant), which the model goes on with instead of starting a new one")

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(Request):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=MAX_N)] = Field(
        description="text to continue as it is (no template); a list asks for each")
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS, description="give each token's "
                                 "log-probability (the model's own) and the most likely tokens' at each step")

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


# ---- responses ---------------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class TopLogprob(BaseModel):
    token: str
    logprob: float = Field(description="log_softmax of the model's raw logits (before the sampling settings)")
    bytes: list[int] = Field(description="the token's bytes (a token may hold part of a UTF-8 character)")


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(description="the most likely tokens at this step, most likely first")


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] = Field(description="one entry per answer token, its end token included")
    refusal: None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason


class Source(BaseModel):
    """A retrieved chunk the question was asked with (``fromzero serve --rag``): where it is, how close it was."""

    rank: int = Field(description="1 for the chunk closest to the question")
    source: str = Field(description="the file, folder or corpus the index read it from")
    document: int = Field(description="which document of that source, from 0")
    start: int = Field(description="character offset of the chunk in that document")
    end: int = Field(description="character offset just after the chunk")
    score: float = Field(description="cosine similarity between the chunk and the question")
    text: str = Field(description="the chunk as stored in the index (the model may have been given only its start)")


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: None = None
    sources: list[Source] | None = Field(None, description="fromzero's: the retrieved chunks put in front of the "
                                         "question, best first; null when nothing was looked up (no --rag, rag false, "
                                         "an empty question)")


class CompletionLogprobs(BaseModel):
    """OpenAI's older shape: parallel lists, one entry per token."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None = Field(
        description="the most likely tokens and the chosen one at each step (null when logprobs is 0)")
    text_offset: list[int] = Field(description="where each token's text starts, in characters from the answer's start")


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    system_fingerprint: None = None


class ModelInfo(BaseModel):
    """fromzero's own facts about a model id, for the web page and for people reading the list."""

    kind: Literal["base", "adapter"]
    template: str  # "none": the model continues text
    context: int  # tokens the model reads at most: prompt and answer together


class EncoderInfo(BaseModel):
    """The embeddings model (``fromzero serve --embeddings``): it answers ``/v1/embeddings`` only."""

    kind: Literal["embeddings"] = "embeddings"
    dimensions: int  # numbers per vector
    context: int  # tokens of an input it reads at most (the rest is left out)


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "fromzero"
    fromzero: ModelInfo | EncoderInfo


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="the id of the server's embeddings model (GET /v1/models lists it)")
    input: Annotated[str, Field(min_length=1)] | Annotated[
        list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)] = Field(
        description="a text, or a list of texts; each is cut to the model's context")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description='"base64": each vector as its little-endian float32 bytes in base64')
    dimensions: int | None = Field(None, ge=1, description="the vectors' size: only the model's own is accepted")

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="unit length: the dot product of two is their cosine")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    models: list[str]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


Request.model_rebuild()
ChatRequest.model_rebuild()
CompletionRequest.model_rebuild()
