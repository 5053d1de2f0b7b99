using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using EdgeLlm.Chat;
using EdgeLlm.Chat.Jinja;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Sampling;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Native;

/// <summary>
/// The exported functions of edgellm.h. Each one catches every exception (<see cref="LastError.Fail"/>) and
/// returns an <see cref="EdgeLlmError"/> code, so nothing managed unwinds into C.
/// </summary>
internal static unsafe class Exports
{
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private static readonly byte* s_version = NativeString(Version);

    /// <summary>The library version (kept equal to EDGELLM_VERSION_STRING in edgellm.h; the C test checks it).</summary>
    internal const string Version = "0.7.0";

    private static byte* NativeString(string s)
    {
        int n = Encoding.UTF8.GetByteCount(s);
        var p = (byte*)NativeMemory.Alloc((nuint)n + 1);
        Encoding.UTF8.GetBytes(s, new Span<byte>(p, n));
        p[n] = 0;
        return p;
    }

    // ------------------------------------------------------------------ library

    [UnmanagedCallersOnly(EntryPoint = "edgellm_version")]
    public static byte* EdgellmVersion() => s_version;

    [UnmanagedCallersOnly(EntryPoint = "edgellm_last_error")]
    public static byte* EdgellmLastError() => LastError.Get();

    // ------------------------------------------------------------------ model

