/*
 * edgellm.h — the C ABI of EdgeLlm (libedgellm.so / edgellm.dll / libedgellm.dylib).
 *
 * Build the library:
 *   dotnet publish src/EdgeLlm.Native -c Release -r linux-x64 -p:PublishAot=true -o out
 * Link:  cc app.c -Iout -Lout -ledgellm -Wl,-rpath,'$ORIGIN'
 *
 * Conventions
 * - Every function that can fail returns an edgellm_error (EDGELLM_OK = 0) and writes its results
 *   through out-parameters. On failure the out-parameters named in the function's comment are set
 *   (e.g. the needed size for EDGELLM_ERROR_BUFFER_TOO_SMALL, NULL for a handle) and a message is
 *   available from edgellm_last_error() on the calling thread.
 * - Objects are opaque handles (edgellm_model_t*, edgellm_context_t*). They are table entries, not
 *   pointers into memory: a freed, never-issued or wrong-kind handle is detected and reported as
 *   EDGELLM_ERROR_INVALID_HANDLE (a second free included); NULL gives EDGELLM_ERROR_NULL_HANDLE.
 * - Every create/load has a free. Freeing NULL is a no-op returning EDGELLM_OK.
 * - Lengths are int32_t; a negative length or capacity is EDGELLM_ERROR_INVALID_ARGUMENT.
 * - Text is UTF-8, passed as (pointer, byte length); it need not be NUL-terminated. Invalid UTF-8
 *   input is EDGELLM_ERROR_INVALID_ARGUMENT. Output buffers are filled with exactly the reported
 *   number of bytes and are NOT NUL-terminated.
 * - Buffer protocol: a function that fills a caller buffer takes its capacity and an out count. When
 *   the result does not fit it writes nothing to the buffer, stores the needed count in the out count
 *   and returns EDGELLM_ERROR_BUFFER_TOO_SMALL; so (NULL, 0) queries the size.
 * - No C++ exception or managed exception ever crosses this boundary.
 *
 * Thread safety
 * - edgellm_version, edgellm_last_error, edgellm_context_params_default: any thread, any time.
 * - Models are immutable once loaded: edgellm_model_*, edgellm_tokenize/edgellm_token_to_piece/
 *   edgellm_detokenize and edgellm_chat_apply_template(_kwargs) may be called on one model from several threads at once, and several contexts
 *   may share a model, each used on its own thread.
 * - A context is single-threaded: use it from one thread at a time. A call that finds the context
 *   busy in another call (another thread, or re-entered from a generate callback) fails with
 *   EDGELLM_ERROR_BUSY instead of corrupting it.
 * - edgellm_model_free may be called while contexts on the model exist: the handle becomes invalid
 *   at once, and the weights are released when the last context using them is freed.
 * - edgellm_last_error is per thread.
 */
#ifndef EDGELLM_H
#define EDGELLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define EDGELLM_API __declspec(dllimport)
#else
#  define EDGELLM_API
#endif

/*
 * The version this header describes; edgellm_version() reports the library's.
 * 0.2.0: edgellm_context_params grew from 40 to 48 bytes (backend, device appended): rebuild callers
 * compiled against 0.1 (edgellm_context_params_default returns the struct by value).
 * 0.3.0: edgellm_context_params grew from 48 to 56 bytes (type_k, type_v appended: the KV cache's types):
 * rebuild callers compiled against 0.2.
 * 0.4.0: edgellm_context_params grew from 56 to 64 bytes (swa_full appended, then 4 bytes of padding): rebuild
 * callers compiled against 0.3.
 * 0.5.0: edgellm_context_embed added; nothing else changed (callers compiled against 0.4 keep working).
 * 0.6.0: the text encoders (edgellm_encoder_t: edgellm_encoder_load/free/n_embd/embed) added; edgellm_model_load
 * refuses an encoder naming edgellm_encoder_load; nothing else changed (callers compiled against 0.5 keep working).
 * 0.7.0: edgellm_encoder_rerank and edgellm_context_rerank added (rerankers: cross-encoders with a classification
 * head, decoder rerankers such as Qwen3-Reranker); nothing else changed.
 */
#define EDGELLM_VERSION_MAJOR 0
#define EDGELLM_VERSION_MINOR 7
#define EDGELLM_VERSION_PATCH 0
#define EDGELLM_VERSION_STRING "0.7.0"

