/*
 * test_edgellm.c — exercises libedgellm.so through edgellm.h only, as a C program would.
 *
 * usage: test_edgellm [--no-vulkan-driver] MODEL.gguf STORY.json [SCRATCH_DIR]
 *   MODEL.gguf  ../shared/models/stories260K.gguf
 *   STORY.json  ../shared/golden/stories260K.story.json (llama.cpp's greedy story: prompt_ids, greedy_ids, greedy_text)
 *   SCRATCH_DIR where corrupt model files are written (default /tmp)
 *   --no-vulkan-driver  run only the backend checks for a process that cannot see a Vulkan driver (run.sh starts
 *               it with VK_ICD_FILENAMES/VK_DRIVER_FILES pointing nowhere): EDGELLM_BACKEND_VULKAN must fail with
 *               EDGELLM_ERROR_BACKEND_UNAVAILABLE and EDGELLM_BACKEND_AUTO must run on the CPU. Without it, a Vulkan
 *               device must be present (CI has lavapipe): the Vulkan checks fail, they do not skip.
 *
 * Prints one line per check ("PASS name" / "FAIL name: why") and ends with "N passed, N failed";
 * exits 1 when any check failed, 2 when the inputs cannot be read.
 */
#include "edgellm.h"

#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(sizeof(edgellm_context_params) == 64, "edgellm_context_params is 64 bytes (see edgellm.h)");
_Static_assert(offsetof(edgellm_context_params, repeat_last_n) == 36 && offsetof(edgellm_context_params, backend) == 40
                   && offsetof(edgellm_context_params, device) == 44 && offsetof(edgellm_context_params, type_k) == 48
                   && offsetof(edgellm_context_params, type_v) == 52 && offsetof(edgellm_context_params, swa_full) == 56,
               "edgellm_context_params offsets (see edgellm.h): fields are appended, never moved");

static int g_passed, g_failed;

static void check(int ok, const char* name, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

static void check(int ok, const char* name, const char* fmt, ...)
{
    if (ok) {
        printf("PASS %s\n", name);
        g_passed++;
        return;
    }
    printf("FAIL %s: ", name);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    g_failed++;
}

/* An expected error code, with the message edgellm_last_error() gave. */
static void check_code(edgellm_error got, edgellm_error want, const char* name)
{
    const char* msg = edgellm_last_error();
    if (got == want && (want == EDGELLM_OK || (msg != NULL && msg[0] != '\0'))) {
        printf("PASS %s%s%s\n", name, want == EDGELLM_OK ? "" : "  -- ", want == EDGELLM_OK ? "" : msg);
        g_passed++;
    } else {
        printf("FAIL %s: got code %d, want %d (last error: %s)\n", name, (int)got, (int)want, msg ? msg : "(NULL)");
        g_failed++;
    }
}

/* ------------------------------------------------------------------ small helpers */

static char* read_file(const char* path, long* size)
{
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[n] = '\0'; if (size) *size = n; }
    return buf;
}