    [UnmanagedCallersOnly(EntryPoint = "edgellm_model_load")]
    public static int ModelLoad(byte* path, nint* outModel)
    {
        try
        {
            if (outModel == null) throw new ArgumentException("out_model is NULL");
            *outModel = 0;
            if (path == null) throw new ArgumentException("path is NULL");
            string file = DecodeUtf8(MemoryMarshal.CreateReadOnlySpanFromNullTerminated(path), "path");
            if (!File.Exists(file))
                throw new EdgeLlmException(EdgeLlmError.ModelLoadFailed, Directory.Exists(file) ? $"'{file}' is a directory, not a GGUF file" : $"'{file}' does not exist");
            NativeModel nm;
            try
            {
                using (var peek = EdgeLlm.Gguf.GgufFile.Open(file))
                    if (BertModel.IsEncoder(peek))
                        throw new ModelLoadException($"its architecture '{peek.GetString("general.architecture")}' is a text encoder (an embedding model), which generates no text: load it with edgellm_encoder_load");
                // Repacked for the CPU only when a CPU context is created (Backends.OnCpu), so a model that
                // only feeds Vulkan contexts never holds a repacked copy.
                var model = Model.Load(file, new ModelLoadOptions { RepackWeights = false });
                try
                {
                    nm = new NativeModel(model, Tokenizer.FromGguf(model.File));
                }
                catch
                {
                    model.Dispose();
                    throw;
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new EdgeLlmException(EdgeLlmError.ModelLoadFailed, $"cannot load '{file}': {e.Message}");
            }
            *outModel = HandleTable.Add(nm);
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_model_load");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_model_free")]
    public static int ModelFree(nint model)
    {
        try
        {
            Remove<NativeModel>(model, "model")?.Release();
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_model_free");
        }
    }

    /// <summary>Invalidates a handle (a NULL one is a no-op: null) and gives its object back, whose reference the caller drops.</summary>
    private static T? Remove<T>(nint handle, string kind) where T : class
    {
        if (handle == 0) return null;
        lock (HandleTable.Sync)
        {
            var target = HandleTable.GetLocked<T>(handle, kind);
            HandleTable.RemoveLocked(handle);
            return target;
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_model_set_generic")]
    public static int ModelSetGeneric(nint model, int generic)
    {
        try
        {
            if (generic is not (0 or 1)) throw new ArgumentException($"generic must be 0 or 1, got {generic}");
            var m = NativeModel.Acquire(model);
            try
            {
                // Model.RunGeneric is read once per forward pass: a pass already running finishes on its path.
                m.Model.RunGeneric = generic == 1;
            }
            finally
            {
                m.Release();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_model_set_generic");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_model_n_vocab")]
    public static int ModelNVocab(nint model, int* outNVocab) => ModelQuery(model, outNVocab, m => m.Model.Config.VocabSize, "edgellm_model_n_vocab");

    [UnmanagedCallersOnly(EntryPoint = "edgellm_model_n_ctx_train")]
    public static int ModelNCtxTrain(nint model, int* outNCtxTrain) => ModelQuery(model, outNCtxTrain, m => m.Model.Config.TrainingContextLength, "edgellm_model_n_ctx_train");

    [UnmanagedCallersOnly(EntryPoint = "edgellm_model_token_bos")]
    public static int ModelTokenBos(nint model, int* outToken) => ModelQuery(model, outToken, m => m.Tokenizer.Bos, "edgellm_model_token_bos");

    [UnmanagedCallersOnly(EntryPoint = "edgellm_model_token_eos")]
    public static int ModelTokenEos(nint model, int* outToken) => ModelQuery(model, outToken, m => m.Tokenizer.Eos, "edgellm_model_token_eos");

    [UnmanagedCallersOnly(EntryPoint = "edgellm_model_token_is_eog")]
    public static int ModelTokenIsEog(nint model, int token, int* outIsEog)
    {
        return ModelQuery(model, outIsEog, m =>
        {
            CheckToken(m, token);
            return m.Tokenizer.IsEndOfGeneration(token) ? 1 : 0;
        }, "edgellm_model_token_is_eog");
    }

    /// <summary>A model read that writes one int: the shared null/handle/exception handling.</summary>
    private static int ModelQuery(nint model, int* result, Func<NativeModel, int> read, string function)
    {
        try
        {
            if (result == null) throw new ArgumentException("the output pointer is NULL");
            var m = NativeModel.Acquire(model);
            try
            {
                *result = read(m);
            }
            finally
            {
                m.Release();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, function);
        }
    }

    // ------------------------------------------------------------------ tokenizer

    [UnmanagedCallersOnly(EntryPoint = "edgellm_tokenize")]
    public static int Tokenize(nint model, byte* text, int textLen, int addSpecial, int parseSpecial, int* tokens, int capacity, int* nTokens)
    {
        try
        {
            if (nTokens == null) throw new ArgumentException("n_tokens is NULL");
            string s = DecodeUtf8(Input(text, textLen, "text"), "text");
            CheckOutput(tokens, capacity, "tokens");
            var m = NativeModel.Acquire(model);
            try
            {
                int[] ids = m.Tokenizer.Encode(s, addSpecial != 0, parseSpecial != 0);
                *nTokens = ids.Length;
                if (ids.Length > capacity)
                    throw new EdgeLlmException(EdgeLlmError.BufferTooSmall, $"the text is {ids.Length} tokens but the buffer holds {capacity}");
                ids.AsSpan().CopyTo(new Span<int>(tokens, capacity));
            }
            finally
            {
                m.Release();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_tokenize");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_token_to_piece")]
    public static int TokenToPiece(nint model, int token, int special, byte* buf, int capacity, int* nBytes)
    {
        try
        {
            if (nBytes == null) throw new ArgumentException("n_bytes is NULL");
            CheckOutput(buf, capacity, "buf");
            var m = NativeModel.Acquire(model);
            try
            {
                CheckToken(m, token);
                byte[] piece = m.Tokenizer.TokenToBytes(token, special != 0);
                return WriteBytes(piece, buf, capacity, nBytes);
            }
            finally
            {
                m.Release();
            }
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_token_to_piece");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_detokenize")]
    public static int Detokenize(nint model, int* tokens, int nTokens, int removeSpecial, int unparseSpecial, byte* text, int capacity, int* nBytes)
    {
        try
        {
            if (nBytes == null) throw new ArgumentException("n_bytes is NULL");
            var ids = Input(tokens, nTokens, "tokens");
            CheckOutput(text, capacity, "text");
            var m = NativeModel.Acquire(model);
            try
            {
                for (int i = 0; i < ids.Length; i++) CheckToken(m, ids[i]);
                string s = m.Tokenizer.Detokenize(ids.ToArray(), removeSpecial != 0, unparseSpecial != 0);
                return WriteBytes(Encoding.UTF8.GetBytes(s), text, capacity, nBytes);
            }
            finally
            {
                m.Release();
            }
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_detokenize");
        }
    }

    // ------------------------------------------------------------------ chat template

    [UnmanagedCallersOnly(EntryPoint = "edgellm_chat_apply_template")]
    public static int ChatApplyTemplate(nint model, byte* messagesJson, int messagesLen, int addGenerationPrompt, byte* buf, int capacity, int* nBytes) =>
        ApplyTemplate(model, messagesJson, messagesLen, null, 0, addGenerationPrompt, buf, capacity, nBytes, "edgellm_chat_apply_template");

    [UnmanagedCallersOnly(EntryPoint = "edgellm_chat_apply_template_kwargs")]
    public static int ChatApplyTemplateKwargs(nint model, byte* messagesJson, int messagesLen, byte* kwargsJson, int kwargsLen, int addGenerationPrompt,
        byte* buf, int capacity, int* nBytes) =>
        ApplyTemplate(model, messagesJson, messagesLen, kwargsJson, kwargsLen, addGenerationPrompt, buf, capacity, nBytes, "edgellm_chat_apply_template_kwargs");

    /// <summary>Both template exports; <paramref name="kwargsJson"/> NULL with length 0: no extra variables.</summary>
    private static int ApplyTemplate(nint model, byte* messagesJson, int messagesLen, byte* kwargsJson, int kwargsLen, int addGenerationPrompt,
        byte* buf, int capacity, int* nBytes, string function)
    {
        try
        {
            if (nBytes == null) throw new ArgumentException("n_bytes is NULL");
            string json = DecodeUtf8(Input(messagesJson, messagesLen, "messages_json"), "messages_json");
            Dictionary<string, object?>? variables = null;
            if (kwargsJson != null || kwargsLen != 0)
            {
                string kwargs = DecodeUtf8(Input(kwargsJson, kwargsLen, "kwargs_json"), "kwargs_json");
                try { variables = TemplateVariables.Parse(kwargs, "kwargs_json"); }
                catch (FormatException e) { throw new ArgumentException(e.Message); }
            }
            CheckOutput(buf, capacity, "buf");
            var messages = ParseMessages(json);
            var m = NativeModel.Acquire(model);
            try
            {
                string text;
                try
                {
                    text = ChatPrompt.Render(m.Template, m.Tokenizer, messages, addGenerationPrompt != 0, variables: variables);
                }
                catch (TemplateException e)
                {
                    throw new EdgeLlmException(EdgeLlmError.Template, $"the chat template failed: {e.Message}");
                }
                return WriteBytes(Encoding.UTF8.GetBytes(text), buf, capacity, nBytes);
            }
            finally
            {
                m.Release();
            }
        }
        catch (Exception e)
        {
            return LastError.Fail(e, function);
        }
    }

    /// <summary>
    /// messages_json: a JSON array of objects with a string "role" and a string (or null: empty) "content";
    /// other keys are ignored. The message of a bad document names the element and the key.
    /// </summary>
    private static List<ChatTurn> ParseMessages(string json)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"messages_json is not valid JSON: {e.Message}");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
                throw new ArgumentException($"messages_json must be an array of {{\"role\", \"content\"}} objects, got {Kind(doc.RootElement.ValueKind)}");
            var messages = new List<ChatTurn>(doc.RootElement.GetArrayLength());
            int i = 0;
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Object)
                    throw new ArgumentException($"messages_json[{i}] must be an object with \"role\" and \"content\", got {Kind(e.ValueKind)}");
                if (!e.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                    throw new ArgumentException($"messages_json[{i}].role must be a string, got {(role.ValueKind == JsonValueKind.Undefined ? "nothing" : Kind(role.ValueKind))}");
                string content = "";
                if (e.TryGetProperty("content", out var c) && c.ValueKind != JsonValueKind.Null)
                {
                    if (c.ValueKind != JsonValueKind.String)
                        throw new ArgumentException($"messages_json[{i}].content must be a string (or null), got {Kind(c.ValueKind)}");
                    content = c.GetString()!;
                }
                else if (c.ValueKind == JsonValueKind.Undefined)
                {
                    throw new ArgumentException($"messages_json[{i}].content is missing");
                }
                messages.Add(new ChatTurn(role.GetString()!, content));
                i++;
            }
            return messages;
        }
    }

    private static string Kind(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    // ------------------------------------------------------------------ context

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_params_default")]
    public static ContextParams ContextParamsDefault() => ContextParams.Default();

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_create")]
    public static int ContextCreate(nint model, ContextParams* parameters, nint* outCtx)
    {
        try
        {
            if (outCtx == null) throw new ArgumentException("out_ctx is NULL");
            *outCtx = 0;
            var p = parameters != null ? *parameters : ContextParams.Default();
            if (p.ContextLength < 1) throw new ArgumentException($"edgellm_context_params.context_length must be >= 1, got {p.ContextLength}");
            if (p.Threads < 0) throw new ArgumentException($"edgellm_context_params.threads must be >= 0 (0 = one per processor), got {p.Threads}");
            var options = p.ToSamplerOptions();
            var (backend, device) = p.ToBackend();
            var (typeK, typeV) = p.ToCacheTypes();
            bool swaFull = p.ToFullSlidingWindowCache();
            if ((typeK != KvCacheType.F16 || typeV != KvCacheType.F16) && backend == NativeBackend.Vulkan)
                throw new ArgumentException($"edgellm_context_params.type_k/type_v: a quantized KV cache ({typeK.Name()}/{typeV.Name()}) runs on the CPU backend only; EDGELLM_BACKEND_VULKAN keeps an f16 cache");
            var m = NativeModel.Acquire(model); // the context's reference, released by its Dispose
            NativeContext? created = null;
            try
            {
                var ctx = Backends.Create(m.Model, backend, device, p.ContextLength, p.Threads, typeK, typeV, swaFull);
                try
                {
                    created = new NativeContext(m, ctx.Context, ctx.Backend, ctx.Device, new Sampler(options, m.Model.Config.VocabSize));
                }
                catch
                {
                    ctx.Context.Dispose();
                    ctx.Device?.Dispose();
                    throw;
                }
                *outCtx = HandleTable.Add(created);
            }
            catch
            {
                if (created is not null) created.Dispose(); // releases the model reference too
                else m.Release();
                throw;
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_create");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_free")]
    public static int ContextFree(nint ctx)
    {
        try
        {
            if (ctx == 0) return 0;
            NativeContext.Free(ctx);
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_free");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_reset")]
    public static int ContextReset(nint ctx)
    {
        try
        {
            var c = NativeContext.Enter(ctx);
            try
            {
                c.Reset();
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_reset");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_set_draft")]
    public static int ContextSetDraft(nint ctx, nint draft, int maxDraft, float minProbability)
    {
        try
        {
            if (maxDraft is < 0 or > 256) throw new ArgumentException($"max_draft must be in 0..256 (0 = off), got {maxDraft}");
            if (!(minProbability >= 0f && minProbability <= 1f)) throw new ArgumentException($"p_min must be in [0, 1], got {minProbability}");
            if (draft != 0 && draft == ctx) throw new ArgumentException("draft is the context itself");
            var c = NativeContext.Enter(ctx);
            try
            {
                if (draft == 0)
                {
                    c.SetDraft(null, 0, 0);
                    return 0;
                }
                if (c.AttachedAsDraft > 0) throw new ArgumentException("the context is itself the draft of another context");
                var d = NativeContext.Enter(draft);
                try
                {
                    if (d.DraftContext is not null) throw new ArgumentException("draft has a draft of its own: detach it first");
                    if (d.AttachedAsDraft > 0 && d != c.DraftContext) throw new EdgeLlmException(EdgeLlmError.Busy, "draft is already the draft of another context");
                    Drafter.CheckSameVocabulary(c.Model.Tokenizer, d.Model.Tokenizer, "draft");
                    c.SetDraft(d, maxDraft, minProbability);
                }
                finally
                {
                    d.Leave();
                }
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_set_draft");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_draft_stats")]
    public static int ContextDraftStats(nint ctx, int* outProposed, int* outAccepted)
    {
        try
        {
            if (outProposed == null) throw new ArgumentException("out_proposed is NULL");
            if (outAccepted == null) throw new ArgumentException("out_accepted is NULL");
            var c = NativeContext.Enter(ctx);
            try
            {
                *outProposed = c.Drafted;
                *outAccepted = c.AcceptedDrafts;
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_draft_stats");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_position")]
    public static int ContextPosition(nint ctx, int* outPosition)
    {
        try
        {
            if (outPosition == null) throw new ArgumentException("out_position is NULL");
            var c = NativeContext.Enter(ctx);
            try
            {
                *outPosition = c.Context.Position;
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_position");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_backend")]
    public static int ContextBackend(nint ctx, int* outBackend)
    {
        try
        {
            if (outBackend == null) throw new ArgumentException("out_backend is NULL");
            var c = NativeContext.Enter(ctx);
            try
            {
                *outBackend = (int)c.Backend;
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_backend");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_description")]
    public static int ContextDescription(nint ctx, byte* buf, int capacity, int* nBytes)
    {
        try
        {
            if (nBytes == null) throw new ArgumentException("n_bytes is NULL");
            CheckOutput(buf, capacity, "buf");
            var c = NativeContext.Enter(ctx);
            try
            {
                return WriteBytes(Encoding.UTF8.GetBytes(c.Context.Description), buf, capacity, nBytes);
            }
            finally
            {
                c.Leave();
            }
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_description");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_forward_pass")]
    public static int ContextForwardPass(nint ctx, byte* buf, int capacity, int* nBytes)
    {
        try
        {
            if (nBytes == null) throw new ArgumentException("n_bytes is NULL");
            CheckOutput(buf, capacity, "buf");
            var c = NativeContext.Enter(ctx);
            try
            {
                // The CPU context runs the model's forward pass (specialized or generic, as `edgellm info` words
                // it); a Vulkan context runs the device's.
                string text = c.Backend == NativeBackend.Vulkan ? "vulkan" : Specialized.SpecializationRegistry.Describe(c.Model.Model);
                return WriteBytes(Encoding.UTF8.GetBytes(text), buf, capacity, nBytes);
            }
            finally
            {
                c.Leave();
            }
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_forward_pass");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_eval")]
    public static int ContextEval(nint ctx, int* tokens, int nTokens)
    {
        try
        {
            var ids = Input(tokens, nTokens, "tokens");
            if (ids.IsEmpty) throw new ArgumentException("n_tokens must be >= 1, got 0");
            var c = NativeContext.Enter(ctx);
            try
            {
                foreach (int t in ids) CheckToken(c.Model, t);
                c.Eval(ids);
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_eval");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_logits")]
    public static int ContextLogits(nint ctx, float** outLogits, int* outNVocab)
    {
        try
        {
            if (outLogits == null || outNVocab == null) throw new ArgumentException("out_logits or out_n_vocab is NULL");
            *outLogits = null;
            *outNVocab = 0;
            var c = NativeContext.Enter(ctx);
            try
            {
                if (!c.HasLogits) throw new EdgeLlmException(EdgeLlmError.NoLogits, "no logits yet: evaluate tokens first");
                *outLogits = c.Logits;
                *outNVocab = c.VocabSize;
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_logits");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_logits_copy")]
    public static int ContextLogitsCopy(nint ctx, float* dst, int capacity, int* outNVocab)
    {
        try
        {
            if (outNVocab == null) throw new ArgumentException("out_n_vocab is NULL");
            CheckOutput(dst, capacity, "dst");
            var c = NativeContext.Enter(ctx);
            try
            {
                if (!c.HasLogits) throw new EdgeLlmException(EdgeLlmError.NoLogits, "no logits yet: evaluate tokens first");
                *outNVocab = c.VocabSize;
                if (capacity < c.VocabSize)
                    throw new EdgeLlmException(EdgeLlmError.BufferTooSmall, $"the logits are {c.VocabSize} floats but the buffer holds {capacity}");
                new ReadOnlySpan<float>(c.Logits, c.VocabSize).CopyTo(new Span<float>(dst, capacity));
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_logits_copy");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_embed")]
    public static int ContextEmbed(nint ctx, byte* text, int textLen, int pooling, int normalize, float* dst, int capacity, int* outNEmbd)
    {
        try
        {
            string s = CheckEmbedArguments(text, textLen, pooling, normalize, dst, capacity, outNEmbd);
            var c = NativeContext.Enter(ctx);
            try
            {
                if (c.Context is not InferenceContext cpu)
                    throw new EdgeLlmException(EdgeLlmError.BackendUnavailable, "embeddings run on the CPU backend: create the context with backend cpu");
                int embd = cpu.Model.Config.EmbeddingLength;
                *outNEmbd = embd;
                if (capacity < embd) throw new EdgeLlmException(EdgeLlmError.BufferTooSmall, $"the embedding is {embd} floats but the buffer holds {capacity}");
                var embedder = new TextEmbedder(cpu, c.Model.Tokenizer, EmbedPooling(pooling, cpu.Model.File, cpu.Model.Config.Architecture), normalize);
                int[] tokens = embedder.Tokenize(s);
                if (tokens.Length > cpu.ContextLength)
                    throw new EdgeLlmException(EdgeLlmError.ContextFull, $"the text is {tokens.Length} tokens; the context holds {cpu.ContextLength}");
                try
                {
                    embedder.Embed(tokens).AsSpan().CopyTo(new Span<float>(dst, capacity));
                }
                finally
                {
                    c.Reset(); // the cache held this text from position 0: the context starts empty again
                }
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_embed");
        }
    }

    // ------------------------------------------------------------------ encoder (text embeddings from BERT models)

    [UnmanagedCallersOnly(EntryPoint = "edgellm_encoder_load")]
    public static int EncoderLoad(byte* path, int threads, nint* outEncoder)
    {
        try
        {
            if (outEncoder == null) throw new ArgumentException("out_encoder is NULL");
            *outEncoder = 0;
            if (path == null) throw new ArgumentException("path is NULL");
            if (threads < 0 || threads > 1024) throw new ArgumentException($"threads must be 0 (the physical cores) .. 1024, got {threads}");
            string file = DecodeUtf8(MemoryMarshal.CreateReadOnlySpanFromNullTerminated(path), "path");
            if (!File.Exists(file))
                throw new EdgeLlmException(EdgeLlmError.ModelLoadFailed, Directory.Exists(file) ? $"'{file}' is a directory, not a GGUF file" : $"'{file}' does not exist");
            NativeEncoder ne;
            try
            {
                var bert = BertModel.Load(file, threads);
                try
                {
                    ne = new NativeEncoder(bert, Tokenizer.FromGguf(bert.File));
                }
                catch
                {
                    bert.Dispose();
                    throw;
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                string hint = e is ModelLoadException && e.Message.Contains("not a BERT encoder", StringComparison.Ordinal) ? " (a model that generates text loads with edgellm_model_load)" : "";
                throw new EdgeLlmException(EdgeLlmError.ModelLoadFailed, $"cannot load '{file}' as an encoder: {e.Message}{hint}");
            }
            *outEncoder = HandleTable.Add(ne);
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_encoder_load");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_encoder_free")]
    public static int EncoderFree(nint encoder)
    {
        try
        {
            Remove<NativeEncoder>(encoder, "encoder")?.Release();
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_encoder_free");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_encoder_n_embd")]
    public static int EncoderNEmbd(nint encoder, int* outNEmbd)
    {
        try
        {
            if (outNEmbd == null) throw new ArgumentException("out_n_embd is NULL");
            var e = NativeEncoder.Acquire(encoder);
            try { *outNEmbd = e.Encoder.EmbeddingLength; }
            finally { e.Release(); }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_encoder_n_embd");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_encoder_embed")]
    public static int EncoderEmbed(nint encoder, byte* text, int textLen, int pooling, int normalize, float* dst, int capacity, int* outNEmbd)
    {
        try
        {
            string s = CheckEmbedArguments(text, textLen, pooling, normalize, dst, capacity, outNEmbd);
            var e = NativeEncoder.Acquire(encoder);
            try
            {
                var bert = e.Encoder;
                int embd = bert.EmbeddingLength;
                *outNEmbd = embd;
                if (capacity < embd) throw new EdgeLlmException(EdgeLlmError.BufferTooSmall, $"the embedding is {embd} floats but the buffer holds {capacity}");
                var embedder = new TextEmbedder(bert, e.Tokenizer, EmbedPooling(pooling, bert.File, bert.Architecture), normalize);
                int[] tokens = embedder.Tokenize(s);
                if (tokens.Length > bert.ContextLength)
                    throw new EdgeLlmException(EdgeLlmError.ContextFull, $"the text is {tokens.Length} tokens; the encoder reads at most {bert.ContextLength} ({bert.Architecture}.context_length)");
                float[] v;
                lock (e.Gate) v = embedder.Embed(tokens);
                v.AsSpan().CopyTo(new Span<float>(dst, capacity));
            }
            finally
            {
                e.Release();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_encoder_embed");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_encoder_rerank")]
    public static int EncoderRerank(nint encoder, byte* query, int queryLen, byte** documents, int* documentLens, int nDocuments, float* scores, int capacity)
    {
        try
        {
            var (q, docs) = RerankArguments(query, queryLen, documents, documentLens, nDocuments, scores, capacity);
            var e = NativeEncoder.Acquire(encoder);
            try
            {
                var bert = e.Encoder;
                if (bert.ClassifierOutputs == 0)
                    throw new ArgumentException($"the encoder ({bert.Architecture}) is an embedding model, not a reranker: it has no classification head (cls.weight, cls.output.weight)");
                var reranker = new TextReranker(bert, e.Tokenizer);
                lock (e.Gate) RerankInto(reranker, q, docs, scores, capacity, $"the encoder reads at most {bert.ContextLength} ({bert.Architecture}.context_length)");
            }
            finally
            {
                e.Release();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_encoder_rerank");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_rerank")]
    public static int ContextRerank(nint ctx, byte* query, int queryLen, byte** documents, int* documentLens, int nDocuments, float* scores, int capacity)
    {
        try
        {
            var (q, docs) = RerankArguments(query, queryLen, documents, documentLens, nDocuments, scores, capacity);
            var c = NativeContext.Enter(ctx);
            try
            {
                if (c.Context is not InferenceContext cpu)
                    throw new EdgeLlmException(EdgeLlmError.BackendUnavailable, "reranking runs on the CPU backend: create the context with backend cpu");
                TextReranker reranker;
                try { reranker = new TextReranker(cpu, c.Model.Tokenizer); }
                catch (NotSupportedException e) { throw new ArgumentException(e.Message); }
                try
                {
                    RerankInto(reranker, q, docs, scores, capacity, $"the context holds {cpu.ContextLength}");
                }
                finally
                {
                    c.Reset(); // each pair ran from position 0: the context starts empty again
                }
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_rerank");
        }
    }

    /// <summary>The checks both rerank functions make, in their order: the query and the documents decoded.</summary>
    private static (string Query, string[] Documents) RerankArguments(byte* query, int queryLen, byte** documents, int* documentLens, int nDocuments, float* scores, int capacity)
    {
        string q = DecodeUtf8(Input(query, queryLen, "query"), "query");
        if (nDocuments <= 0) throw new ArgumentException($"n_documents must be at least 1, got {nDocuments}");
        if (documents == null) throw new ArgumentException("documents is NULL");
        if (documentLens == null) throw new ArgumentException("document_lens is NULL");
        var docs = new string[nDocuments];
        for (int i = 0; i < nDocuments; i++) docs[i] = DecodeUtf8(Input(documents[i], documentLens[i], $"documents[{i}]"), $"documents[{i}]");
        CheckOutput(scores, capacity, "scores");
        return (q, docs);
    }

    /// <summary>Every pair tokenized (CONTEXT_FULL naming the document past the limit), scored, the scores written.</summary>
    private static void RerankInto(TextReranker reranker, string query, string[] documents, float* scores, int capacity, string limit)
    {
        if (capacity < documents.Length) throw new EdgeLlmException(EdgeLlmError.BufferTooSmall, $"{documents.Length} scores do not fit in a buffer of {capacity}");
        var pairs = new List<int[]>(documents.Length);
        for (int i = 0; i < documents.Length; i++)
        {
            int[] ids = reranker.Tokenize(query, documents[i]);
            if (ids.Length > reranker.ContextLength)
                throw new EdgeLlmException(EdgeLlmError.ContextFull, $"documents[{i}]: the query and document are {ids.Length} tokens; {limit}");
            pairs.Add(ids);
        }
        reranker.Scores(pairs).AsSpan().CopyTo(new Span<float>(scores, capacity));
    }

    /// <summary>The checks both embed functions make, in their order; the text decoded.</summary>
    private static string CheckEmbedArguments(byte* text, int textLen, int pooling, int normalize, float* dst, int capacity, int* outNEmbd)
    {
        if (outNEmbd == null) throw new ArgumentException("out_n_embd is NULL");
        string s = DecodeUtf8(Input(text, textLen, "text"), "text");
        CheckOutput(dst, capacity, "dst");
        if (pooling is not (-1 or 1 or 2 or 3)) throw new ArgumentException($"pooling must be -1 (the model's, else mean), 1 (mean), 2 (cls) or 3 (last), got {pooling}");
        if (normalize < -1) throw new ArgumentException($"normalize must be -1 (none), 0, 1, 2 (euclidean) or a larger p-norm, got {normalize}");
        return s;
    }

    /// <summary>The embed functions' pooling: the argument, else the file's pooling_type, else (none named) mean: one vector per text is asked for.</summary>
    private static PoolingType EmbedPooling(int pooling, EdgeLlm.Gguf.GgufFile file, string architecture)
    {
        PoolingType pool;
        try { pool = (pooling == -1 ? null : (PoolingType?)pooling) ?? TextEmbedder.FilePooling(file, architecture) ?? PoolingType.Mean; }
        catch (NotSupportedException e) { throw new ArgumentException(e.Message); }
        return pool == PoolingType.None ? PoolingType.Mean : pool;
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_sample")]
    public static int ContextSample(nint ctx, int* outToken)
    {
        try
        {
            if (outToken == null) throw new ArgumentException("out_token is NULL");
            var c = NativeContext.Enter(ctx);
            try
            {
                *outToken = c.Sample();
            }
            finally
            {
                c.Leave();
            }
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e, "edgellm_context_sample");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_generate")]
    public static int ContextGenerate(nint ctx, byte* prompt, int promptLen, int maxTokens, delegate* unmanaged<byte*, int, void*, int> callback, void* userData) =>
        GenerateEntry(ctx, prompt, promptLen, maxTokens, callback, userData, json: false, "edgellm_context_generate");

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_generate_json")]
    public static int ContextGenerateJson(nint ctx, byte* prompt, int promptLen, int maxTokens, delegate* unmanaged<byte*, int, void*, int> callback, void* userData) =>
        GenerateEntry(ctx, prompt, promptLen, maxTokens, callback, userData, json: true, "edgellm_context_generate_json");

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_generate_json_schema")]
    public static int ContextGenerateJsonSchema(nint ctx, byte* prompt, int promptLen, byte* schemaJson, int schemaLen, int maxTokens,
        delegate* unmanaged<byte*, int, void*, int> callback, void* userData) =>
        GenerateEntry(ctx, prompt, promptLen, maxTokens, callback, userData, json: true, "edgellm_context_generate_json_schema", schemaJson, schemaLen);

    [UnmanagedCallersOnly(EntryPoint = "edgellm_context_generate_grammar")]
    public static int ContextGenerateGrammar(nint ctx, byte* prompt, int promptLen, byte* grammar, int grammarLen, int maxTokens,
        delegate* unmanaged<byte*, int, void*, int> callback, void* userData) =>
        GenerateEntry(ctx, prompt, promptLen, maxTokens, callback, userData, json: false, "edgellm_context_generate_grammar", grammar, grammarLen);

    private static int GenerateEntry(nint ctx, byte* prompt, int promptLen, int maxTokens, delegate* unmanaged<byte*, int, void*, int> callback, void* userData,
        bool json, string function, byte* schemaJson = null, int schemaLen = 0)
    {
        try
        {
            if (callback == null) throw new ArgumentException("callback is NULL");
            if (maxTokens < -1) throw new ArgumentException($"max_tokens must be >= -1 (-1 = no limit), got {maxTokens}");
            string text = DecodeUtf8(Input(prompt, promptLen, "prompt"), "prompt");
            JsonSchemaNode? schema = null;
            if (function == "edgellm_context_generate_json_schema")
            {
                string schemaText = DecodeUtf8(Input(schemaJson, schemaLen, "schema_json"), "schema_json");
                try
                {
                    using var doc = JsonDocument.Parse(schemaText);
                    schema = JsonSchemaNode.Parse(doc.RootElement);
                }
                catch (JsonException e)
                {
                    throw new ArgumentException($"schema_json is not valid JSON: {e.Message}");
                }
                catch (ArgumentException e)
                {
                    throw new ArgumentException($"schema_json: {e.Message}");
                }
            }
            GbnfGrammar? grammar = null;
            if (function == "edgellm_context_generate_grammar")
            {
                if (schemaJson == null) throw new ArgumentException("grammar is NULL");
                string grammarText = DecodeUtf8(Input(schemaJson, schemaLen, "grammar"), "grammar");
                try
                {
                    grammar = GbnfGrammar.Parse(grammarText);
                }
                catch (GbnfParseException e)
                {
                    throw new ArgumentException(e.Message);
                }
            }
            var c = NativeContext.Enter(ctx);
            try
            {
                return Generate(c, text, maxTokens, callback, userData, json, schema, grammar);
            }
            finally
            {
                c.Leave();
            }
        }
        catch (Exception e)
        {
            return LastError.Fail(e, function);
        }
    }

    /// <summary>
    /// The generate loop: every sampled token is evaluated before its text is delivered, so when the call
    /// returns the context holds the prompt and everything delivered, and its logits continue from there.
    /// With a draft (<c>edgellm_context_set_draft</c>) each evaluated token takes the draft's proposals into
    /// its batch; each row is then sampled as one token at a time would be (<see cref="Engine.TextGenerator.UseDraft"/>),
    /// a proposal equal to the token sampled there is kept, and the rest leave the KV cache.
    /// </summary>
    private static int Generate(NativeContext c, string prompt, int maxTokens, delegate* unmanaged<byte*, int, void*, int> callback, void* userData, bool json,
        JsonSchemaNode? schema = null, GbnfGrammar? grammar = null)
    {
        var tokenizer = c.Model.Tokenizer;
        c.Drafted = c.AcceptedDrafts = 0;
        if (prompt.Length > 0)
        {
            // BOS only at the start of a sequence, so that a second call continues the text.
            int[] ids = tokenizer.Encode(prompt, addSpecial: c.Context.Position == 0, parseSpecial: true);
            if (ids.Length > 0) c.Eval(ids);
        }
        if (!c.HasLogits) throw new EdgeLlmException(EdgeLlmError.NoLogits, "the prompt is empty and nothing was evaluated before: no logits to continue from");

        var decoder = new StreamingDecoder(tokenizer);
        var constraint = TokenConstraint.For(tokenizer, grammar, json, schema);
        var drafter = c.Drafter;
        c.DraftContext?.EnterAsDraft();
        int[]? pending = null; // proposals in the KV cache after the last sampled token, not yet confirmed
        float[]? rows = null;
        int pendingAt = 0;
        void DropPending()
        {
            if (pending is null) return;
            drafter!.Feedback(pending.Length, pendingAt);
            c.Drop(pending.Length - pendingAt);
            pending = null;
        }
        try
        {
            for (int generated = 0; maxTokens < 0 || generated < maxTokens; generated++)
            {
                int next = c.Sample();
                if (constraint is not null) next = c.Constrain(constraint, next);
                bool inCache = pending is not null && next == pending[pendingAt];
                if (pending is not null && !inCache) DropPending();
                if (tokenizer.IsEndOfGeneration(next)) break;
                if (inCache)
                {
                    // Already evaluated in the batch: its row holds the logits after it.
                    pendingAt++;
                    c.AcceptedDrafts++;
                    c.Confirm(next, rows!, pendingAt);
                    if (pendingAt == pending!.Length)
                    {
                        drafter!.Feedback(pending.Length, pending.Length);
                        pending = null;
                    }
                }
                else
                {
                    if (c.Context.Position >= c.Context.ContextLength)
                    {
                        Emit(decoder.Flush(), callback, userData);
                        throw new EdgeLlmException(EdgeLlmError.ContextFull, $"the context is full ({c.Context.ContextLength} tokens) after {generated} generated tokens");
                    }
                    int room = Math.Min(c.Context.ContextLength - c.Context.Position - 1, maxTokens < 0 ? int.MaxValue : maxTokens - generated - 1);
                    int[] drafts = drafter is null || constraint is { IsComplete: true } ? [] : drafter.Propose(c.Tokens, next, Math.Min(drafter.MaxDraft, room));
                    if (drafts.Length == 0) c.Eval([next]);
                    else
                    {
                        rows = c.EvalWithProposals(next, drafts);
                        pending = drafts;
                        pendingAt = 0;
                        c.Drafted += drafts.Length;
                    }
                }
                if (Emit(decoder.Append(next), callback, userData)) return 0;
                if (constraint is { IsComplete: true }) break; // the object closed, or the grammar's sentence can go no further
            }
            Emit(decoder.Flush(), callback, userData);
            return 0;
        }
        finally
        {
            // Proposals never confirmed leave the cache: it holds the prompt and what was delivered.
            DropPending();
            c.DraftContext?.Leave();
        }
    }

    /// <summary>Hands <paramref name="text"/> (when not empty) to the callback as NUL-terminated UTF-8; true when it asks to stop.</summary>
    private static bool Emit(string text, delegate* unmanaged<byte*, int, void*, int> callback, void* userData)
    {
        if (text.Length == 0) return false;
        int n = Encoding.UTF8.GetByteCount(text);
        byte[] bytes = new byte[n + 1]; // zeroed: the last byte is the NUL
        Encoding.UTF8.GetBytes(text, bytes);
        fixed (byte* p = bytes)
            return callback(p, n, userData) != 0;
    }

    // ------------------------------------------------------------------ argument checks

    /// <summary>A (pointer, count) input as a span: count ≥ 0, and the pointer may be NULL only when count is 0.</summary>
    private static ReadOnlySpan<T> Input<T>(T* p, int count, string name) where T : unmanaged
    {
        if (count < 0) throw new ArgumentException($"the length of {name} is negative ({count})");
        if (p == null && count > 0) throw new ArgumentException($"{name} is NULL but its length is {count}");
        return count == 0 ? [] : new ReadOnlySpan<T>(p, count);
    }

    /// <summary>A (buffer, capacity) output: capacity ≥ 0, and the buffer may be NULL only when capacity is 0.</summary>
    private static void CheckOutput<T>(T* p, int capacity, string name) where T : unmanaged
    {
        if (capacity < 0) throw new ArgumentException($"the capacity of {name} is negative ({capacity})");
        if (p == null && capacity > 0) throw new ArgumentException($"{name} is NULL but its capacity is {capacity}");
    }

    private static void CheckToken(NativeModel m, int token)
    {
        int vocab = m.Tokenizer.VocabSize;
        if ((uint)token >= (uint)vocab) throw new ArgumentException($"token id {token} is outside the vocabulary (0..{vocab - 1})");
    }

    private static string DecodeUtf8(ReadOnlySpan<byte> bytes, string name)
    {
        try
        {
            return s_strictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new ArgumentException($"{name} is not valid UTF-8 (byte offset {e.Index})");
        }
    }

    /// <summary>The buffer protocol: the count always, the bytes only when they fit.</summary>
    private static int WriteBytes(byte[] data, byte* buf, int capacity, int* count)
    {
        *count = data.Length;
        if (data.Length > capacity)
            throw new EdgeLlmException(EdgeLlmError.BufferTooSmall, $"the result is {data.Length} bytes but the buffer holds {capacity}");
        data.AsSpan().CopyTo(new Span<byte>(buf, capacity));
        return 0;
    }
}