/* Error codes. Values are stable. */
typedef enum edgellm_error {
    EDGELLM_OK = 0,
    EDGELLM_ERROR_INVALID_ARGUMENT = 1,  /* NULL pointer argument, negative length, bad parameter value, token id out of range, invalid UTF-8 */
    EDGELLM_ERROR_NULL_HANDLE = 2,       /* a NULL model or context handle */
    EDGELLM_ERROR_INVALID_HANDLE = 3,    /* a handle that was freed (e.g. double free), never issued, or of the wrong kind */
    EDGELLM_ERROR_BUFFER_TOO_SMALL = 4,  /* the output does not fit; the needed count was written */
    EDGELLM_ERROR_MODEL_LOAD_FAILED = 5, /* missing/unreadable file, not GGUF, unsupported architecture or tensor type, bad tokenizer */
    EDGELLM_ERROR_CONTEXT_FULL = 6,      /* the tokens do not fit in the context's remaining positions */
    EDGELLM_ERROR_OUT_OF_MEMORY = 7,     /* an allocation failed (e.g. the KV cache) */
    EDGELLM_ERROR_NO_LOGITS = 8,         /* logits were asked for before any evaluation (or after a reset) */
    EDGELLM_ERROR_BUSY = 9,              /* the context is in use by another call */
    EDGELLM_ERROR_INTERNAL = 10,         /* anything else (a bug): see edgellm_last_error() */
    EDGELLM_ERROR_TEMPLATE = 11,         /* the model's chat template does not parse, fails to render, or rejects the conversation */
    EDGELLM_ERROR_BACKEND_UNAVAILABLE = 12 /* backend EDGELLM_BACKEND_VULKAN cannot run here: no Vulkan loader/driver/device, device
                                              index out of range, a weight type without shaders, too little device memory */
} edgellm_error;

/*
 * Where a context runs (edgellm_context_params.backend; edgellm_context_backend reports CPU or VULKAN).
 * Values are stable. As the CLI's --backend cpu|vulkan|auto:
 * - CPU (default): the CPU engine.
 * - VULKAN: strict. The Vulkan device `device` (or the best one: discrete GPU, integrated, ..., a CPU driver
 *   such as lavapipe last); when none is usable edgellm_context_create fails with
 *   EDGELLM_ERROR_BACKEND_UNAVAILABLE (edgellm_last_error says why). It never falls back to the CPU.
 * - AUTO: Vulkan only on a discrete or integrated GPU (not on a CPU driver like lavapipe/llvmpipe) that can
 *   run the model; otherwise the CPU. Ask edgellm_context_backend which one it got.
 */
typedef enum edgellm_backend {
    EDGELLM_BACKEND_CPU = 0,
    EDGELLM_BACKEND_VULKAN = 1,
    EDGELLM_BACKEND_AUTO = 2
} edgellm_backend;

/*
 * How the KV cache stores keys and values (edgellm_context_params.type_k / type_v), as llama.cpp's
 * --cache-type-k / --cache-type-v. Values are stable.
 * - F16 (default): 2 bytes a value.
 * - Q8_0: ggml's q8_0 blocks (34 bytes per 32 values, about half the memory), the query quantized to q8_0 against them.
 * - Q4_0: ggml's q4_0 blocks (18 bytes per 32 values, about a quarter).
 * Quantized caches need a head size that is a multiple of 32 (else edgellm_context_create fails with
 * INVALID_ARGUMENT) and rotate heads of a multiple of 64 with a Walsh-Hadamard matrix before rounding, as
 * llama.cpp does; they run on the CPU backend (VULKAN with a quantized cache is INVALID_ARGUMENT; AUTO
 * then runs on the CPU).
 */
typedef enum edgellm_cache_type {
    EDGELLM_CACHE_F16 = 0,
    EDGELLM_CACHE_Q8_0 = 1,
    EDGELLM_CACHE_Q4_0 = 2
} edgellm_cache_type;

/* Opaque handles. */
typedef struct edgellm_model edgellm_model_t;
typedef struct edgellm_context edgellm_context_t;
typedef struct edgellm_encoder edgellm_encoder_t;

/* Seed value meaning "draw a random seed" (the seed actually used is not reported). */
#define EDGELLM_SEED_RANDOM UINT64_MAX

/*
 * Context parameters. Start from edgellm_context_params_default() and change fields.
 * The sampler chain is llama.cpp's: repeat penalty -> top-k -> top-p -> min-p -> temperature -> draw.
 * Layout: 56 bytes, fields at offsets 0,4,8,16,20,24,28,32,36,40,44,48,52. New fields are only ever appended.
 */
