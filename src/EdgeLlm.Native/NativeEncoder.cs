using EdgeLlm.Models;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Native;

/// <summary>
/// What an <c>edgellm_encoder_t</c> handle stands for: a BERT text encoder and its tokenizer, reference-counted as
/// <see cref="NativeModel"/> so that <c>edgellm_encoder_free</c> during a call on another thread is safe. Calls on one
/// encoder run one at a time (the others wait on <see cref="Gate"/>): an encoder keeps its scratch per call.
/// </summary>
internal sealed class NativeEncoder(BertModel encoder, Tokenizer tokenizer)
{
    private int _refs = 1;

    public BertModel Encoder { get; } = encoder;

    public Tokenizer Tokenizer { get; } = tokenizer;

    public Lock Gate { get; } = new();

    public void AddRef() => Interlocked.Increment(ref _refs);

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0) Encoder.Dispose();
    }

    public static NativeEncoder Acquire(nint handle)
    {
        lock (HandleTable.Sync)
        {
            var e = HandleTable.GetLocked<NativeEncoder>(handle, "encoder");
            e.AddRef();
            return e;
        }
    }
}