static int write_file(const char* path, const void* data, size_t n)
{
    FILE* f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Appends code point cp as UTF-8. */
static size_t put_utf8(char* out, unsigned cp)
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The value of "key": "..." in a JSON text, unescaped (\n \t \r \b \f \" \\ \/ \uXXXX with surrogate pairs); malloc'd. */
static char* json_string(const char* json, const char* key)
{
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char* p = strstr(json, pattern);
    if (!p) return NULL;
    p += strlen(pattern);
    while (*p == ' ' || *p == ':' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (*p++ != '"') return NULL;
    char* out = malloc(strlen(p) * 2 + 1);
    size_t n = 0;
    while (*p && *p != '"') {
        if (*p != '\\') { out[n++] = *p++; continue; }
        p++;
        switch (*p) {
        case 'n': out[n++] = '\n'; p++; break;
        case 't': out[n++] = '\t'; p++; break;
        case 'r': out[n++] = '\r'; p++; break;
        case 'b': out[n++] = '\b'; p++; break;
        case 'f': out[n++] = '\f'; p++; break;
        case 'u': {
            unsigned cp = (unsigned)strtoul((char[]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            p += 5;
            if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = (unsigned)strtoul((char[]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            n += put_utf8(out + n, cp);
            break;
        }
        default: out[n++] = *p++; break; /* \" \\ \/ */
        }
    }
    out[n] = '\0';
    return out;
}

/* The value of "key": [ints] in a JSON text; returns the count (at most cap). */
static int json_ints(const char* json, const char* key, int32_t* out, int cap)
{
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char* p = strstr(json, pattern);
    if (!p) return -1;
    p = strchr(p, '[');
    if (!p) return -1;
    p++;
    int n = 0;
    while (*p && *p != ']' && n < cap) {
        char* end;
        long v = strtol(p, &end, 10);
        if (end == p) { p++; continue; }
        out[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

/* ------------------------------------------------------------------ generate callbacks */

typedef struct {
    char* text;
    size_t len, cap;
    int calls;
    int stop_after;  /* stop (return 1) after this many calls; 0 = never */
    int bad_piece;   /* a piece was empty or not NUL-terminated */
} collector;

static int32_t collect(const char* text, int32_t len, void* user_data)
{
    collector* c = user_data;
    if (len <= 0 || text[len] != '\0' || (int32_t)strlen(text) != len) c->bad_piece = 1;
    if (c->len + (size_t)len + 1 > c->cap) {
        c->cap = (c->len + (size_t)len + 1) * 2;
        c->text = realloc(c->text, c->cap);
    }
    memcpy(c->text + c->len, text, (size_t)len);
    c->len += (size_t)len;
    c->text[c->len] = '\0';
    c->calls++;
    return c->stop_after > 0 && c->calls >= c->stop_after;
}

static void collector_reset(collector* c)
{
    free(c->text);
    memset(c, 0, sizeof *c);
}

/* A callback that re-enters its own context: the call must fail with BUSY, not corrupt anything. */
typedef struct {
    edgellm_context_t* ctx;
    edgellm_error code;
} reentry;

static int32_t reenter(const char* text, int32_t len, void* user_data)
{
    (void)text; (void)len;
    reentry* r = user_data;
    int32_t tok = 1;
    r->code = edgellm_context_eval(r->ctx, &tok, 1);
    return 1;
}

/* ------------------------------------------------------------------ threads */

typedef struct {
    edgellm_model_t* model;
    const char* golden;
    int ok;
    edgellm_error code;
} thread_job;

static void* generate_on_thread(void* arg)
{
    thread_job* job = arg;
    edgellm_context_params p = edgellm_context_params_default();
    p.temperature = 0.0f;
    p.threads = 1;
    p.context_length = 256;
    edgellm_context_t* ctx = NULL;
    job->code = edgellm_context_create(job->model, &p, &ctx);
    if (job->code != EDGELLM_OK) return NULL;
    collector c = {0};
    const char* prompt = "Once upon a time";
    job->code = edgellm_context_generate(ctx, prompt, (int32_t)strlen(prompt), 200, collect, &c);
    job->ok = job->code == EDGELLM_OK && c.text && strcmp(c.text, job->golden) == 0;
    collector_reset(&c);
    edgellm_context_free(ctx);
    return NULL;
}

/* ------------------------------------------------------------------ chat template */

/* Appends a GGUF string (uint64 length, bytes). */
static size_t put_gguf_string(unsigned char* out, const char* str, size_t len)
{
    uint64_t n = len;
    memcpy(out, &n, 8);
    memcpy(out + 8, str, len);
    return 8 + len;
}

/* Appends a string-valued key/value pair (key, type 8 = GGUF_TYPE_STRING, value). */
static size_t put_gguf_kv(unsigned char* out, const char* key, const char* value, size_t value_len)
{
    size_t n = put_gguf_string(out, key, strlen(key));
    uint32_t type = 8;
    memcpy(out + n, &type, 4);
    n += 4;
    return n + put_gguf_string(out + n, value, value_len);
}

/*
 * Writes a copy of a GGUF file with tokenizer.chat_template = tmpl. The new key/value pairs go right after
 * the 24-byte header (magic, version, n_tensors uint64, n_kv uint64), whose n_kv grows by 2; the second
 * pair is padding that makes the inserted bytes a multiple of 256, so the tensor data, which starts at the
 * next multiple of general.alignment (32 unless the file says otherwise) after the tensor infos, moves by
 * exactly that much and the tensors' offsets (relative to the data start) stay valid.
 */
static int write_with_template(const unsigned char* src, long size, const char* tmpl, const char* path)
{
    size_t tlen = strlen(tmpl);
    unsigned char* kvs = calloc(tlen + 1024, 1);
    size_t n = put_gguf_kv(kvs, "tokenizer.chat_template", tmpl, tlen);
    const char* pad_key = "edgellm.test.padding";
    size_t pad_fixed = 8 + strlen(pad_key) + 4 + 8;
    size_t pad = (256 - (n + pad_fixed) % 256) % 256;
    char spaces[256];
    memset(spaces, ' ', sizeof spaces);
    n += put_gguf_kv(kvs + n, pad_key, spaces, pad);
    unsigned char* out = malloc((size_t)size + n);
    memcpy(out, src, 24);
    uint64_t n_kv;
    memcpy(&n_kv, out + 16, 8);
    n_kv += 2;
    memcpy(out + 16, &n_kv, 8);
    memcpy(out + 24, kvs, n);
    memcpy(out + 24 + n, src + 24, (size_t)size - 24);
    int ok = write_file(path, out, (size_t)size + n);
    free(out);
    free(kvs);
    return ok;
}

/* Renders messages_json with a model's template; returns the code, the text in buf (NUL-terminated here). */
static edgellm_error apply(edgellm_model_t* model, const char* messages_json, int add_gen, char* buf, int32_t capacity, int32_t* n)
{
    *n = -1;
    edgellm_error rc = edgellm_chat_apply_template(model, messages_json, (int32_t)strlen(messages_json), add_gen, buf, capacity - 1, n);
    if (rc == EDGELLM_OK) buf[*n] = '\0';
    return rc;
}

/* A Llama-2-like template over stories260K's <s> / </s>; a role it does not know raises an error. */
static const char CHAT_TEMPLATE[] =
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}Q: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}A: {{ m['content'] }}{{ eos_token }}\n"
    "{% else %}{{ raise_exception('unknown role: ' + m['role']) }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}A:{% endif %}";

static void test_chat_template(edgellm_model_t* plain, const char* model_path, const char* scratch)
{
    long size = 0;
    unsigned char* bytes = (unsigned char*)read_file(model_path, &size);
    if (!bytes) { check(0, "chat: read the model file", "cannot read %s", model_path); return; }
    char path[1024], broken_path[1024];
    snprintf(path, sizeof path, "%s/edgellm-chat-%d.gguf", scratch, (int)getpid());
    snprintf(broken_path, sizeof broken_path, "%s/edgellm-chat-broken-%d.gguf", scratch, (int)getpid());
    check(write_with_template(bytes, size, CHAT_TEMPLATE, path), "chat: write a copy of the model with a template", "cannot write %s", path);
    check(write_with_template(bytes, size, "{% for m in messages %}{{ m.content ", broken_path), "chat: write a copy with a broken template", "cannot write %s", broken_path);
    free(bytes);

    edgellm_model_t* model = NULL;
    edgellm_error rc = edgellm_model_load(path, &model);
    check_code(rc, EDGELLM_OK, "chat: model_load the templated copy");
    if (rc != EDGELLM_OK) { remove(path); remove(broken_path); return; }

    /* JSON escapes (\" \u00e9) and raw UTF-8 (\xc3\xbc = u-umlaut) arrive as text. */
    const char* conversation =
        "[{\"role\": \"system\", \"content\": \"You tell stories.\"},"
        " {\"role\": \"user\", \"content\": \"Hi \\\"there\\\" \\u00e9 \xc3\xbc\"},"
        " {\"role\": \"assistant\", \"content\": \"Once upon a time.\", \"name\": \"ignored\"},"
        " {\"role\": \"user\", \"content\": \"More?\"}]";
    /* The template's leading BOS text is dropped (the tokenizer adds BOS); the EOS text inside stays. */
    const char* expected = "You tell stories.\nQ: Hi \"there\" \xc3\xa9 \xc3\xbc\nA: Once upon a time.</s>\nQ: More?\nA:";
    char buf[1024];
    int32_t n = -1;
    rc = apply(model, conversation, 1, buf, sizeof buf, &n);
    check(rc == EDGELLM_OK && n == (int32_t)strlen(expected) && strcmp(buf, expected) == 0,
          "chat_apply_template renders the injected template", "rc %d (%s), %d bytes: '%s'", (int)rc, edgellm_last_error(), n, rc == EDGELLM_OK ? buf : "");
    rc = apply(model, conversation, 0, buf, sizeof buf, &n);
    check(rc == EDGELLM_OK && n == (int32_t)strlen(expected) - 2 && strncmp(buf, expected, (size_t)n) == 0,
          "chat_apply_template without the generation prompt", "rc %d, %d bytes: '%s'", (int)rc, n, rc == EDGELLM_OK ? buf : "");

    /* The rendering tokenizes into the model's chat format: BOS, then "You" ... with </s> as the EOS token. */
    rc = apply(model, conversation, 1, buf, sizeof buf, &n);
    int32_t ids[128], n_ids = 0, eos = -1;
    edgellm_model_token_eos(model, &eos);
    int has_eos = 0;
    if (edgellm_tokenize(model, buf, n, 1, 1, ids, 128, &n_ids) == EDGELLM_OK)
        for (int i = 0; i < n_ids; i++) has_eos |= ids[i] == eos;
    check(n_ids > 10 && has_eos, "the rendering tokenizes with </s> as the EOS token", "%d ids, eos %s", n_ids, has_eos ? "found" : "missing");

    /* Buffer protocol. */
    n = -1;
    rc = edgellm_chat_apply_template(model, conversation, (int32_t)strlen(conversation), 1, NULL, 0, &n);
    check(rc == EDGELLM_ERROR_BUFFER_TOO_SMALL && n == (int32_t)strlen(expected), "chat_apply_template size query (NULL, 0)", "rc %d, n %d", (int)rc, n);
    memset(buf, 'x', sizeof buf);
    rc = edgellm_chat_apply_template(model, conversation, (int32_t)strlen(conversation), 1, buf, 10, &n);
    check_code(rc, EDGELLM_ERROR_BUFFER_TOO_SMALL, "chat_apply_template too-small buffer");
    check(n == (int32_t)strlen(expected) && buf[0] == 'x', "too-small buffer: needed count reported, buffer untouched", "n %d", n);

    /* An empty conversation renders the generation prompt alone. */
    rc = apply(model, "[]", 1, buf, sizeof buf, &n);
    check(rc == EDGELLM_OK && strcmp(buf, "A:") == 0, "chat_apply_template empty conversation", "rc %d, '%s'", (int)rc, rc == EDGELLM_OK ? buf : "");
    /* content null = empty. */
    rc = apply(model, "[{\"role\": \"user\", \"content\": null}]", 0, buf, sizeof buf, &n);
    check(rc == EDGELLM_OK && strcmp(buf, "Q: \n") == 0, "chat_apply_template null content", "rc %d, '%s'", (int)rc, rc == EDGELLM_OK ? buf : "");

    /* The template's own raise_exception. */
    rc = apply(model, "[{\"role\": \"tool\", \"content\": \"42\"}]", 1, buf, sizeof buf, &n);
    check_code(rc, EDGELLM_ERROR_TEMPLATE, "chat_apply_template: the template raises (unknown role)");
    check(strstr(edgellm_last_error(), "unknown role: tool") != NULL, "the raised message reaches edgellm_last_error", "got '%s'", edgellm_last_error());

    /* Misuse. */
    const char* one = "[{\"role\": \"user\", \"content\": \"Hi\"}]";
    int32_t one_len = (int32_t)strlen(one);
    check_code(edgellm_chat_apply_template(NULL, one, one_len, 1, buf, sizeof buf, &n), EDGELLM_ERROR_NULL_HANDLE, "chat_apply_template NULL model");
    check_code(edgellm_chat_apply_template((edgellm_model_t*)(uintptr_t)0x7654321, one, one_len, 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_HANDLE, "chat_apply_template never-issued handle");
    check_code(edgellm_chat_apply_template(model, NULL, 5, 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template NULL messages_json");
    check_code(edgellm_chat_apply_template(model, one, -1, 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template negative messages_len");
    check_code(edgellm_chat_apply_template(model, one, one_len, 1, buf, -1, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template negative capacity");
    check_code(edgellm_chat_apply_template(model, one, one_len, 1, NULL, 8, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template NULL buf with capacity");
    check_code(edgellm_chat_apply_template(model, one, one_len, 1, buf, sizeof buf, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template NULL n_bytes");
    check_code(apply(model, "[{\"role\": \"user\", \"content\": \"\xff\xfe\"}]", 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template invalid UTF-8");
    check(strstr(edgellm_last_error(), "UTF-8") != NULL, "invalid UTF-8 message says so", "got '%s'", edgellm_last_error());
    check_code(apply(model, "[{\"role\": \"user\"", 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template truncated JSON");
    check(strstr(edgellm_last_error(), "not valid JSON") != NULL, "bad JSON message says so", "got '%s'", edgellm_last_error());
    check_code(apply(model, "{\"role\": \"user\", \"content\": \"Hi\"}", 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template an object, not an array");
    check_code(apply(model, "[{\"role\": \"user\", \"content\": \"Hi\"}, {\"content\": \"no role\"}]", 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template a message without role");
    check(strstr(edgellm_last_error(), "messages_json[1].role") != NULL, "missing role message names the element", "got '%s'", edgellm_last_error());
    check_code(apply(model, "[{\"role\": \"user\", \"content\": 42}]", 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template a number as content");
    check(strstr(edgellm_last_error(), "messages_json[0].content") != NULL, "bad content message names the element", "got '%s'", edgellm_last_error());
    check_code(apply(model, "[\"Hi\"]", 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template a string as message");

    /* Extra template variables: here one that overrides eos_token, which the template writes after the answer. */
    const char* kwargs = "{\"eos_token\": \"<E>\", \"unused\": [1, {\"a\": null}]}";
    const char* expected_kw = "You tell stories.\nQ: Hi \"there\" \xc3\xa9 \xc3\xbc\nA: Once upon a time.<E>\nQ: More?\nA:";
    memset(buf, 0, sizeof buf);
    rc = edgellm_chat_apply_template_kwargs(model, conversation, (int32_t)strlen(conversation), kwargs, (int32_t)strlen(kwargs), 1, buf, sizeof buf - 1, &n);
    check(rc == EDGELLM_OK && n == (int32_t)strlen(expected_kw) && strcmp(buf, expected_kw) == 0,
          "chat_apply_template_kwargs: the variables reach the template", "rc %d (%s), %d bytes: '%s'", (int)rc, edgellm_last_error(), n, rc == EDGELLM_OK ? buf : "");
    memset(buf, 0, sizeof buf);
    rc = edgellm_chat_apply_template_kwargs(model, conversation, (int32_t)strlen(conversation), NULL, 0, 1, buf, sizeof buf - 1, &n);
    check(rc == EDGELLM_OK && strcmp(buf, expected) == 0, "chat_apply_template_kwargs with none renders as chat_apply_template", "rc %d, '%s'", (int)rc, buf);
    check_code(edgellm_chat_apply_template_kwargs(model, one, one_len, NULL, 4, 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template_kwargs NULL kwargs_json with a length");
    check_code(edgellm_chat_apply_template_kwargs(model, one, one_len, "[1]", 3, 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template_kwargs an array, not an object");
    check(strstr(edgellm_last_error(), "kwargs_json must be a JSON object") != NULL, "kwargs message names kwargs_json", "got '%s'", edgellm_last_error());
    check_code(edgellm_chat_apply_template_kwargs(model, one, one_len, "{x", 2, 1, buf, sizeof buf, &n), EDGELLM_ERROR_INVALID_ARGUMENT, "chat_apply_template_kwargs bad JSON");
    check_code(edgellm_chat_apply_template_kwargs(NULL, one, one_len, NULL, 0, 1, buf, sizeof buf, &n), EDGELLM_ERROR_NULL_HANDLE, "chat_apply_template_kwargs NULL model");
    check_code(edgellm_model_free(model), EDGELLM_OK, "chat: model_free the templated copy");

    /* A model without a template: the plain fallback. */
    rc = apply(plain, one, 1, buf, sizeof buf, &n);
    check(rc == EDGELLM_OK && strcmp(buf, "user: Hi\nassistant: ") == 0, "chat_apply_template fallback for a model without a template", "rc %d, '%s'", (int)rc, rc == EDGELLM_OK ? buf : "");

    /* A broken template: the model loads, rendering fails with TEMPLATE. */
    edgellm_model_t* broken = NULL;
    rc = edgellm_model_load(broken_path, &broken);
    check_code(rc, EDGELLM_OK, "chat: a model with a broken template still loads");
    if (rc == EDGELLM_OK) {
        check_code(apply(broken, one, 1, buf, sizeof buf, &n), EDGELLM_ERROR_TEMPLATE, "chat_apply_template broken template");
        check(strstr(edgellm_last_error(), "template line 1") != NULL, "the broken template's message names the line", "got '%s'", edgellm_last_error());
        edgellm_model_free(broken);
    }
    remove(path);
    remove(broken_path);
}

/* ------------------------------------------------------------------ backends */

/* A greedy context on `backend` (context_length 256, 2 CPU threads); *ctx = NULL on failure. */
static edgellm_error create_on(edgellm_model_t* model, int32_t backend, int32_t device, edgellm_context_t** ctx)
{
    edgellm_context_params p = edgellm_context_params_default();
    p.temperature = 0.0f;
    p.threads = 2;
    p.context_length = 256;
    p.backend = backend;
    p.device = device;
    return edgellm_context_create(model, &p, ctx);
}

static int32_t backend_of(edgellm_context_t* ctx)
{
    int32_t b = -1;
    return edgellm_context_backend(ctx, &b) == EDGELLM_OK ? b : -1;
}

/* The context's edgellm_context_description into buf (NUL-terminated here), or "" on failure. */
static const char* describe(edgellm_context_t* ctx, char* buf, int32_t cap)
{
    int32_t n = 0;
    if (edgellm_context_description(ctx, buf, cap - 1, &n) != EDGELLM_OK) n = 0;
    buf[n] = '\0';
    return buf;
}

/* Greedy text of max_tokens tokens after `prompt` from an empty context (reset first); malloc'd, NULL on failure. */
static char* greedy_text(edgellm_context_t* ctx, const char* prompt, int32_t max_tokens)
{
    collector c = {0};
    edgellm_context_reset(ctx);
    edgellm_error rc = edgellm_context_generate(ctx, prompt, (int32_t)strlen(prompt), max_tokens, collect, &c);
    if (rc != EDGELLM_OK) { free(c.text); return NULL; }
    return c.text;
}

/*
 * EDGELLM_BACKEND_VULKAN and _AUTO where a Vulkan driver is installed (lavapipe on CI): the Vulkan context's
 * logits and greedy text must match the CPU's. A missing device is a failure here, not a skip.
 */
static void test_vulkan(edgellm_model_t* model, const char* golden, const int32_t* prompt_ids, int n_prompt)
{
    const char* prompt = "Once upon a time";
    char desc[256];
    edgellm_context_t *cpu = NULL, *vk = NULL, *aut = NULL;
    check_code(create_on(model, EDGELLM_BACKEND_CPU, -1, &cpu), EDGELLM_OK, "context_create backend CPU");
    edgellm_error rc = create_on(model, EDGELLM_BACKEND_VULKAN, -1, &vk);
    check_code(rc, EDGELLM_OK, "context_create backend VULKAN (a Vulkan driver must be installed, e.g. mesa-vulkan-drivers)");
    if (rc != EDGELLM_OK || cpu == NULL) { edgellm_context_free(cpu); edgellm_context_free(vk); return; }
    check(backend_of(vk) == EDGELLM_BACKEND_VULKAN, "VULKAN context reports backend VULKAN", "got %d", backend_of(vk));
    check(strncmp(describe(vk, desc, sizeof desc), "vulkan (", 8) == 0, "VULKAN context description names the device", "got '%s'", desc);
    printf("     vulkan context: %s\n", desc);
    /* lavapipe/llvmpipe and SwiftShader are CPU drivers: AUTO must not take them. */
    int cpu_driver = strstr(desc, "llvmpipe") != NULL || strstr(desc, "lavapipe") != NULL || strstr(desc, "SwiftShader") != NULL;
    int32_t n_desc = -1;
    check_code(edgellm_context_description(vk, NULL, 0, &n_desc), EDGELLM_ERROR_BUFFER_TOO_SMALL, "context_description size query (NULL, 0)");
    check(n_desc == (int32_t)strlen(desc), "context_description size query reports the length", "got %d, want %d", n_desc, (int)strlen(desc));
    char fp[64];
    int32_t n_fp = -1;
    rc = edgellm_context_forward_pass(vk, fp, sizeof fp - 1, &n_fp);
    check(rc == EDGELLM_OK && n_fp == 6 && memcmp(fp, "vulkan", 6) == 0, "context_forward_pass of the VULKAN context is vulkan", "rc %d, n %d", (int)rc, n_fp);

    /* logits of the prompt: Vulkan vs CPU */
    float lc[512], lv[512];
    int32_t n_c = 0, n_v = 0;
    int ok = edgellm_context_eval(cpu, prompt_ids, n_prompt) == EDGELLM_OK && edgellm_context_logits_copy(cpu, lc, 512, &n_c) == EDGELLM_OK
             && edgellm_context_eval(vk, prompt_ids, n_prompt) == EDGELLM_OK && edgellm_context_logits_copy(vk, lv, 512, &n_v) == EDGELLM_OK
             && n_c == 512 && n_v == 512;
    float max_diff = ok ? 0.0f : INFINITY;
    int arg_c = 0, arg_v = 0;
    for (int i = 0; ok && i < 512; i++) {
        float d = fabsf(lc[i] - lv[i]);
        if (!(d <= max_diff)) max_diff = d; /* NaN counts as a difference */
        if (lc[i] > lc[arg_c]) arg_c = i;
        if (lv[i] > lv[arg_v]) arg_v = i;
    }
    check(ok && max_diff < 5e-3f, "VULKAN prompt logits match the CPU's (max abs diff < 5e-3)", "ok %d, max abs diff %g", ok, max_diff);
    printf("     vulkan vs cpu prompt logits: max abs diff %.3g, argmax %d / %d\n", max_diff, arg_v, arg_c);
    /* a batch, then single tokens: the decode path */
    int32_t tok = arg_c;
    float worst = 0.0f;
    for (int i = 0; ok && i < 8; i++) {
        ok = edgellm_context_eval(cpu, &tok, 1) == EDGELLM_OK && edgellm_context_eval(vk, &tok, 1) == EDGELLM_OK
             && edgellm_context_logits_copy(cpu, lc, 512, &n_c) == EDGELLM_OK && edgellm_context_logits_copy(vk, lv, 512, &n_v) == EDGELLM_OK;
        int next = 0;
        for (int j = 0; ok && j < 512; j++) {
            float d = fabsf(lc[j] - lv[j]);
            if (!(d <= worst)) worst = d;
            if (lc[j] > lc[next]) next = j;
        }
        tok = next;
    }
    check(ok && worst < 5e-3f, "VULKAN decode logits (8 single-token evals) match the CPU's (max abs diff < 5e-3)", "ok %d, max abs diff %g", ok, worst);
    printf("     vulkan vs cpu decode logits: max abs diff %.3g\n", worst);

    /* greedy generation through edgellm_context_generate */
    char* tc = greedy_text(cpu, prompt, 48);
    char* tv = greedy_text(vk, prompt, 48);
    check(tc && tv && strcmp(tc, tv) == 0, "VULKAN greedy generation (48 tokens) equals the CPU's", "cpu '%s'\nvulkan '%s'", tc ? tc : "(failed)", tv ? tv : "(failed)");
    check(tv && strncmp(tv, golden, strlen(tv)) == 0, "VULKAN greedy text is the start of llama.cpp's greedy story", "got '%s'", tv ? tv : "(failed)");
    printf("     vulkan greedy: %.60s...\n", tv ? tv : "");
    free(tc);
    free(tv);

    /* the other entry points on a Vulkan context */
    int32_t pos = -1;
    check_code(edgellm_context_reset(vk), EDGELLM_OK, "VULKAN context_reset");
    check(edgellm_context_position(vk, &pos) == EDGELLM_OK && pos == 0, "VULKAN position after reset is 0", "got %d", pos);
    const float* logits = NULL;
    int32_t n_vocab = 0;
    check_code(edgellm_context_logits(vk, &logits, &n_vocab), EDGELLM_ERROR_NO_LOGITS, "VULKAN context_logits after reset");
    int32_t big[300];
    for (int i = 0; i < 300; i++) big[i] = prompt_ids[i % n_prompt];
    check_code(edgellm_context_eval(vk, big, 300), EDGELLM_ERROR_CONTEXT_FULL, "VULKAN context_eval past the context");
    check(edgellm_context_position(vk, &pos) == EDGELLM_OK && pos == 0, "VULKAN: a rejected eval evaluates nothing", "pos %d", pos);
    check_code(edgellm_context_free(vk), EDGELLM_OK, "context_free VULKAN");

    /* strict VULKAN with a device that does not exist: BACKEND_UNAVAILABLE, never the CPU */
    vk = (edgellm_context_t*)0x1;
    check_code(create_on(model, EDGELLM_BACKEND_VULKAN, 99, &vk), EDGELLM_ERROR_BACKEND_UNAVAILABLE, "context_create VULKAN device 99");
    check(vk == NULL && strstr(edgellm_last_error(), "device 99") != NULL, "VULKAN device 99: NULL context, message names the device", "'%s'", edgellm_last_error());
    check_code(create_on(model, EDGELLM_BACKEND_VULKAN, 0, &vk), EDGELLM_OK, "context_create VULKAN device 0");
    check(backend_of(vk) == EDGELLM_BACKEND_VULKAN, "VULKAN device 0 reports backend VULKAN", "got %d", backend_of(vk));
    edgellm_context_free(vk);

    /* AUTO: Vulkan only on a real GPU; on a CPU driver (lavapipe) the CPU */
    rc = create_on(model, EDGELLM_BACKEND_AUTO, -1, &aut);
    check_code(rc, EDGELLM_OK, "context_create backend AUTO");
    int32_t want = cpu_driver ? EDGELLM_BACKEND_CPU : EDGELLM_BACKEND_VULKAN;
    check(backend_of(aut) == want, cpu_driver ? "AUTO on a CPU Vulkan driver (lavapipe) runs on the CPU" : "AUTO on a Vulkan GPU runs on Vulkan",
          "got backend %d, want %d", backend_of(aut), want);
    printf("     auto context: %s\n", describe(aut, desc, sizeof desc));
    char* ta = greedy_text(aut, prompt, 200);
    check(ta && strcmp(ta, golden) == 0, "AUTO context generates llama.cpp's greedy story", "got '%s'", ta ? ta : "(failed)");
    free(ta);
    edgellm_context_free(aut);
    edgellm_context_free(cpu);
}

/*
 * The process was started without a usable Vulkan driver (--no-vulkan-driver): VULKAN must fail with
 * BACKEND_UNAVAILABLE and a message saying why, AUTO must run on the CPU.
 */
/*
 * Quantized KV caches (type_k / type_v) on syn-qwen2-q8_0.gguf beside the given model (heads of 64): the same
 * tokens give logits close to the f16 cache's but not equal to them (the cache really is rounded), q4_0 further
 * off than q8_0, and the description names the types.
 */
static void test_cache_types(const char* model_path)
{
    char path[1024];
    const char* slash = strrchr(model_path, '/');
    snprintf(path, sizeof path, "%.*ssyn-qwen2-q8_0.gguf", slash ? (int)(slash - model_path + 1) : 0, model_path);
    edgellm_model_t* model = NULL;
    edgellm_error rc = edgellm_model_load(path, &model);
    check_code(rc, EDGELLM_OK, "model_load syn-qwen2-q8_0 (beside the test model)");
    if (rc != EDGELLM_OK) return;
    const int32_t tokens[] = { 1, 17, 230, 45, 99, 301, 7, 64, 128, 255, 12, 88, 190, 3, 42, 77, 150, 260, 33, 5 };
    const int32_t n = (int32_t)(sizeof tokens / sizeof tokens[0]);
    float* want = NULL;
    double err8 = -1, err4 = -1, scale = 0;
    const int32_t types[3][2] = { { EDGELLM_CACHE_F16, EDGELLM_CACHE_F16 }, { EDGELLM_CACHE_Q8_0, EDGELLM_CACHE_Q8_0 }, { EDGELLM_CACHE_Q4_0, EDGELLM_CACHE_Q4_0 } };
    for (int i = 0; i < 3; i++) {
        edgellm_context_params p = edgellm_context_params_default();
        p.context_length = 64;
        p.threads = 2;
        p.type_k = types[i][0];
        p.type_v = types[i][1];
        edgellm_context_t* ctx = NULL;
        rc = edgellm_context_create(model, &p, &ctx);
        check_code(rc, EDGELLM_OK, i == 0 ? "context_create cache f16" : i == 1 ? "context_create cache q8_0" : "context_create cache q4_0");
        if (rc != EDGELLM_OK) continue;
        char desc[160];
        if (i == 1) check(strcmp(describe(ctx, desc, sizeof desc), "cpu (2 threads, KV cache K q8_0 V q8_0)") == 0, "context_description names the cache types", "got '%s'", desc);
        const float* logits = NULL;
        int32_t n_vocab = 0;
        check_code(edgellm_context_eval(ctx, tokens, n), EDGELLM_OK, "context_eval with a quantized cache");
        check_code(edgellm_context_logits(ctx, &logits, &n_vocab), EDGELLM_OK, "context_logits with a quantized cache");
        if (logits && n_vocab > 0) {
            if (i == 0) {
                want = malloc((size_t)n_vocab * sizeof(float));
                memcpy(want, logits, (size_t)n_vocab * sizeof(float));
                for (int j = 0; j < n_vocab; j++) scale = fmax(scale, fabs(want[j]));
            } else if (want) {
                double e = 0;
                for (int j = 0; j < n_vocab; j++) e = fmax(e, fabs((double)logits[j] - want[j]));
                if (i == 1) err8 = e; else err4 = e;
            }
        }
        edgellm_context_free(ctx);
    }
    check(err8 > 0 && err8 < 0.05 * scale, "q8_0 cache: logits close to the f16 cache's, not equal", "max diff %g, max |logit| %g", err8, scale);
    check(err4 > err8 && err4 < 0.5 * scale, "q4_0 cache: further off than q8_0, still close", "max diff %g (q8_0 %g), max |logit| %g", err4, err8, scale);
    free(want);
    edgellm_model_free(model);
}

/*
 * A mixture of experts (EDGELLM_TEST_MOE names a file run.sh synthesizes: Granite 3.0 1B-A400M's shape, Q4_0): it
 * loads, VULKAN declines it with the reason, AUTO and CPU run it on the CPU, and its logits are the same bits on 1
 * and 2 threads.
 */
/* A BERT text encoder (EDGELLM_TEST_BERT: all-MiniLM's shape, synthesized by NativeAbiTests). */
static void test_bert(const char* path, const char* decoder_path)
{
    edgellm_encoder_t* enc = NULL;
    edgellm_error rc = edgellm_encoder_load(path, 2, &enc);
    check_code(rc, EDGELLM_OK, "encoder_load all-MiniLM's shape");
    if (rc != EDGELLM_OK) return;
    int32_t n_embd = -1;
    check(edgellm_encoder_n_embd(enc, &n_embd) == EDGELLM_OK && n_embd == 384, "encoder_n_embd is 384", "got %d", n_embd);
    float e1[384], e2[384];
    const char* text = "Hello, world: the quick brown fox";
    rc = edgellm_encoder_embed(enc, text, (int32_t)strlen(text), -1, 2, e1, 384, &n_embd);
    double norm = 0;
    for (int i = 0; rc == EDGELLM_OK && i < 384; i++) norm += (double)e1[i] * e1[i];
    check(rc == EDGELLM_OK && n_embd == 384 && norm > 0.9999 && norm < 1.0001, "encoder_embed: a unit vector of 384", "rc %d, |e|^2 %f", (int)rc, norm);
    rc = edgellm_encoder_embed(enc, text, (int32_t)strlen(text), 1, 2, e2, 384, &n_embd);
    check(rc == EDGELLM_OK && memcmp(e1, e2, sizeof e1) == 0, "encoder_embed: the file's pooling (mean) equals mean", "rc %d", (int)rc);
    rc = edgellm_encoder_embed(enc, text, (int32_t)strlen(text), 2, 2, e2, 384, &n_embd);
    check(rc == EDGELLM_OK && memcmp(e1, e2, sizeof e1) != 0, "encoder_embed: cls pooling differs", "rc %d", (int)rc);
    rc = edgellm_encoder_embed(enc, "HELLO,  World: the QUICK brown fox", 34, 1, 2, e2, 384, &n_embd);
    check(rc == EDGELLM_OK && memcmp(e1, e2, sizeof e1) == 0, "encoder_embed: WordPiece lower-cases and splits punctuation", "rc %d", (int)rc);
    n_embd = -1;
    check_code(edgellm_encoder_embed(enc, text, (int32_t)strlen(text), 1, 2, e1, 100, &n_embd), EDGELLM_ERROR_BUFFER_TOO_SMALL, "encoder_embed too-small buffer");
    check(n_embd == 384, "encoder_embed too-small buffer reports the needed count", "got %d", n_embd);
    check_code(edgellm_encoder_embed(enc, "\xc3", 1, 1, 2, e1, 384, &n_embd), EDGELLM_ERROR_INVALID_ARGUMENT, "encoder_embed invalid UTF-8");
    check_code(edgellm_encoder_embed(enc, text, (int32_t)strlen(text), 4, 2, e1, 384, &n_embd), EDGELLM_ERROR_INVALID_ARGUMENT, "encoder_embed rank pooling");
    check_code(edgellm_encoder_embed(enc, text, (int32_t)strlen(text), 1, 2, e1, 384, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "encoder_embed NULL out_n_embd");
    {
        static char longtext[8192];
        size_t len = 0;
        while (len + 4 < sizeof longtext - 1) { memcpy(longtext + len, "dog ", 4); len += 4; }
        longtext[len] = 0;
        check_code(edgellm_encoder_embed(enc, longtext, (int32_t)len, 1, 2, e1, 384, &n_embd), EDGELLM_ERROR_CONTEXT_FULL, "encoder_embed past the 512 positions");
    }
    check_code(edgellm_encoder_embed(NULL, text, 5, 1, 2, e1, 384, &n_embd), EDGELLM_ERROR_NULL_HANDLE, "encoder_embed NULL encoder");
    edgellm_model_t* m = NULL;
    rc = edgellm_model_load(path, &m);
    check(rc == EDGELLM_ERROR_MODEL_LOAD_FAILED && m == NULL && strstr(edgellm_last_error(), "edgellm_encoder_load") != NULL,
          "model_load refuses an encoder, naming edgellm_encoder_load", "rc %d, '%s'", (int)rc, edgellm_last_error());
    edgellm_encoder_t* wrong = NULL;
    rc = edgellm_encoder_load(decoder_path, 1, &wrong);
    check(rc == EDGELLM_ERROR_MODEL_LOAD_FAILED && wrong == NULL && strstr(edgellm_last_error(), "edgellm_model_load") != NULL,
          "encoder_load refuses a decoder, naming edgellm_model_load", "rc %d, '%s'", (int)rc, edgellm_last_error());
    check_code(edgellm_encoder_free(enc), EDGELLM_OK, "encoder_free");
    check_code(edgellm_encoder_free(enc), EDGELLM_ERROR_INVALID_HANDLE, "encoder_free twice");
    check_code(edgellm_encoder_free(NULL), EDGELLM_OK, "encoder_free NULL");
}

/*
 * EmbeddingGemma (EDGELLM_TEST_EMBEDDING_GEMMA: a tiny gemma-embedding file in F32 with dense layers, synthesized by
 * NativeAbiTests, which passes the first four values TextEmbedder gives the text in EDGELLM_TEST_EMBEDDING_GEMMA_VALUES).
 */
static void test_embedding_gemma(const char* path, const char* expected)
{
    edgellm_encoder_t* enc = NULL;
    edgellm_error rc = edgellm_encoder_load(path, 2, &enc);
    check_code(rc, EDGELLM_OK, "encoder_load gemma-embedding");
    if (rc != EDGELLM_OK) return;
    int32_t n_embd = -1;
    check(edgellm_encoder_n_embd(enc, &n_embd) == EDGELLM_OK && n_embd == 128, "gemma-embedding: encoder_n_embd is 128", "got %d", n_embd);
    float e[128];
    const char* text = "task: search result | query: hello world";
    rc = edgellm_encoder_embed(enc, text, (int32_t)strlen(text), -1, 2, e, 128, &n_embd);
    float want[4] = { 0 };
    int parsed = sscanf(expected, "%f %f %f %f", &want[0], &want[1], &want[2], &want[3]);
    double norm = 0, diff = 0;
    for (int i = 0; rc == EDGELLM_OK && i < 128; i++) norm += (double)e[i] * e[i];
    for (int i = 0; rc == EDGELLM_OK && i < 4; i++) diff = fmax(diff, fabs((double)e[i] - want[i]));
    check(rc == EDGELLM_OK && parsed == 4 && n_embd == 128 && norm > 0.9999 && norm < 1.0001 && diff < 1e-4,
          "gemma-embedding: encoder_embed gives TextEmbedder's vector", "rc %d, |e|^2 %f, max diff %g", (int)rc, norm, diff);
    check_code(edgellm_encoder_free(enc), EDGELLM_OK, "gemma-embedding: encoder_free");
}

/*
 * A reranker (EDGELLM_TEST_RERANKER: ms-marco-MiniLM's shape in F32, synthesized by NativeAbiTests, which also passes the
 * scores TextReranker gives these documents in EDGELLM_TEST_RERANK_SCORES).
 */
static void test_reranker(const char* path, const char* expected, const char* embedder_path)
{
    edgellm_encoder_t* enc = NULL;
    edgellm_error rc = edgellm_encoder_load(path, 2, &enc);
    check_code(rc, EDGELLM_OK, "encoder_load ms-marco-MiniLM's shape");
    if (rc != EDGELLM_OK) return;
    const char* query = "where does the lazy dog sleep";
    const char* docs[3] = { "the quick brown fox", "the lazy dog sleeps all day", "hello world" };
    int32_t lens[3];
    for (int i = 0; i < 3; i++) lens[i] = (int32_t)strlen(docs[i]);
    float scores[3] = { 0 };
    rc = edgellm_encoder_rerank(enc, query, (int32_t)strlen(query), docs, lens, 3, scores, 3);
    check_code(rc, EDGELLM_OK, "encoder_rerank three documents");
    float want[3] = { 0 };
    check(sscanf(expected, "%f %f %f", &want[0], &want[1], &want[2]) == 3, "EDGELLM_TEST_RERANK_SCORES holds three scores", "'%s'", expected);
    for (int i = 0; i < 3; i++) {
        float tol = 1e-3f * (fabsf(want[i]) > 1.0f ? fabsf(want[i]) : 1.0f); /* F32: float order and GELU-table flips only */
        check(fabsf(scores[i] - want[i]) <= tol, "encoder_rerank: TextReranker's score", "document %d: %f, .NET %f", i, scores[i], want[i]);
    }
    float one = 0;
    rc = edgellm_encoder_rerank(enc, query, (int32_t)strlen(query), docs + 1, lens + 1, 1, &one, 1);
    check(rc == EDGELLM_OK && one == scores[1], "encoder_rerank: one document scores as in a batch", "rc %d, %f vs %f", (int)rc, one, scores[1]);
    check_code(edgellm_encoder_rerank(enc, query, (int32_t)strlen(query), docs, lens, 3, scores, 2), EDGELLM_ERROR_BUFFER_TOO_SMALL, "encoder_rerank too-small buffer");
    check_code(edgellm_encoder_rerank(enc, query, (int32_t)strlen(query), docs, lens, 0, scores, 3), EDGELLM_ERROR_INVALID_ARGUMENT, "encoder_rerank no documents");
    check_code(edgellm_encoder_rerank(enc, query, (int32_t)strlen(query), NULL, lens, 3, scores, 3), EDGELLM_ERROR_INVALID_ARGUMENT, "encoder_rerank NULL documents");
    const char* bad[1] = { "\xc3" };
    int32_t bad_len[1] = { 1 };
    rc = edgellm_encoder_rerank(enc, query, (int32_t)strlen(query), bad, bad_len, 1, scores, 3);
    check(rc == EDGELLM_ERROR_INVALID_ARGUMENT && strstr(edgellm_last_error(), "documents[0]") != NULL, "encoder_rerank invalid UTF-8 names documents[0]", "rc %d, '%s'", (int)rc, edgellm_last_error());
    {
        static char longtext[8192];
        size_t len = 0;
        while (len + 4 < sizeof longtext - 1) { memcpy(longtext + len, "dog ", 4); len += 4; }
        longtext[len] = 0;
        const char* longdocs[2] = { "hi", longtext };
        int32_t longlens[2] = { 2, (int32_t)len };
        rc = edgellm_encoder_rerank(enc, query, (int32_t)strlen(query), longdocs, longlens, 2, scores, 3);
        check(rc == EDGELLM_ERROR_CONTEXT_FULL && strstr(edgellm_last_error(), "documents[1]") != NULL, "encoder_rerank past the 512 positions names documents[1]", "rc %d, '%s'", (int)rc, edgellm_last_error());
    }
    check_code(edgellm_encoder_rerank(NULL, query, 5, docs, lens, 3, scores, 3), EDGELLM_ERROR_NULL_HANDLE, "encoder_rerank NULL encoder");
    edgellm_encoder_free(enc);
    /* an embedding model is not a reranker */
    enc = NULL;
    if (edgellm_encoder_load(embedder_path, 1, &enc) == EDGELLM_OK) {
        rc = edgellm_encoder_rerank(enc, query, (int32_t)strlen(query), docs, lens, 3, scores, 3);
        check(rc == EDGELLM_ERROR_INVALID_ARGUMENT && strstr(edgellm_last_error(), "not a reranker") != NULL, "encoder_rerank on an embedding model says it is not a reranker", "rc %d, '%s'", (int)rc, edgellm_last_error());
        edgellm_encoder_free(enc);
    }
}

/*
 * A decoder reranker (EDGELLM_TEST_DECODER_RERANKER: a tiny qwen3 with rank pooling, a yes/no cls.output and a rerank
 * template, written by NativeAbiTests with the scores TextReranker gives in EDGELLM_TEST_DECODER_RERANK_SCORES).
 */
static void test_decoder_reranker(const char* path, const char* expected, edgellm_model_t* plain)
{
    edgellm_model_t* model = NULL;
    edgellm_error rc = edgellm_model_load(path, &model);
    check_code(rc, EDGELLM_OK, "model_load a qwen3 reranker");
    if (rc != EDGELLM_OK) return;
    edgellm_context_t* ctx = NULL;
    rc = create_on(model, EDGELLM_BACKEND_CPU, -1, &ctx);
    check_code(rc, EDGELLM_OK, "context_create on the qwen3 reranker");
    if (rc == EDGELLM_OK) {
        const char* query = "where does the dog sleep";
        const char* docs[3] = { "the quick brown fox", "hello world", "a lazy dog sleeps" };
        int32_t lens[3];
        for (int i = 0; i < 3; i++) lens[i] = (int32_t)strlen(docs[i]);
        float scores[3] = { 0 }, want[3] = { 0 };
        rc = edgellm_context_rerank(ctx, query, (int32_t)strlen(query), docs, lens, 3, scores, 3);
        check_code(rc, EDGELLM_OK, "context_rerank three documents");
        check(sscanf(expected, "%f %f %f", &want[0], &want[1], &want[2]) == 3, "EDGELLM_TEST_DECODER_RERANK_SCORES holds three scores", "'%s'", expected);
        for (int i = 0; i < 3; i++)
            check(fabsf(scores[i] - want[i]) <= 1e-4f && scores[i] > 0 && scores[i] < 1, "context_rerank: TextReranker's probability of yes", "document %d: %f, .NET %f", i, scores[i], want[i]);
        float one = 0;
        rc = edgellm_context_rerank(ctx, query, (int32_t)strlen(query), docs + 2, lens + 2, 1, &one, 1);
        check(rc == EDGELLM_OK && one == scores[2], "context_rerank: the context starts empty for each call", "rc %d, %f vs %f", (int)rc, one, scores[2]);
        check_code(edgellm_context_rerank(ctx, query, (int32_t)strlen(query), docs, lens, 3, scores, 1), EDGELLM_ERROR_BUFFER_TOO_SMALL, "context_rerank too-small buffer");
        {
            static char longtext[4096];
            size_t len = 0;
            while (len + 4 < sizeof longtext - 1) { memcpy(longtext + len, "dog ", 4); len += 4; }
            longtext[len] = 0;
            const char* longdocs[1] = { longtext };
            int32_t longlens[1] = { (int32_t)len };
            rc = edgellm_context_rerank(ctx, query, (int32_t)strlen(query), longdocs, longlens, 1, scores, 3);
            check(rc == EDGELLM_ERROR_CONTEXT_FULL && strstr(edgellm_last_error(), "documents[0]") != NULL, "context_rerank past the context names documents[0]", "rc %d, '%s'", (int)rc, edgellm_last_error());
        }
        edgellm_context_free(ctx);
    }
    edgellm_model_free(model);
    /* a model without rank pooling is not a reranker */
    ctx = NULL;
    if (create_on(plain, EDGELLM_BACKEND_CPU, -1, &ctx) == EDGELLM_OK) {
        const char* doc = "hello";
        int32_t len = 5;
        float s = 0;
        rc = edgellm_context_rerank(ctx, "q", 1, &doc, &len, 1, &s, 1);
        check(rc == EDGELLM_ERROR_INVALID_ARGUMENT && strstr(edgellm_last_error(), "not a reranker") != NULL, "context_rerank on a generative model says it is not a reranker", "rc %d, '%s'", (int)rc, edgellm_last_error());
        edgellm_context_free(ctx);
    }
    check_code(edgellm_context_rerank(NULL, "q", 1, NULL, NULL, 1, NULL, 0), EDGELLM_ERROR_INVALID_ARGUMENT, "context_rerank NULL documents (checked first)");
}

static void test_moe(const char* path)
{
    edgellm_model_t* model = NULL;
    edgellm_error rc = edgellm_model_load(path, &model);
    check_code(rc, EDGELLM_OK, "model_load a mixture of experts");
    if (rc != EDGELLM_OK) return;
    edgellm_context_t* ctx = (edgellm_context_t*)0x1;
    rc = create_on(model, EDGELLM_BACKEND_VULKAN, -1, &ctx);
    check(rc == EDGELLM_ERROR_BACKEND_UNAVAILABLE && ctx == NULL && strstr(edgellm_last_error(), "mixture-of-experts") != NULL,
          "moe: VULKAN declines it and says why", "rc %d, '%s'", (int)rc, edgellm_last_error());
    rc = create_on(model, EDGELLM_BACKEND_AUTO, -1, &ctx);
    check(rc == EDGELLM_OK && backend_of(ctx) == EDGELLM_BACKEND_CPU, "moe: AUTO runs it on the CPU", "rc %d", (int)rc);
    edgellm_context_free(ctx);
    const int32_t tokens[] = { 1, 250, 1000, 4242, 77, 31000, 12, 999 };
    float* first = NULL;
    int32_t n_first = 0;
    for (int threads = 1; threads <= 2; threads++) {
        edgellm_context_params p = edgellm_context_params_default();
        p.context_length = 64;
        p.threads = threads;
        ctx = NULL;
        rc = edgellm_context_create(model, &p, &ctx);
        check_code(rc, EDGELLM_OK, threads == 1 ? "moe: context_create 1 thread" : "moe: context_create 2 threads");
        if (rc != EDGELLM_OK) continue;
        const float* logits = NULL;
        int32_t n_vocab = 0;
        check_code(edgellm_context_eval(ctx, tokens, 8), EDGELLM_OK, "moe: context_eval");
        check_code(edgellm_context_logits(ctx, &logits, &n_vocab), EDGELLM_OK, "moe: context_logits");
        if (logits && n_vocab > 0) {
            int finite = 1;
            for (int j = 0; j < n_vocab; j++) finite &= isfinite(logits[j]) ? 1 : 0;
            check(finite, "moe: finite logits", "thread count %d", threads);
            if (threads == 1) {
                first = malloc((size_t)n_vocab * sizeof(float));
                memcpy(first, logits, (size_t)n_vocab * sizeof(float));
                n_first = n_vocab;
            } else {
                check(first && n_first == n_vocab && memcmp(first, logits, (size_t)n_vocab * sizeof(float)) == 0,
                      "moe: the same logits on 1 and 2 threads", "vocab %d", n_vocab);
            }
        }
        edgellm_context_free(ctx);
    }
    free(first);
    edgellm_model_free(model);
}

static void test_no_vulkan_driver(edgellm_model_t* model, const char* golden)
{
    edgellm_context_t* ctx = (edgellm_context_t*)0x1;
    check_code(create_on(model, EDGELLM_BACKEND_VULKAN, -1, &ctx), EDGELLM_ERROR_BACKEND_UNAVAILABLE, "no driver: context_create VULKAN");
    const char* msg = edgellm_last_error();
    check(ctx == NULL && strstr(msg, "EDGELLM_BACKEND_VULKAN") != NULL && strstr(msg, "Vulkan") != NULL,
          "no driver: VULKAN gives a NULL context and a message saying Vulkan is unavailable", "ctx %p, '%s'", (void*)ctx, msg);
    ctx = (edgellm_context_t*)0x1;
    check_code(create_on(model, EDGELLM_BACKEND_VULKAN, 0, &ctx), EDGELLM_ERROR_BACKEND_UNAVAILABLE, "no driver: context_create VULKAN device 0");
    check(ctx == NULL, "no driver: VULKAN device 0 gives a NULL context", "ctx %p", (void*)ctx);
    edgellm_error rc = create_on(model, EDGELLM_BACKEND_AUTO, -1, &ctx);
    check_code(rc, EDGELLM_OK, "no driver: context_create AUTO");
    check(rc == EDGELLM_OK && backend_of(ctx) == EDGELLM_BACKEND_CPU, "no driver: AUTO runs on the CPU", "got backend %d", backend_of(ctx));
    char* text = rc == EDGELLM_OK ? greedy_text(ctx, "Once upon a time", 200) : NULL;
    check(text && strcmp(text, golden) == 0, "no driver: AUTO generates llama.cpp's greedy story", "got '%s'", text ? text : "(failed)");
    free(text);
    edgellm_context_free(ctx);
    rc = create_on(model, EDGELLM_BACKEND_CPU, -1, &ctx);
    check(rc == EDGELLM_OK && backend_of(ctx) == EDGELLM_BACKEND_CPU, "no driver: CPU context as usual", "rc %d", (int)rc);
    edgellm_context_free(ctx);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char** argv)
{
    int no_vulkan_driver = argc > 1 && strcmp(argv[1], "--no-vulkan-driver") == 0;
    if (no_vulkan_driver) { argv++; argc--; }
    if (argc < 3) {
        fprintf(stderr, "usage: %s [--no-vulkan-driver] MODEL.gguf STORY.json [SCRATCH_DIR]\n", argv[0]);
        return 2;
    }
    const char* model_path = argv[1];
    const char* scratch = argc > 3 ? argv[3] : "/tmp";
    char* json = read_file(argv[2], NULL);
    if (!json) { fprintf(stderr, "cannot read %s\n", argv[2]); return 2; }
    char* golden = json_string(json, "greedy_text");
    int32_t prompt_ids[64], greedy_ids[256];
    int n_prompt = json_ints(json, "prompt_ids", prompt_ids, 64);
    int n_greedy = json_ints(json, "greedy_ids", greedy_ids, 256);
    if (!golden || n_prompt <= 0 || n_greedy <= 0) { fprintf(stderr, "%s: greedy_text/prompt_ids/greedy_ids not found\n", argv[2]); return 2; }
    const char* prompt = "Once upon a time";
    const int32_t prompt_len = (int32_t)strlen(prompt);
    edgellm_error rc;

    if (no_vulkan_driver) {
        edgellm_model_t* m = NULL;
        rc = edgellm_model_load(model_path, &m);
        check_code(rc, EDGELLM_OK, "model_load stories260K");
        if (rc == EDGELLM_OK) test_no_vulkan_driver(m, golden);
        edgellm_model_free(m);
        free(golden);
        free(json);
        printf("%d passed, %d failed\n", g_passed, g_failed);
        return g_failed == 0 ? 0 : 1;
    }

    /* --- library */
    const char* version = edgellm_version();
    check(version && strcmp(version, EDGELLM_VERSION_STRING) == 0, "version matches the header", "got %s, header %s", version ? version : "(NULL)", EDGELLM_VERSION_STRING);
    check(edgellm_last_error() != NULL && edgellm_last_error()[0] == '\0', "last_error is empty before any failure", "got '%s'", edgellm_last_error());

    /* --- model load errors */
    edgellm_model_t* model = (edgellm_model_t*)0x1;
    check_code(edgellm_model_load(NULL, &model), EDGELLM_ERROR_INVALID_ARGUMENT, "model_load NULL path");
    check(model == NULL, "model_load failure sets *out_model = NULL", "got %p", (void*)model);
    check_code(edgellm_model_load(model_path, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "model_load NULL out_model");
    check_code(edgellm_model_load("/nonexistent/dir/model.gguf", &model), EDGELLM_ERROR_MODEL_LOAD_FAILED, "model_load bad path");
    check(strstr(edgellm_last_error(), "'/nonexistent/dir/model.gguf' does not exist") != NULL, "bad path message names the file", "got '%s'", edgellm_last_error());

    char corrupt_path[1024];
    snprintf(corrupt_path, sizeof corrupt_path, "%s/edgellm-corrupt-%d.gguf", scratch, (int)getpid());
    const char garbage[] = "this is not a GGUF file, just some text that is long enough to be read";
    write_file(corrupt_path, garbage, sizeof garbage);
    check_code(edgellm_model_load(corrupt_path, &model), EDGELLM_ERROR_MODEL_LOAD_FAILED, "model_load corrupt model (not GGUF)");
    check_code(edgellm_model_load(scratch, &model), EDGELLM_ERROR_MODEL_LOAD_FAILED, "model_load a directory");
    long model_size = 0;
    char* model_bytes = read_file(model_path, &model_size);
    if (model_bytes) {
        write_file(corrupt_path, model_bytes, (size_t)model_size / 2); /* header intact, tensor data cut off */
        check_code(edgellm_model_load(corrupt_path, &model), EDGELLM_ERROR_MODEL_LOAD_FAILED, "model_load corrupt model (truncated GGUF)");
        memcpy(model_bytes, "GGUF\x63\x00\x00\x00", 8); /* unsupported GGUF version 99 */
        write_file(corrupt_path, model_bytes, (size_t)model_size);
        check_code(edgellm_model_load(corrupt_path, &model), EDGELLM_ERROR_MODEL_LOAD_FAILED, "model_load corrupt model (bad version)");
        free(model_bytes);
    } else {
        check(0, "read the model file", "cannot read %s", model_path);
    }
    remove(corrupt_path);

    /* --- model load and queries */
    rc = edgellm_model_load(model_path, &model);
    check_code(rc, EDGELLM_OK, "model_load stories260K");
    if (rc != EDGELLM_OK) { printf("%d passed, %d failed\n", g_passed, g_failed + 1); return 1; }
    int32_t n_vocab = 0, n_ctx_train = 0, bos = -2, eos = -2, is_eog = -1;
    check(edgellm_model_n_vocab(model, &n_vocab) == EDGELLM_OK && n_vocab == 512, "model_n_vocab", "got %d", n_vocab);
    check(edgellm_model_n_ctx_train(model, &n_ctx_train) == EDGELLM_OK && n_ctx_train == 128, "model_n_ctx_train", "got %d", n_ctx_train);
    check(edgellm_model_token_bos(model, &bos) == EDGELLM_OK && bos == prompt_ids[0], "model_token_bos", "got %d", bos);
    check(edgellm_model_token_eos(model, &eos) == EDGELLM_OK && eos == 2, "model_token_eos", "got %d", eos);
    check(edgellm_model_token_is_eog(model, eos, &is_eog) == EDGELLM_OK && is_eog == 1, "model_token_is_eog(eos)", "got %d", is_eog);
    check(edgellm_model_token_is_eog(model, 403, &is_eog) == EDGELLM_OK && is_eog == 0, "model_token_is_eog(403)", "got %d", is_eog);
    check_code(edgellm_model_token_is_eog(model, 512, &is_eog), EDGELLM_ERROR_INVALID_ARGUMENT, "model_token_is_eog id out of range");
    check_code(edgellm_model_n_vocab(model, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "model_n_vocab NULL out");
    check_code(edgellm_model_n_vocab(NULL, &n_vocab), EDGELLM_ERROR_NULL_HANDLE, "model_n_vocab NULL model");
    check_code(edgellm_model_n_vocab((edgellm_model_t*)(uintptr_t)0x12345678, &n_vocab), EDGELLM_ERROR_INVALID_HANDLE, "model_n_vocab never-issued handle");

    /* --- tokenize */
    int32_t tokens[64];
    int32_t n_tokens = -1;
    rc = edgellm_tokenize(model, prompt, prompt_len, 1, 1, tokens, 64, &n_tokens);
    int same = rc == EDGELLM_OK && n_tokens == n_prompt;
    for (int i = 0; same && i < n_prompt; i++) same = tokens[i] == prompt_ids[i];
    check(same, "tokenize matches llama.cpp's prompt_ids", "rc %d, %d tokens", (int)rc, n_tokens);
    n_tokens = -1;
    rc = edgellm_tokenize(model, prompt, prompt_len, 1, 1, tokens, 2, &n_tokens);
    check_code(rc, EDGELLM_ERROR_BUFFER_TOO_SMALL, "tokenize too-small buffer");
    check(n_tokens == n_prompt, "tokenize too-small buffer reports the needed count", "got %d", n_tokens);
    n_tokens = -1;
    rc = edgellm_tokenize(model, prompt, prompt_len, 0, 0, NULL, 0, &n_tokens);
    check(rc == EDGELLM_ERROR_BUFFER_TOO_SMALL && n_tokens == n_prompt - 1, "tokenize size query (NULL, 0), no BOS", "rc %d, n %d", (int)rc, n_tokens);
    check(edgellm_tokenize(model, NULL, 0, 0, 0, NULL, 0, &n_tokens) == EDGELLM_OK && n_tokens == 0, "tokenize empty text", "n %d", n_tokens);
    check_code(edgellm_tokenize(model, prompt, -1, 1, 1, tokens, 64, &n_tokens), EDGELLM_ERROR_INVALID_ARGUMENT, "tokenize negative text_len");
    check_code(edgellm_tokenize(model, prompt, prompt_len, 1, 1, tokens, -5, &n_tokens), EDGELLM_ERROR_INVALID_ARGUMENT, "tokenize negative capacity");
    check_code(edgellm_tokenize(model, NULL, 4, 1, 1, tokens, 64, &n_tokens), EDGELLM_ERROR_INVALID_ARGUMENT, "tokenize NULL text with length");
    check_code(edgellm_tokenize(model, prompt, prompt_len, 1, 1, NULL, 64, &n_tokens), EDGELLM_ERROR_INVALID_ARGUMENT, "tokenize NULL tokens with capacity");
    check_code(edgellm_tokenize(model, prompt, prompt_len, 1, 1, tokens, 64, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "tokenize NULL n_tokens");
    check_code(edgellm_tokenize(model, "a\xff\xfe", 3, 1, 1, tokens, 64, &n_tokens), EDGELLM_ERROR_INVALID_ARGUMENT, "tokenize invalid UTF-8");
    check_code(edgellm_tokenize(NULL, prompt, prompt_len, 1, 1, tokens, 64, &n_tokens), EDGELLM_ERROR_NULL_HANDLE, "tokenize NULL model");

    /* --- detokenize */
    char buf[1024];
    int32_t n_bytes = -1;
    /* Without BOS: the SentencePiece prefix space comes off the first piece. */
    rc = edgellm_detokenize(model, prompt_ids + 1, n_prompt - 1, 0, 0, buf, sizeof buf, &n_bytes);
    check(rc == EDGELLM_OK && n_bytes == prompt_len && memcmp(buf, prompt, (size_t)prompt_len) == 0, "detokenize prompt_ids without BOS", "rc %d, %d bytes '%.*s'", (int)rc, n_bytes, n_bytes > 0 ? n_bytes : 0, buf);
    /* llama_detokenize: remove_special drops the leading BOS and then keeps the prefix space. */
    rc = edgellm_detokenize(model, prompt_ids, n_prompt, 1, 0, buf, sizeof buf, &n_bytes);
    check(rc == EDGELLM_OK && n_bytes == prompt_len + 1 && memcmp(buf, " Once upon a time", (size_t)n_bytes) == 0, "detokenize with BOS, remove_special", "rc %d, %d bytes '%.*s'", (int)rc, n_bytes, n_bytes > 0 ? n_bytes : 0, buf);
    n_bytes = -1;
    check_code(edgellm_detokenize(model, prompt_ids + 1, n_prompt - 1, 0, 0, buf, 3, &n_bytes), EDGELLM_ERROR_BUFFER_TOO_SMALL, "detokenize too-small buffer");
    check(n_bytes == prompt_len, "detokenize too-small buffer reports the needed count", "got %d", n_bytes);
    check_code(edgellm_detokenize(model, prompt_ids, -1, 1, 0, buf, sizeof buf, &n_bytes), EDGELLM_ERROR_INVALID_ARGUMENT, "detokenize negative n_tokens");
    check_code(edgellm_detokenize(model, prompt_ids, n_prompt, 1, 0, buf, -1, &n_bytes), EDGELLM_ERROR_INVALID_ARGUMENT, "detokenize negative capacity");
    int32_t bad_ids[2] = {403, 100000};
    check_code(edgellm_detokenize(model, bad_ids, 2, 1, 0, buf, sizeof buf, &n_bytes), EDGELLM_ERROR_INVALID_ARGUMENT, "detokenize id out of range");
    rc = edgellm_token_to_piece(model, prompt_ids[1], 0, buf, sizeof buf, &n_bytes);
    check(rc == EDGELLM_OK && n_bytes == 5 && memcmp(buf, " Once", 5) == 0, "token_to_piece", "rc %d, '%.*s'", (int)rc, n_bytes > 0 ? n_bytes : 0, buf);
    n_bytes = -1;
    check_code(edgellm_token_to_piece(model, prompt_ids[1], 0, buf, 2, &n_bytes), EDGELLM_ERROR_BUFFER_TOO_SMALL, "token_to_piece too-small buffer");
    check(n_bytes == 5, "token_to_piece too-small buffer reports the needed count", "got %d", n_bytes);
    check_code(edgellm_token_to_piece(model, -1, 0, buf, sizeof buf, &n_bytes), EDGELLM_ERROR_INVALID_ARGUMENT, "token_to_piece negative id");
    check(edgellm_token_to_piece(model, bos, 0, buf, sizeof buf, &n_bytes) == EDGELLM_OK && n_bytes == 0, "token_to_piece control token without special is empty", "n %d", n_bytes);
    check(edgellm_token_to_piece(model, bos, 1, buf, sizeof buf, &n_bytes) == EDGELLM_OK && n_bytes == 3 && memcmp(buf, "<s>", 3) == 0, "token_to_piece control token with special", "n %d", n_bytes);

    /* --- context parameters */
    edgellm_context_params p = edgellm_context_params_default();
    check(p.context_length == 4096 && p.threads == 0 && p.seed == EDGELLM_SEED_RANDOM && fabsf(p.temperature - 0.8f) < 1e-6f && p.top_k == 40
              && fabsf(p.top_p - 0.95f) < 1e-6f && fabsf(p.min_p - 0.05f) < 1e-6f && p.repeat_penalty == 1.0f && p.repeat_last_n == 64,
          "context_params_default", "got ctx %d threads %d temp %g top_k %d top_p %g min_p %g penalty %g last_n %d", p.context_length, p.threads,
          p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.repeat_last_n);
    check(p.backend == EDGELLM_BACKEND_CPU && p.device == -1, "context_params_default backend CPU, device -1", "got backend %d device %d", p.backend, p.device);

    edgellm_context_t* ctx = (edgellm_context_t*)0x1;
    edgellm_context_params bad = p;
    bad.temperature = NAN;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create NaN temperature");
    check(ctx == NULL && strstr(edgellm_last_error(), "temperature") != NULL, "NaN temperature: NULL context, message names temperature", "'%s'", edgellm_last_error());
    bad = p; bad.top_p = 1.5f;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create top_p 1.5");
    bad = p; bad.top_k = -1;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create top_k -1");
    bad = p; bad.repeat_penalty = 0.0f;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create repeat_penalty 0");
    bad = p; bad.context_length = 0;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create context_length 0");
    bad = p; bad.threads = -1;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create threads -1");
    bad = p; bad.backend = 3;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create backend 3");
    check(ctx == NULL && strstr(edgellm_last_error(), "edgellm_context_params.backend") != NULL, "backend 3: NULL context, message names edgellm_context_params.backend", "'%s'", edgellm_last_error());
    bad = p; bad.backend = -1;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create backend -1");
    bad = p; bad.backend = EDGELLM_BACKEND_VULKAN; bad.device = -2;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create device -2");
    check(strstr(edgellm_last_error(), "edgellm_context_params.device") != NULL, "device -2: message names edgellm_context_params.device", "'%s'", edgellm_last_error());
    check(p.type_k == EDGELLM_CACHE_F16 && p.type_v == EDGELLM_CACHE_F16, "context_params_default cache f16", "got type_k %d type_v %d", p.type_k, p.type_v);
    bad = p; bad.type_k = 3;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create type_k 3");
    check(ctx == NULL && strstr(edgellm_last_error(), "edgellm_context_params.type_k") != NULL, "type_k 3: message names edgellm_context_params.type_k", "'%s'", edgellm_last_error());
    bad = p; bad.type_v = -1;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create type_v -1");
    bad = p; bad.type_k = EDGELLM_CACHE_Q8_0; /* stories260K's heads of 8 are no whole block of 32 */
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create q8_0 cache on heads of 8");
    check(strstr(edgellm_last_error(), "heads have 8") != NULL, "q8_0 cache on heads of 8: the message says why", "'%s'", edgellm_last_error());
    bad = p; bad.type_v = EDGELLM_CACHE_Q4_0; bad.backend = EDGELLM_BACKEND_VULKAN;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create q4_0 cache on VULKAN");
    check(strstr(edgellm_last_error(), "CPU backend only") != NULL, "q4_0 cache on VULKAN: the message says why", "'%s'", edgellm_last_error());
    check(p.swa_full == 0, "context_params_default swa_full 0", "got %d", p.swa_full);
    bad = p; bad.swa_full = 2;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create swa_full 2");
    check(ctx == NULL && strstr(edgellm_last_error(), "edgellm_context_params.swa_full") != NULL, "swa_full 2: message names edgellm_context_params.swa_full", "'%s'", edgellm_last_error());
    bad = p; bad.swa_full = 1; /* stories260K has no sliding-window layers: accepted, no effect */
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_OK, "context_create swa_full 1");
    edgellm_context_free(ctx);
    ctx = NULL;
    test_cache_types(model_path);
    if (getenv("EDGELLM_TEST_MOE")) test_moe(getenv("EDGELLM_TEST_MOE"));
    if (getenv("EDGELLM_TEST_BERT")) test_bert(getenv("EDGELLM_TEST_BERT"), model_path);
    if (getenv("EDGELLM_TEST_EMBEDDING_GEMMA") && getenv("EDGELLM_TEST_EMBEDDING_GEMMA_VALUES"))
        test_embedding_gemma(getenv("EDGELLM_TEST_EMBEDDING_GEMMA"), getenv("EDGELLM_TEST_EMBEDDING_GEMMA_VALUES"));
    if (getenv("EDGELLM_TEST_RERANKER") && getenv("EDGELLM_TEST_RERANK_SCORES") && getenv("EDGELLM_TEST_BERT"))
        test_reranker(getenv("EDGELLM_TEST_RERANKER"), getenv("EDGELLM_TEST_RERANK_SCORES"), getenv("EDGELLM_TEST_BERT"));
    if (getenv("EDGELLM_TEST_DECODER_RERANKER") && getenv("EDGELLM_TEST_DECODER_RERANK_SCORES"))
        test_decoder_reranker(getenv("EDGELLM_TEST_DECODER_RERANKER"), getenv("EDGELLM_TEST_DECODER_RERANK_SCORES"), model);
    bad = p; bad.context_length = 0x7fffffff;
    check_code(edgellm_context_create(model, &bad, &ctx), EDGELLM_ERROR_OUT_OF_MEMORY, "context_create KV cache too large");
    check_code(edgellm_context_create(NULL, &p, &ctx), EDGELLM_ERROR_NULL_HANDLE, "context_create NULL model");
    check_code(edgellm_context_create(model, &p, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "context_create NULL out_ctx");

    /* --- the greedy story through the streaming callback */
    p.temperature = 0.0f;
    p.threads = 2;
    rc = edgellm_context_create(model, &p, &ctx);
    check_code(rc, EDGELLM_OK, "context_create greedy");
    int32_t backend = -1;
    check(edgellm_context_backend(ctx, &backend) == EDGELLM_OK && backend == EDGELLM_BACKEND_CPU, "the default backend is CPU", "got %d", backend);
    check_code(edgellm_context_backend(ctx, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "context_backend NULL out");
    check_code(edgellm_context_backend(NULL, &backend), EDGELLM_ERROR_NULL_HANDLE, "context_backend NULL context");
    char cdesc[128];
    check(strcmp(describe(ctx, cdesc, sizeof cdesc), "cpu (2 threads)") == 0, "context_description of the CPU context", "got '%s'", cdesc);
    int32_t pos = -1;
    const float* logits = NULL;
    check_code(edgellm_context_logits(ctx, &logits, &n_vocab), EDGELLM_ERROR_NO_LOGITS, "context_logits before eval");
    int32_t tok = -1;
    check_code(edgellm_context_sample(ctx, &tok), EDGELLM_ERROR_NO_LOGITS, "context_sample before eval");

    collector c = {0};
    rc = edgellm_context_generate(ctx, prompt, prompt_len, 200, collect, &c);
    check_code(rc, EDGELLM_OK, "context_generate 200 greedy tokens");
    check(c.text != NULL && strcmp(c.text, golden) == 0, "greedy story equals llama.cpp's greedy_text", "got:\n%s\n--- want:\n%s", c.text ? c.text : "(nothing)", golden);
    check(c.calls > 100 && !c.bad_piece, "text arrived streamed in NUL-terminated pieces", "%d calls, bad piece %d", c.calls, c.bad_piece);
    check(edgellm_context_position(ctx, &pos) == EDGELLM_OK && pos == n_prompt + 200, "position after generate = prompt + 200", "got %d", pos);
    printf("     story (%d pieces): %.60s...\n", c.calls, c.text ? c.text : "");
    collector_reset(&c);

    /* --- the forward pass: stories260K has a compile-time specialization; set_generic forces the generic one */
    char fp[256];
    int32_t n_fp = -1;
    rc = edgellm_context_forward_pass(ctx, fp, sizeof fp - 1, &n_fp);
    if (rc == EDGELLM_OK) fp[n_fp] = '\0'; else fp[0] = '\0';
    check(rc == EDGELLM_OK && strcmp(fp, "specialized: stories260k-f32") == 0, "context_forward_pass: specialized", "rc %d, '%s'", (int)rc, fp);
    n_fp = -1;
    check(edgellm_context_forward_pass(ctx, NULL, 0, &n_fp) == EDGELLM_ERROR_BUFFER_TOO_SMALL && n_fp == (int32_t)strlen("specialized: stories260k-f32"),
          "context_forward_pass size query (NULL, 0)", "n %d", n_fp);
    check_code(edgellm_context_forward_pass(ctx, fp, sizeof fp, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "context_forward_pass NULL n_bytes");
    check_code(edgellm_context_forward_pass(NULL, fp, sizeof fp, &n_fp), EDGELLM_ERROR_NULL_HANDLE, "context_forward_pass NULL context");
    check_code(edgellm_model_set_generic(model, 2), EDGELLM_ERROR_INVALID_ARGUMENT, "model_set_generic 2");
    check(strstr(edgellm_last_error(), "generic") != NULL, "model_set_generic 2: message names generic", "'%s'", edgellm_last_error());
    check_code(edgellm_model_set_generic(NULL, 1), EDGELLM_ERROR_NULL_HANDLE, "model_set_generic NULL model");
    check_code(edgellm_model_set_generic(model, 1), EDGELLM_OK, "model_set_generic 1");
    rc = edgellm_context_forward_pass(ctx, fp, sizeof fp - 1, &n_fp);
    if (rc == EDGELLM_OK) fp[n_fp] = '\0'; else fp[0] = '\0';
    check(rc == EDGELLM_OK && strcmp(fp, "generic (forced; specialized: stories260k-f32 available)") == 0, "context_forward_pass after set_generic 1", "rc %d, '%s'", (int)rc, fp);
    {
        char* generic_story = greedy_text(ctx, prompt, 200);
        check(generic_story != NULL && strcmp(generic_story, golden) == 0, "generic path: greedy story equals llama.cpp's too", "got:\n%s", generic_story ? generic_story : "(nothing)");
        free(generic_story);
    }
    check_code(edgellm_model_set_generic(model, 0), EDGELLM_OK, "model_set_generic 0");
    rc = edgellm_context_forward_pass(ctx, fp, sizeof fp - 1, &n_fp);
    if (rc == EDGELLM_OK) fp[n_fp] = '\0'; else fp[0] = '\0';
    check(rc == EDGELLM_OK && strcmp(fp, "specialized: stories260k-f32") == 0, "context_forward_pass after set_generic 0", "rc %d, '%s'", (int)rc, fp);
    /* --- edgellm_context_generate_json: the same greedy model, constrained to a JSON object */
    {
        collector j = {0};
        edgellm_context_reset(ctx);
        rc = edgellm_context_generate_json(ctx, prompt, prompt_len, 40, collect, &j);
        check_code(rc, EDGELLM_OK, "context_generate_json 40 tokens");
        int starts = j.text != NULL && j.text[0] == '{';
        int controls = 0, quotes = 0;
        for (const char* p = j.text; p && *p; p++) {
            if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t') controls++;
            if (*p == '"') quotes++;
        }
        check(starts && controls == 0 && quotes > 0, "generate_json: the text opens a JSON object, has keys, no raw control characters",
              "'%s'", j.text ? j.text : "(nothing)");
        check(j.text != NULL && strncmp(j.text, golden, 20) != 0, "generate_json differs from the unconstrained story", "'%s'", j.text ? j.text : "");
        check(edgellm_context_position(ctx, &pos) == EDGELLM_OK && pos > n_prompt && pos <= n_prompt + 40,
              "generate_json: every delivered token was evaluated", "pos %d", pos);
        printf("     json: %.60s...\n", j.text ? j.text : "");
        collector_reset(&j);
        check_code(edgellm_context_generate_json(ctx, prompt, prompt_len, -2, collect, &j), EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate_json max_tokens -2");
        check(strstr(edgellm_last_error(), "edgellm_context_generate_json") != NULL, "generate_json error names the function", "'%s'", edgellm_last_error());
        check_code(edgellm_context_generate_json(NULL, prompt, prompt_len, 5, collect, &j), EDGELLM_ERROR_NULL_HANDLE, "context_generate_json NULL context");

        /* with a schema: the keys come from the list, "age" is an integer */
        const char* schema = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, \"age\": {\"type\": \"integer\"}}, \"required\": [\"name\", \"age\"]}";
        collector_reset(&j);
        edgellm_context_reset(ctx);
        rc = edgellm_context_generate_json_schema(ctx, prompt, prompt_len, schema, (int32_t)strlen(schema), 60, collect, &j);
        check_code(rc, EDGELLM_OK, "context_generate_json_schema 60 tokens");
        const char* key = j.text ? strchr(j.text, '"') : NULL;
        check(j.text && j.text[0] == '{' && key && (strncmp(key, "\"name\"", 6) == 0 || strncmp(key, "\"age\"", 5) == 0),
              "generate_json_schema: the object's first key is one of the schema's", "'%s'", j.text ? j.text : "(nothing)");
        printf("     json schema: %.70s...\n", j.text ? j.text : "");
        collector_reset(&j);
        const char* bad = "{\"type\": \"object\", \"properties\": {\"a\": {\"allOf\": []}}}";
        check_code(edgellm_context_generate_json_schema(ctx, prompt, prompt_len, bad, (int32_t)strlen(bad), 5, collect, &j),
                   EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate_json_schema with allOf");
        check(strstr(edgellm_last_error(), "schema.properties.a.allOf") != NULL, "unsupported schema: message names the keyword's path", "'%s'", edgellm_last_error());
        check_code(edgellm_context_generate_json_schema(ctx, prompt, prompt_len, NULL, 4, 5, collect, &j),
                   EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate_json_schema NULL schema with a length");
        check_code(edgellm_context_generate_json_schema(ctx, prompt, prompt_len, "{x", 2, 5, collect, &j),
                   EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate_json_schema invalid JSON");
        collector_reset(&j);

        /* a GBNF grammar: one to three list items of short lower-case words, then "done" */
        const char* grammar = "root ::= item{1,3} \"done\"\nitem ::= \"- \" [a-z]{1,8} (\" \" [a-z]{1,8})? \"\\n\"\n";
        edgellm_context_reset(ctx);
        rc = edgellm_context_generate_grammar(ctx, prompt, prompt_len, grammar, (int32_t)strlen(grammar), 80, collect, &j);
        check_code(rc, EDGELLM_OK, "context_generate_grammar 80 tokens");
        size_t glen = j.text ? strlen(j.text) : 0;
        check(glen > 6 && strncmp(j.text, "- ", 2) == 0 && strcmp(j.text + glen - 5, "\ndone") == 0,
              "generate_grammar: a list, then done (the grammar ended generation)", "'%s'", j.text ? j.text : "(nothing)");
        printf("     grammar: %s\n", j.text ? j.text : "");
        collector_reset(&j);
        const char* undefined = "root ::= item\n";
        check_code(edgellm_context_generate_grammar(ctx, prompt, prompt_len, undefined, (int32_t)strlen(undefined), 5, collect, &j),
                   EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate_grammar with an undefined rule");
        check(strstr(edgellm_last_error(), "line 1, column 10") != NULL && strstr(edgellm_last_error(), "'item'") != NULL,
              "bad grammar: message names the rule and where", "'%s'", edgellm_last_error());
        check_code(edgellm_context_generate_grammar(ctx, prompt, prompt_len, NULL, 0, 5, collect, &j),
                   EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate_grammar NULL grammar");
        collector_reset(&j);
    }

    /* back to where the story left off, for the continuation below */
    collector_reset(&c);
    edgellm_context_reset(ctx);
    rc = edgellm_context_generate(ctx, prompt, prompt_len, 200, collect, &c);
    check(rc == EDGELLM_OK && c.text != NULL && strcmp(c.text, golden) == 0, "specialized again: greedy story", "rc %d", (int)rc);
    collector_reset(&c);

    /* --- speculative decoding: stories260K-q8_0 (beside the model) drafts; the greedy story is unchanged */
    {
        char draft_path[4096];
        const char* slash = strrchr(model_path, '/');
        int dir_len = slash ? (int)(slash - model_path) : 1;
        snprintf(draft_path, sizeof draft_path, "%.*s/stories260K-q8_0.gguf", dir_len, slash ? model_path : ".");
        edgellm_model_t* dm = NULL;
        edgellm_context_t* dctx = NULL;
        check_code(edgellm_model_load(draft_path, &dm), EDGELLM_OK, "model_load stories260K-q8_0 (the draft)");
        check_code(create_on(dm, EDGELLM_BACKEND_CPU, -1, &dctx), EDGELLM_OK, "context_create for the draft");
        check_code(edgellm_context_set_draft(ctx, dctx, 8, 0.5f), EDGELLM_OK, "context_set_draft");
        edgellm_context_reset(ctx);
        rc = edgellm_context_generate(ctx, prompt, prompt_len, 200, collect, &c);
        check(rc == EDGELLM_OK && c.text != NULL && strcmp(c.text, golden) == 0, "with a draft: llama.cpp's greedy story, unchanged", "rc %d, '%s'", (int)rc, c.text ? c.text : "");
        int32_t proposed = -1, accepted = -1;
        check(edgellm_context_draft_stats(ctx, &proposed, &accepted) == EDGELLM_OK && proposed > 0 && accepted > 0 && accepted <= proposed,
              "context_draft_stats: proposals made and kept", "proposed %d, accepted %d", proposed, accepted);
        printf("     draft: %d proposed, %d accepted\n", proposed, accepted);
        check(edgellm_context_position(ctx, &pos) == EDGELLM_OK && pos == n_prompt + 200,
              "with a draft: the cache holds the prompt and the delivered tokens only", "pos %d", pos);
        collector_reset(&c);
        check_code(edgellm_context_free(dctx), EDGELLM_ERROR_BUSY, "context_free of an attached draft");
        check(strstr(edgellm_last_error(), "draft") != NULL, "BUSY message says it is a draft", "'%s'", edgellm_last_error());
        check_code(edgellm_context_set_draft(ctx, ctx, 8, 0.5f), EDGELLM_ERROR_INVALID_ARGUMENT, "context_set_draft of the context itself");
        check_code(edgellm_context_set_draft(ctx, dctx, 300, 0.5f), EDGELLM_ERROR_INVALID_ARGUMENT, "context_set_draft max_draft 300");
        check_code(edgellm_context_set_draft(ctx, dctx, 8, NAN), EDGELLM_ERROR_INVALID_ARGUMENT, "context_set_draft p_min NaN");
        check_code(edgellm_context_set_draft(dctx, ctx, 8, 0.5f), EDGELLM_ERROR_INVALID_ARGUMENT, "an attached draft cannot take a draft");
        check_code(edgellm_context_draft_stats(ctx, NULL, &accepted), EDGELLM_ERROR_INVALID_ARGUMENT, "context_draft_stats NULL out");
        check_code(edgellm_context_set_draft(ctx, NULL, 0, 0.0f), EDGELLM_OK, "context_set_draft NULL detaches");
        rc = edgellm_context_generate(ctx, "", 0, 3, collect, &c);
        check(rc == EDGELLM_OK && edgellm_context_draft_stats(ctx, &proposed, &accepted) == EDGELLM_OK && proposed == 0 && accepted == 0,
              "detached: no proposals", "rc %d, proposed %d", (int)rc, proposed);
        collector_reset(&c);
        check_code(edgellm_context_free(dctx), EDGELLM_OK, "context_free of the detached draft");
        edgellm_model_free(dm);

        /* stories260K-q4_0 guesses worse: rejected proposals leave the cache, and the story is still the same */
        snprintf(draft_path, sizeof draft_path, "%.*s/stories260K-q4_0.gguf", dir_len, slash ? model_path : ".");
        check_code(edgellm_model_load(draft_path, &dm), EDGELLM_OK, "model_load stories260K-q4_0 (the draft)");
        check_code(create_on(dm, EDGELLM_BACKEND_CPU, -1, &dctx), EDGELLM_OK, "context_create for the q4_0 draft");
        check_code(edgellm_context_set_draft(ctx, dctx, 16, 0.0f), EDGELLM_OK, "context_set_draft q4_0, 16, p_min 0");
        edgellm_context_reset(ctx);
        rc = edgellm_context_generate(ctx, prompt, prompt_len, 200, collect, &c);
        check(rc == EDGELLM_OK && c.text != NULL && strcmp(c.text, golden) == 0, "with the q4_0 draft: the greedy story, unchanged", "rc %d, '%s'", (int)rc, c.text ? c.text : "");
        check(edgellm_context_draft_stats(ctx, &proposed, &accepted) == EDGELLM_OK && proposed > accepted && accepted > 0,
              "q4_0 draft: some proposals rejected", "proposed %d, accepted %d", proposed, accepted);
        printf("     q4_0 draft: %d proposed, %d accepted\n", proposed, accepted);
        check(edgellm_context_position(ctx, &pos) == EDGELLM_OK && pos == n_prompt + 200, "q4_0 draft: no rejected token left in the cache", "pos %d", pos);
        collector_reset(&c);
        check_code(edgellm_context_free(dctx), EDGELLM_ERROR_BUSY, "context_free of the attached q4_0 draft");
        check_code(edgellm_context_set_draft(ctx, NULL, 0, 0.0f), EDGELLM_OK, "context_set_draft NULL");
        check_code(edgellm_context_free(dctx), EDGELLM_OK, "context_free of the q4_0 draft");
        edgellm_model_free(dm);

        /* seeded sampling: the draft changes nothing either (each token is drawn once, in order, with the same random sequence) */
        {
            edgellm_context_params sp = edgellm_context_params_default();
            sp.temperature = 0.9f;
            sp.seed = 42;
            sp.threads = 2;
            sp.context_length = 256;
            edgellm_context_t* sc = NULL;
            edgellm_model_t* sm = NULL;
            check_code(edgellm_context_create(model, &sp, &sc), EDGELLM_OK, "context_create seeded");
            collector alone = {0}, drafted = {0};
            rc = edgellm_context_generate(sc, prompt, prompt_len, 120, collect, &alone);
            check_code(rc, EDGELLM_OK, "seeded generate alone");
            snprintf(draft_path, sizeof draft_path, "%.*s/stories260K-q8_0.gguf", dir_len, slash ? model_path : ".");
            check_code(edgellm_model_load(draft_path, &sm), EDGELLM_OK, "model_load q8_0 draft for the seeded context");
            check_code(create_on(sm, EDGELLM_BACKEND_CPU, -1, &dctx), EDGELLM_OK, "context_create draft for the seeded context");
            check_code(edgellm_context_set_draft(sc, dctx, 6, 0.3f), EDGELLM_OK, "context_set_draft seeded");
            edgellm_context_reset(sc);
            rc = edgellm_context_generate(sc, prompt, prompt_len, 120, collect, &drafted);
            check(rc == EDGELLM_OK && alone.text && drafted.text && strcmp(alone.text, drafted.text) == 0,
                  "seeded sampling with a draft: the same text as alone", "'%s' vs '%s'", alone.text ? alone.text : "", drafted.text ? drafted.text : "");
            check(edgellm_context_draft_stats(sc, &proposed, &accepted) == EDGELLM_OK && proposed > 0, "seeded: proposals made", "proposed %d, accepted %d", proposed, accepted);
            printf("     seeded, q8_0 draft: %d proposed, %d accepted\n", proposed, accepted);
            collector_reset(&alone);
            collector_reset(&drafted);
            check_code(edgellm_context_free(sc), EDGELLM_OK, "context_free seeded (detaches its draft)");
            check_code(edgellm_context_free(dctx), EDGELLM_OK, "context_free of the draft after its context");
            edgellm_model_free(sm);
        }
        /* back to the story's end without a draft, for the continuation below */
        edgellm_context_reset(ctx);
        rc = edgellm_context_generate(ctx, prompt, prompt_len, 200, collect, &c);
        check(rc == EDGELLM_OK && c.text != NULL && strcmp(c.text, golden) == 0, "draft detached: greedy story", "rc %d", (int)rc);
        collector_reset(&c);
    }

    /* continuing with an empty prompt extends the same sequence */
    c.stop_after = 1;
    rc = edgellm_context_generate(ctx, "", 0, 5, collect, &c);
    check(rc == EDGELLM_OK && c.calls == 1 && edgellm_context_position(ctx, &pos) == EDGELLM_OK && pos == n_prompt + 201,
          "callback returning nonzero stops generation (empty prompt continues)", "rc %d, calls %d, pos %d", (int)rc, c.calls, pos);
    collector_reset(&c);

    /* --- eval / logits / sample */
    check_code(edgellm_context_reset(ctx), EDGELLM_OK, "context_reset");
    check(edgellm_context_position(ctx, &pos) == EDGELLM_OK && pos == 0, "position after reset is 0", "got %d", pos);
    check_code(edgellm_context_eval(ctx, prompt_ids, n_prompt), EDGELLM_OK, "context_eval prompt_ids");
    rc = edgellm_context_logits(ctx, &logits, &n_vocab);
    int argmax = 0;
    for (int i = 1; rc == EDGELLM_OK && i < n_vocab; i++) if (logits[i] > logits[argmax]) argmax = i;
    check(rc == EDGELLM_OK && n_vocab == 512 && argmax == greedy_ids[0], "context_logits argmax = llama.cpp's first greedy token", "rc %d, n_vocab %d, argmax %d want %d", (int)rc, n_vocab, argmax, greedy_ids[0]);
    float copy[512];
    int32_t n_copy = -1;
    rc = edgellm_context_logits_copy(ctx, copy, 512, &n_copy);
    check(rc == EDGELLM_OK && n_copy == 512 && memcmp(copy, logits, sizeof copy) == 0, "context_logits_copy equals context_logits", "rc %d n %d", (int)rc, n_copy);
    n_copy = -1;
    check_code(edgellm_context_logits_copy(ctx, copy, 100, &n_copy), EDGELLM_ERROR_BUFFER_TOO_SMALL, "context_logits_copy too-small buffer");
    check(n_copy == 512, "context_logits_copy too-small buffer reports the needed count", "got %d", n_copy);
    check_code(edgellm_context_logits_copy(ctx, copy, -1, &n_copy), EDGELLM_ERROR_INVALID_ARGUMENT, "context_logits_copy negative capacity");
    check(edgellm_context_sample(ctx, &tok) == EDGELLM_OK && tok == greedy_ids[0], "context_sample (greedy) = first greedy token", "got %d", tok);
    int manual_ok = 1;
    for (int i = 0; i < 10 && manual_ok; i++) {
        manual_ok = edgellm_context_eval(ctx, &tok, 1) == EDGELLM_OK && edgellm_context_sample(ctx, &tok) == EDGELLM_OK && tok == greedy_ids[i + 1];
    }
    check(manual_ok, "eval/sample loop follows llama.cpp's greedy ids for 10 tokens", "diverged");

    /* --- embeddings: a unit vector of n_embd floats, the same twice, the context empty after */
    {
        float e1[64], e2[64];
        int32_t n_embd = -1;
        rc = edgellm_context_embed(ctx, prompt, prompt_len, 1, 2, e1, 64, &n_embd);
        double norm = 0;
        for (int i = 0; rc == EDGELLM_OK && i < 64; i++) norm += (double)e1[i] * e1[i];
        check(rc == EDGELLM_OK && n_embd == 64 && norm > 0.9999 && norm < 1.0001, "context_embed: mean-pooled unit vector of 64", "rc %d, n %d, |e|^2 %f", (int)rc, n_embd, norm);
        check(edgellm_context_position(ctx, &pos) == EDGELLM_OK && pos == 0, "context_embed leaves the context empty", "position %d", pos);
        rc = edgellm_context_embed(ctx, prompt, prompt_len, -1, 2, e2, 64, &n_embd); /* stories names no pooling: mean */
        check(rc == EDGELLM_OK && memcmp(e1, e2, sizeof e1) == 0, "context_embed: the model's pooling (none named: mean) gives the same vector", "rc %d", (int)rc);
        rc = edgellm_context_embed(ctx, prompt, prompt_len, 3, -1, e2, 64, &n_embd);
        check(rc == EDGELLM_OK && memcmp(e1, e2, sizeof e1) != 0, "context_embed: last-token pooling differs", "rc %d", (int)rc);
        n_embd = -1;
        check_code(edgellm_context_embed(ctx, prompt, prompt_len, 1, 2, e1, 10, &n_embd), EDGELLM_ERROR_BUFFER_TOO_SMALL, "context_embed too-small buffer");
        check(n_embd == 64, "context_embed too-small buffer reports the needed count", "got %d", n_embd);
        check_code(edgellm_context_embed(ctx, prompt, prompt_len, 4, 2, e1, 64, &n_embd), EDGELLM_ERROR_INVALID_ARGUMENT, "context_embed rank pooling");
        check_code(edgellm_context_embed(ctx, "\xc3", 1, 1, 2, e1, 64, &n_embd), EDGELLM_ERROR_INVALID_ARGUMENT, "context_embed invalid UTF-8");
        check_code(edgellm_context_embed(ctx, prompt, prompt_len, 1, 2, e1, 64, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "context_embed NULL out_n_embd");
    }

    int32_t bad_tok = 512;
    check_code(edgellm_context_eval(ctx, prompt_ids, -1), EDGELLM_ERROR_INVALID_ARGUMENT, "context_eval negative n_tokens");
    check_code(edgellm_context_eval(ctx, prompt_ids, 0), EDGELLM_ERROR_INVALID_ARGUMENT, "context_eval zero tokens");
    check_code(edgellm_context_eval(ctx, NULL, 3), EDGELLM_ERROR_INVALID_ARGUMENT, "context_eval NULL tokens");
    check_code(edgellm_context_eval(ctx, &bad_tok, 1), EDGELLM_ERROR_INVALID_ARGUMENT, "context_eval token id out of range");
    check_code(edgellm_context_eval(NULL, prompt_ids, 1), EDGELLM_ERROR_NULL_HANDLE, "context_eval NULL context");
    check_code(edgellm_context_eval((edgellm_context_t*)model, prompt_ids, 1), EDGELLM_ERROR_INVALID_HANDLE, "context_eval with a model handle");
    check_code(edgellm_model_n_vocab((edgellm_model_t*)ctx, &n_vocab), EDGELLM_ERROR_INVALID_HANDLE, "model_n_vocab with a context handle");

    /* --- generate argument errors */
    check_code(edgellm_context_generate(ctx, prompt, prompt_len, 10, NULL, NULL), EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate NULL callback");
    check_code(edgellm_context_generate(ctx, prompt, -1, 10, collect, &c), EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate negative prompt_len");
    check_code(edgellm_context_generate(ctx, prompt, prompt_len, -2, collect, &c), EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate max_tokens -2");
    check_code(edgellm_context_generate(ctx, "\xc3", 1, 10, collect, &c), EDGELLM_ERROR_INVALID_ARGUMENT, "context_generate invalid UTF-8 prompt");
    reentry r = {ctx, EDGELLM_OK};
    edgellm_context_reset(ctx);
    rc = edgellm_context_generate(ctx, prompt, prompt_len, 10, reenter, &r);
    check(rc == EDGELLM_OK && r.code == EDGELLM_ERROR_BUSY, "re-entering the context from its callback gives BUSY", "rc %d, inner %d", (int)rc, (int)r.code);
    collector_reset(&c);

    /* --- a full context */
    edgellm_context_params small = p;
    small.context_length = 8;
    edgellm_context_t* sctx = NULL;
    check_code(edgellm_context_create(model, &small, &sctx), EDGELLM_OK, "context_create 8 tokens");
    int32_t nine[9] = {1, 403, 407, 261, 378, 8, 1, 2, 3};
    check_code(edgellm_context_eval(sctx, nine, 9), EDGELLM_ERROR_CONTEXT_FULL, "context_eval past the context");
    check(edgellm_context_position(sctx, &pos) == EDGELLM_OK && pos == 0, "a rejected eval evaluates nothing", "pos %d", pos);
    rc = edgellm_context_generate(sctx, prompt, prompt_len, 50, collect, &c);
    check_code(rc, EDGELLM_ERROR_CONTEXT_FULL, "context_generate fills the context");
    check(c.text != NULL && strncmp(c.text, golden, c.len) == 0 && c.len > 0, "text delivered before the context filled is the story's start", "got '%s'", c.text ? c.text : "");
    collector_reset(&c);
    check_code(edgellm_context_free(sctx), EDGELLM_OK, "context_free small");

    /* --- seeded sampling is reproducible */
    edgellm_context_params warm = edgellm_context_params_default();
    warm.seed = 42;
    warm.context_length = 512;
    edgellm_context_t* wctx = NULL;
    collector c1 = {0}, c2 = {0};
    rc = edgellm_context_create(model, &warm, &wctx);
    if (rc == EDGELLM_OK) {
        edgellm_context_generate(wctx, prompt, prompt_len, 60, collect, &c1);
        edgellm_context_reset(wctx);
        edgellm_context_generate(wctx, prompt, prompt_len, 60, collect, &c2);
    }
    check(rc == EDGELLM_OK && c1.text && c2.text && strcmp(c1.text, c2.text) == 0, "temperature 0.8 with seed 42 is reproducible", "rc %d", (int)rc);
    collector_reset(&c1);
    collector_reset(&c2);
    edgellm_context_free(wctx);

    /* --- two contexts generating on two threads at once */
    thread_job jobs[2] = {{model, golden, 0, EDGELLM_OK}, {model, golden, 0, EDGELLM_OK}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) pthread_create(&threads[i], NULL, generate_on_thread, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    check(jobs[0].ok && jobs[1].ok, "two contexts on two threads both generate the golden story", "codes %d %d", (int)jobs[0].code, (int)jobs[1].code);

    /* --- backends */
    test_vulkan(model, golden, prompt_ids, n_prompt);

    /* --- chat template */
    test_chat_template(model, model_path, scratch);

    /* --- frees */
    check_code(edgellm_context_free(ctx), EDGELLM_OK, "context_free");
    check_code(edgellm_context_free(ctx), EDGELLM_ERROR_INVALID_HANDLE, "context_free twice (double free)");
    check_code(edgellm_context_eval(ctx, prompt_ids, 1), EDGELLM_ERROR_INVALID_HANDLE, "context_eval after free");
    check_code(edgellm_context_free(NULL), EDGELLM_OK, "context_free NULL is a no-op");

    /* a context keeps its model alive after model_free */
    edgellm_context_t* last = NULL;
    p.context_length = 256;
    check_code(edgellm_context_create(model, &p, &last), EDGELLM_OK, "context_create before model_free");
    check_code(edgellm_model_free(model), EDGELLM_OK, "model_free");
    check_code(edgellm_model_free(model), EDGELLM_ERROR_INVALID_HANDLE, "model_free twice (double free)");
    check_code(edgellm_tokenize(model, prompt, prompt_len, 1, 1, tokens, 64, &n_tokens), EDGELLM_ERROR_INVALID_HANDLE, "tokenize after model_free");
    check_code(edgellm_context_create(model, &p, &ctx), EDGELLM_ERROR_INVALID_HANDLE, "context_create on a freed model");
    rc = edgellm_context_generate(last, prompt, prompt_len, 200, collect, &c);
    check(rc == EDGELLM_OK && c.text && strcmp(c.text, golden) == 0, "a context still generates after its model was freed", "rc %d", (int)rc);
    collector_reset(&c);
    check_code(edgellm_context_free(last), EDGELLM_OK, "context_free releases the model");
    check_code(edgellm_model_free(NULL), EDGELLM_OK, "model_free NULL is a no-op");

    free(golden);
    free(json);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