typedef struct edgellm_context_params {
    int32_t context_length;  /* KV cache size in tokens, >= 1 (default 4096) */
    int32_t threads;         /* worker threads, >= 0; 0 = one per processor (default 0) */
    uint64_t seed;           /* sampler seed; EDGELLM_SEED_RANDOM = random (default) */
    float temperature;       /* >= 0 and finite; 0 = greedy argmax (default 0.8) */
    int32_t top_k;           /* >= 0; 0 = off (default 40) */
    float top_p;             /* in [0, 1]; 1 = off (default 0.95) */
    float min_p;             /* in [0, 1]; 0 = off (default 0.05) */
    float repeat_penalty;    /* > 0 and finite; 1 = off (default 1.0) */
    int32_t repeat_last_n;   /* >= -1; tokens the penalty looks back over; 0 = off, -1 = all (default 64) */
    int32_t backend;         /* an edgellm_backend: CPU, VULKAN or AUTO (default EDGELLM_BACKEND_CPU) */
    int32_t device;          /* Vulkan device index (as `edgellm devices` lists them), >= -1; -1 = the best device (default -1).
                                Used by VULKAN and AUTO; CPU ignores it (and `threads` is for the CPU only) */
    int32_t type_k;          /* an edgellm_cache_type: how the KV cache stores keys (default EDGELLM_CACHE_F16) */
    int32_t type_v;          /* an edgellm_cache_type: how the KV cache stores values (default EDGELLM_CACHE_F16) */
    int32_t swa_full;        /* 0 or 1. 0 (default): sliding-window layers (Gemma 2/3) keep a ring of their window and a batch, as
                                llama.cpp's default cache; a rewind past it evaluates the tokens before again. 1: they keep every
                                position, as llama.cpp's --swa-full (more memory). No effect on models without such layers */
} edgellm_context_params;

/*
 * Streaming callback of edgellm_context_generate: receives the generated text in pieces, each a run of
 * complete UTF-8 characters (a character split across tokens is held back until complete; bytes that can
 * never form a character arrive as U+FFFD). `text` points at `len` bytes (> 0) followed by a NUL, valid
 * only during the call. Return 0 to continue, nonzero to stop generating.
 */
typedef int32_t (*edgellm_token_callback)(const char* text, int32_t len, void* user_data);

/* ------------------------------------------------------------------ library */

/* The library version, "MAJOR.MINOR.PATCH" (static storage; never NULL). */
EDGELLM_API const char* edgellm_version(void);

/*
 * The message of the last failed call on this thread, UTF-8, NUL-terminated; "" if none failed yet.
 * Valid until the next failing call on this thread. Successful calls leave it unchanged.
 */
EDGELLM_API const char* edgellm_last_error(void);

/* ------------------------------------------------------------------ model */

/*
 * Loads a GGUF model (architectures llama, qwen2, qwen3, phi3, gemma2, gemma3, smollm3, granite and lfm2) and its tokenizer. The file is memory-mapped.
 * path: NUL-terminated UTF-8. On success *out_model is the new handle; on failure it is set to NULL.
 * Errors: INVALID_ARGUMENT (path or out_model NULL), MODEL_LOAD_FAILED, OUT_OF_MEMORY.
 */
EDGELLM_API edgellm_error edgellm_model_load(const char* path, edgellm_model_t** out_model);

/* Frees a model (NULL: no-op). Contexts still using it keep it alive until they are freed.
 * Errors: INVALID_HANDLE (already freed, or not a model). */
EDGELLM_API edgellm_error edgellm_model_free(edgellm_model_t* model);

/* Vocabulary size (the length of a logits row). */
EDGELLM_API edgellm_error edgellm_model_n_vocab(const edgellm_model_t* model, int32_t* out_n_vocab);

/*
 * generic = 1: CPU forward passes of this model take the generic path even where a compile-time
 * specialization matches (as the CLI's --generic); 0 (the default): the specialization runs where one
 * matches. Applies to every CPU context of the model from its next evaluation; call it between
 * evaluations. edgellm_context_forward_pass says which path a context runs.
 * Errors: INVALID_HANDLE, INVALID_ARGUMENT (generic not 0 or 1).
 */
EDGELLM_API edgellm_error edgellm_model_set_generic(edgellm_model_t* model, int32_t generic);

