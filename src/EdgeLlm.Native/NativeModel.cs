using EdgeLlm.Chat;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Native;

/// <summary>
/// What an <c>edgellm_model_t</c> handle stands for: the model and its tokenizer, reference-counted so that
/// <c>edgellm_model_free</c> can be called while contexts (or calls on other threads) still use it; the
/// weights' mapping is released when the last user lets go.
/// </summary>
internal sealed class NativeModel
{
    private int _refs = 1; // the handle's own reference

    public NativeModel(Model model, Tokenizer tokenizer)
    {
        Model = model;
        Tokenizer = tokenizer;
    }

    public Model Model { get; }

    public Tokenizer Tokenizer { get; }

    private ChatTemplate? _template;

    /// <summary>
    /// The model's chat template (or <see cref="ChatTemplate.Fallback"/>), parsed on first use so that a model
    /// with a broken template still loads; a parse error surfaces from each edgellm_chat_apply_template call.
    /// Two threads may both parse it the first time: the results are equal, either may be kept.
    /// </summary>
    /// <exception cref="Chat.Jinja.TemplateException">the file's template does not parse</exception>
    public ChatTemplate Template => _template ??= ChatPrompt.TemplateFor(Model.File);

    /// <summary>Takes a reference (the caller holds the handle table's lock, so the handle is still live).</summary>
    public void AddRef() => Interlocked.Increment(ref _refs);

    /// <summary>Drops a reference; the last one disposes the model.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0) Model.Dispose();
    }

    /// <summary>Looks up <paramref name="handle"/> and takes a reference for the duration of a call.</summary>
    public static NativeModel Acquire(nint handle)
    {
        lock (HandleTable.Sync)
        {
            var m = HandleTable.GetLocked<NativeModel>(handle, "model");
            m.AddRef();
            return m;
        }
    }
}