/* The context length the model was trained with (0 if the file does not say). */
EDGELLM_API edgellm_error edgellm_model_n_ctx_train(const edgellm_model_t* model, int32_t* out_n_ctx_train);

/* The beginning-of-sequence and end-of-sequence token ids (-1 when the vocabulary has none). */
EDGELLM_API edgellm_error edgellm_model_token_bos(const edgellm_model_t* model, int32_t* out_token);
EDGELLM_API edgellm_error edgellm_model_token_eos(const edgellm_model_t* model, int32_t* out_token);

/* *out_is_eog = 1 when `token` ends generation (EOS, EOT, ...), else 0. INVALID_ARGUMENT for an id outside the vocabulary. */
EDGELLM_API edgellm_error edgellm_model_token_is_eog(const edgellm_model_t* model, int32_t token, int32_t* out_is_eog);

/* ------------------------------------------------------------------ tokenizer */

/*
 * Tokenizes text_len bytes of UTF-8 `text` as llama_tokenize does. add_special != 0 adds BOS/EOS as the
 * vocabulary asks; parse_special != 0 turns control-token text (e.g. "<|eot_id|>") into those tokens.
 * Writes the ids to tokens[0 .. *n_tokens) when they fit in `capacity`; otherwise BUFFER_TOO_SMALL with
 * *n_tokens = the count needed. `text` may be NULL when text_len is 0; `tokens` may be NULL when capacity is 0.
 */
EDGELLM_API edgellm_error edgellm_tokenize(const edgellm_model_t* model, const char* text, int32_t text_len,
                                           int32_t add_special, int32_t parse_special,
                                           int32_t* tokens, int32_t capacity, int32_t* n_tokens);

/*
 * The raw bytes of one token's piece (llama_token_to_piece). They may be part of a UTF-8 character (byte
 * tokens); use edgellm_detokenize or the generate callback for text. special != 0 renders control tokens
 * as their text (otherwise they give 0 bytes). Buffer protocol as above (*n_bytes = bytes written/needed).
 */
EDGELLM_API edgellm_error edgellm_token_to_piece(const edgellm_model_t* model, int32_t token, int32_t special,
                                                 char* buf, int32_t capacity, int32_t* n_bytes);

/*
 * Token ids to UTF-8 text (llama_detokenize): pieces joined, the SentencePiece prefix space removed,
 * invalid UTF-8 replaced by U+FFFD. remove_special != 0 drops a leading BOS / trailing EOS the vocabulary
 * adds; unparse_special != 0 renders control tokens as text. Buffer protocol as above (bytes, no NUL).
 */
EDGELLM_API edgellm_error edgellm_detokenize(const edgellm_model_t* model, const int32_t* tokens, int32_t n_tokens,
                                             int32_t remove_special, int32_t unparse_special,
                                             char* text, int32_t capacity, int32_t* n_bytes);

/* ------------------------------------------------------------------ chat template */

/*
 * Renders a conversation with the model's chat template (the GGUF key tokenizer.chat_template, a Jinja
 * template rendered as Hugging Face transformers' apply_chat_template renders it), as EdgeLlm's own chat
 * does. A model without a template gets the plain fallback: one "ROLE: CONTENT\n" line per message, then
 * "assistant: " when add_generation_prompt != 0.
 *
 * messages_json: messages_len bytes of UTF-8 JSON (no NUL needed), an array of objects
 *   [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}, ...]
 *   "role" is a string (system, user, assistant, tool: whatever the template accepts); "content" is a string
 *   or null (empty); other keys are ignored. An empty array is allowed.
 * add_generation_prompt != 0 appends the opening of the assistant's turn (e.g. "<|im_start|>assistant\n").
 * The template sees bos_token and eos_token (the vocabulary's BOS/EOS texts). When the vocabulary adds BOS
 * itself, a BOS text the template puts first is removed (likewise a trailing EOS text when it adds EOS), so
 * the result is meant for edgellm_tokenize(..., add_special = 1, parse_special = 1), or for the prompt of
 * edgellm_context_generate on an empty context.
 * Output: UTF-8 text in buf[0 .. *n_bytes), no NUL; buffer protocol as above ((NULL, 0) queries the size).
 * Errors: NULL_HANDLE/INVALID_HANDLE (model); INVALID_ARGUMENT (n_bytes NULL, messages_json NULL with
 * messages_len > 0, a negative length or capacity, invalid UTF-8, not JSON, not an array of objects with a
 * string "role" and a string/null "content": the message names the element); TEMPLATE (the template does
 * not parse, fails while rendering, or raises an error itself, e.g. roles that do not alternate: the message
 * says which and where); BUFFER_TOO_SMALL (*n_bytes = the bytes needed).
 */
EDGELLM_API edgellm_error edgellm_chat_apply_template(const edgellm_model_t* model, const char* messages_json, int32_t messages_len,
                                                      int32_t add_generation_prompt, char* buf, int32_t capacity, int32_t* n_bytes);

/*
 * edgellm_chat_apply_template with extra template variables (llama.cpp's --chat-template-kwargs):
 * kwargs_json is kwargs_len bytes of UTF-8 JSON, an object whose members the template sees as variables,
 * e.g. {"enable_thinking": false} to render Qwen3's prompt for an answer without thinking. NULL with
 * kwargs_len 0 means none (the same as edgellm_chat_apply_template). A member may override
 * bos_token, eos_token or add_generation_prompt.
 * Errors: as edgellm_chat_apply_template, and INVALID_ARGUMENT when kwargs_json is NULL with
 * kwargs_len > 0, invalid UTF-8, not JSON, or not a JSON object.
 */
EDGELLM_API edgellm_error edgellm_chat_apply_template_kwargs(const edgellm_model_t* model, const char* messages_json, int32_t messages_len,
                                                             const char* kwargs_json, int32_t kwargs_len, int32_t add_generation_prompt,
                                                             char* buf, int32_t capacity, int32_t* n_bytes);

/* ------------------------------------------------------------------ context */

/* The default parameters (llama.cpp's sampler defaults, a 4096-token context, the CPU backend). */
EDGELLM_API edgellm_context_params edgellm_context_params_default(void);

/*
 * Creates a context (KV cache + sampler) on `model`, on the backend params->backend asks for (see
 * edgellm_backend). params NULL = defaults. On failure *out_ctx = NULL.
 * Errors: NULL_HANDLE/INVALID_HANDLE (model), INVALID_ARGUMENT (out_ctx NULL, or a parameter out of
 * range, e.g. a backend value that is no edgellm_backend: the message names it), OUT_OF_MEMORY (the KV
 * cache does not fit), BACKEND_UNAVAILABLE (VULKAN and no usable device: the message says why).
 */
EDGELLM_API edgellm_error edgellm_context_create(edgellm_model_t* model, const edgellm_context_params* params,
                                                 edgellm_context_t** out_ctx);

/* Frees a context (NULL: no-op). Errors: INVALID_HANDLE (already freed, or not a context), BUSY. */
EDGELLM_API edgellm_error edgellm_context_free(edgellm_context_t* ctx);

/* Forgets every evaluated token (position 0), the sampler's history and the logits; restarts the seed's sequence. */
EDGELLM_API edgellm_error edgellm_context_reset(edgellm_context_t* ctx);

/* The backend the context runs on: EDGELLM_BACKEND_CPU or EDGELLM_BACKEND_VULKAN (what AUTO chose). */
EDGELLM_API edgellm_error edgellm_context_backend(const edgellm_context_t* ctx, int32_t* out_backend);

/*
 * Where the context runs, as UTF-8 text: "cpu (N threads)" or "vulkan (DEVICE NAME)".
 * Buffer protocol as above (*n_bytes = bytes written/needed; no NUL).
 */
EDGELLM_API edgellm_error edgellm_context_description(const edgellm_context_t* ctx, char* buf, int32_t capacity, int32_t* n_bytes);

/*
 * The forward pass the context runs, as UTF-8 text, worded as `edgellm info` words it:
 * "specialized: NAME" (a compile-time specialization), "generic", "generic (NAME differs: ...)",
 * "generic (forced; specialized: NAME available)" (edgellm_model_set_generic), or "vulkan".
 * A CPU context's model is matched once its weights are repacked, at the first CPU context.
 * Buffer protocol as above (*n_bytes = bytes written/needed; no NUL).
 */
EDGELLM_API edgellm_error edgellm_context_forward_pass(const edgellm_context_t* ctx, char* buf, int32_t capacity, int32_t* n_bytes);

/* The number of tokens evaluated so far (the position the next token takes). */
EDGELLM_API edgellm_error edgellm_context_position(const edgellm_context_t* ctx, int32_t* out_position);

/*
 * Evaluates n_tokens (>= 1) token ids at the next positions and keeps the logits of the last one. The
 * tokens also enter the sampler's repetition-penalty history.
 * Errors: INVALID_ARGUMENT (tokens NULL, n_tokens <= 0, an id outside the vocabulary), CONTEXT_FULL
 * (more tokens than positions left; nothing is evaluated).
 */
EDGELLM_API edgellm_error edgellm_context_eval(edgellm_context_t* ctx, const int32_t* tokens, int32_t n_tokens);

/*
 * The logits of the last evaluated token: *out_logits points at n_vocab floats owned by the context,
 * valid until the next eval/generate/reset/free of this context. Errors: NO_LOGITS.
 */
EDGELLM_API edgellm_error edgellm_context_logits(const edgellm_context_t* ctx, const float** out_logits, int32_t* out_n_vocab);

/* The same logits copied into dst[0 .. n_vocab); buffer protocol (*out_n_vocab = floats written/needed). */
EDGELLM_API edgellm_error edgellm_context_logits_copy(const edgellm_context_t* ctx, float* dst, int32_t capacity, int32_t* out_n_vocab);

/*
 * The embedding of text_len bytes of UTF-8 `text`, as llama-embedding computes it (edgellm embed): tokenized
 * (BOS/EOS as the vocabulary asks, control-token text parsed), evaluated from position 0, the final hidden
 * states after the output norm pooled and normalized. pooling: -1 = the model's {arch}.pooling_type (mean when
 * it names none), 1 = mean, 2 = cls (first token), 3 = last. normalize: llama.cpp's --embd-normalize
 * (-1 none, 0 max-abs to the int16 range, 1 taxicab, 2 euclidean, p > 2 p-norm). Writes n_embd floats to
 * dst; buffer protocol (*out_n_embd = floats written/needed). The context is reset afterwards (as
 * edgellm_context_reset). CPU contexts only.
 * Errors: INVALID_ARGUMENT (bad pooling/normalize, invalid UTF-8, rank pooling), BUFFER_TOO_SMALL,
 * CONTEXT_FULL (the text is longer than the context), BACKEND_UNAVAILABLE (a Vulkan context), BUSY.
 */
EDGELLM_API edgellm_error edgellm_context_embed(edgellm_context_t* ctx, const char* text, int32_t text_len, int32_t pooling,
                                                int32_t normalize, float* dst, int32_t capacity, int32_t* out_n_embd);

/*
 * Text encoders: the BERT embedding models (GGUF architectures bert, nomic-bert and jina-bert-v2: all-MiniLM, bge,
 * mxbai-embed, nomic-embed-text, jina-embeddings-v2) and rerankers (edgellm_encoder_rerank), which read a whole text
 * at once and generate nothing. Load with edgellm_encoder_load (threads:
 * 0 = the physical cores); edgellm_model_load refuses them. Errors: MODEL_LOAD_FAILED (missing file, not GGUF, not
 * an encoder: the message names the architecture and edgellm_model_load for decoders), INVALID_ARGUMENT.
 * An encoder handle may be used from several threads; its calls run one at a time.
 */
EDGELLM_API edgellm_error edgellm_encoder_load(const char* path, int32_t threads, edgellm_encoder_t** out_encoder);

/* Frees the encoder (NULL is a no-op); a call running on another thread finishes first. */
EDGELLM_API edgellm_error edgellm_encoder_free(edgellm_encoder_t* encoder);

/* The width of the encoder's embeddings. */
EDGELLM_API edgellm_error edgellm_encoder_n_embd(const edgellm_encoder_t* encoder, int32_t* out_n_embd);

/*
 * The embedding of text_len bytes of UTF-8 `text` as edgellm_context_embed computes a decoder's (and edgellm embed
 * an encoder's): WordPiece tokens with [CLS] first and [SEP] last, the last block's hidden states pooled and
 * normalized; pooling and normalize as there (-1 = the file's pooling_type, mean when it names none). Writes n_embd
 * floats to dst (buffer protocol). Errors: INVALID_ARGUMENT (bad pooling or normalize, invalid UTF-8, NULL
 * out_n_embd), BUFFER_TOO_SMALL, CONTEXT_FULL (more tokens than the encoder's context_length: 512 for bert).
 */
EDGELLM_API edgellm_error edgellm_encoder_embed(edgellm_encoder_t* encoder, const char* text, int32_t text_len, int32_t pooling,
                                                int32_t normalize, float* dst, int32_t capacity, int32_t* out_n_embd);

/*
 * Rerankers (an encoder whose file has pooling_type rank and a classification head: ms-marco-MiniLM, jina-reranker):
 * the relevance of each of n_documents documents to the query, as llama.cpp's server scores /v1/rerank. Each pair is
 * read as the file's rerank template, else [CLS] query [SEP] document [SEP] (the vocabulary's BOS, EOS and separator),
 * and the head's first output is the score: a logit, higher is more relevant (1 / (1 + exp(-s)) makes it a
 * probability). documents[i] holds document_lens[i] bytes of UTF-8. Writes n_documents floats to scores, in the
 * documents' order (capacity: how many fit). Errors: INVALID_ARGUMENT (an embedding model, not a reranker; invalid
 * UTF-8, naming the argument; n_documents < 1; NULL arrays), BUFFER_TOO_SMALL, CONTEXT_FULL (a query and document
 * longer than the encoder's context_length, naming the document).
 */
EDGELLM_API edgellm_error edgellm_encoder_rerank(edgellm_encoder_t* encoder, const char* query, int32_t query_len,
                                                 const char* const* documents, const int32_t* document_lens, int32_t n_documents,
                                                 float* scores, int32_t capacity);

/*
 * A decoder reranker (Qwen3-Reranker: a model with pooling_type rank, a cls.output head of "yes" and "no" rows and a
 * rerank template) scores documents as edgellm_encoder_rerank does, in this context: each pair evaluated from
 * position 0 (the context is left empty), the last token's hidden state times cls.output, softmax: the score is the
 * probability of "yes". Errors: INVALID_ARGUMENT (the model is not a reranker, invalid UTF-8, n_documents < 1, NULL
 * arrays), BUFFER_TOO_SMALL, CONTEXT_FULL (a pair longer than the context, naming the document), BACKEND_UNAVAILABLE
 * (a Vulkan context), BUSY.
 */
EDGELLM_API edgellm_error edgellm_context_rerank(edgellm_context_t* ctx, const char* query, int32_t query_len,
                                                 const char* const* documents, const int32_t* document_lens, int32_t n_documents,
                                                 float* scores, int32_t capacity);

/*
 * Picks the next token from the current logits with the context's sampler settings (does not evaluate it:
 * pass it to edgellm_context_eval, which also records it for the repetition penalty). Errors: NO_LOGITS.
 */
EDGELLM_API edgellm_error edgellm_context_sample(edgellm_context_t* ctx, int32_t* out_token);

/*
 * Tokenizes the prompt (prompt_len bytes of UTF-8; control-token text is parsed; BOS is added only when the
 * context is empty, so a second call continues the same sequence), evaluates it, then samples up to
 * max_tokens tokens (-1 = no limit), streaming their text to `callback`. Stops at an end-of-generation
 * token (not reported), after max_tokens, when the callback returns nonzero, or when the context is full.
 * An empty prompt continues from the current logits (NO_LOGITS if there are none).
 * Returns OK for those stops except a full context, which returns CONTEXT_FULL after the text generated so
 * far was delivered (also when the prompt itself does not fit: then nothing is evaluated).
 * Errors: INVALID_ARGUMENT (callback NULL, prompt NULL with prompt_len > 0, prompt_len < 0,
 * max_tokens < -1, invalid UTF-8), CONTEXT_FULL, NO_LOGITS, BUSY (e.g. called from its own callback).
 */
EDGELLM_API edgellm_error edgellm_context_generate(edgellm_context_t* ctx, const char* prompt, int32_t prompt_len,
                                                   int32_t max_tokens, edgellm_token_callback callback, void* user_data);

/*
 * As edgellm_context_generate, with the output constrained to one JSON object (OpenAI's response_format
 * {"type": "json_object"}; the rules of llama.cpp's json.gbnf: the object first, nothing around it, between
 * tokens nothing, one space or a newline and up to 20 spaces or tabs, valid UTF-8 in strings): only tokens
 * that keep the text valid JSON are sampled, and generation stops when the object closes (that token is
 * evaluated and delivered). max_tokens, the callback or a full context can still cut the object short.
 * Each call starts a new object. Ask for JSON in the prompt too: the constraint keeps the text valid, it
 * does not tell the model what to write. Errors: as edgellm_context_generate.
 */
EDGELLM_API edgellm_error edgellm_context_generate_json(edgellm_context_t* ctx, const char* prompt, int32_t prompt_len,
                                                        int32_t max_tokens, edgellm_token_callback callback, void* user_data);

/*
 * As edgellm_context_generate_json, with the object also held to a JSON schema (schema_len bytes of UTF-8
 * JSON; the root must be an object schema). Enforced: "type" (one or a list), "properties" (only the listed
 * keys, each at most once, any order; "additionalProperties" true or a schema lets other keys in), "required", "items", and
 * "enum"/"const" (strings, numbers, booleans, null), "$ref" into the same document (not recursive), "anyOf"/"oneOf" of alternatives
 * of different JSON types, "minItems"/"maxItems", "minLength"/"maxLength" (characters), "minimum"/"maximum"/
 * "exclusiveMinimum"/"exclusiveMaximum" on integers, "format" date, time, date-time and uuid, "pattern" (regular
 * expressions without back-references or look-arounds). Keywords that only narrow values ("description",
 * "multipleOf", other formats, bounds on numbers with fractions, ...) are accepted and not enforced; "allOf" of several schemas, "not", overlapping alternatives and the like are refused.
 * Errors: those of edgellm_context_generate; INVALID_ARGUMENT also for a NULL, invalid or unsupported
 * schema (the message names the keyword's path, e.g. "schema.properties.a.allOf").
 */
EDGELLM_API edgellm_error edgellm_context_generate_json_schema(edgellm_context_t* ctx, const char* prompt, int32_t prompt_len,
                                                               const char* schema_json, int32_t schema_len, int32_t max_tokens,
                                                               edgellm_token_callback callback, void* user_data);

/*
 * As edgellm_context_generate, with the output constrained to a GBNF grammar (grammar_len bytes of UTF-8; the
 * syntax of llama.cpp's --grammar, generation starting at the rule "root"): only tokens that keep the text a
 * prefix of a sentence of the grammar are sampled, the end of generation only once it is a whole sentence,
 * and generation stops when nothing can extend the sentence. Control tokens and NUL bytes are never
 * generated. Each call starts the grammar afresh. Errors: those of edgellm_context_generate;
 * INVALID_ARGUMENT also for a NULL grammar or one that does not parse (the message names the line and
 * column: undefined rule, left recursion, bad escape, ...).
 */
EDGELLM_API edgellm_error edgellm_context_generate_grammar(edgellm_context_t* ctx, const char* prompt, int32_t prompt_len,
                                                           const char* grammar, int32_t grammar_len, int32_t max_tokens,
                                                           edgellm_token_callback callback, void* user_data);

/* ------------------------------------------------------------------ speculative decoding */

/*
 * Speculative decoding (llama.cpp's --model-draft) for the generate calls of `ctx`: `draft`, a context on a
 * smaller model with the same vocabulary (e.g. a 0.5B model for a 7B one, or a lower-bit file of the same
 * model), proposes up to max_draft tokens greedily after each generated token while its top token has at
 * least p_min probability, and `ctx` evaluates the token and the proposals in one batch. Each row is sampled
 * as one token at a time would be (same sampler, seed sequence, repetition history, JSON or grammar
 * constraint): a proposal equal to the token sampled there is kept, the first that differs and all after it
 * leave the KV cache. The text is the one `ctx` gives alone (greedy: the same tokens, up to the float
 * rounding of batched products), sooner when the draft guesses well.
 * While attached, `ctx` manages the draft's KV cache (it is reset now), the draft cannot be freed (BUSY),
 * and a generate call on `ctx` holds it busy. draft NULL (or max_draft 0) detaches it (it is reset for use
 * on its own); freeing `ctx` detaches it as it is. A context drafts for at most one context and has no draft itself.
 * Errors: NULL_HANDLE/INVALID_HANDLE, INVALID_ARGUMENT (max_draft outside 0..256, p_min outside [0, 1] or
 * NaN, draft == ctx, the vocabularies differ: the message names the first token that differs), BUSY.
 */
EDGELLM_API edgellm_error edgellm_context_set_draft(edgellm_context_t* ctx, edgellm_context_t* draft, int32_t max_draft, float p_min);

/* Tokens the draft proposed and tokens kept, over the last generate call of `ctx` (0 and 0 without a draft). */
EDGELLM_API edgellm_error edgellm_context_draft_stats(const edgellm_context_t* ctx, int32_t* out_proposed, int32_t* out_accepted);

#ifdef __cplusplus
}
#endif

#endif /* EDGELLM_H */
