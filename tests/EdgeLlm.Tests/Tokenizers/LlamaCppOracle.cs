using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;

namespace EdgeLlm.Tests.Tokenizers;

/// <summary>
/// llama.cpp itself, through LLamaSharp 0.30.0's native CPU backend, loading a vocabulary-only GGUF.
/// Construction fails with the reason when the native library cannot be loaded (the tests then fail, never skip).
/// </summary>
internal sealed class LlamaCppOracle : IDisposable
{
    private static readonly Lazy<string> s_library = new(LoadNative);
    private readonly LLamaWeights _weights;

    /// <summary>Which native build LLamaSharp loaded (path / AVX level).</summary>
    public static string NativeLibrary => s_library.Value;

    private static string LoadNative()
    {
        // Silence llama.cpp's loader chatter; must be configured before the library loads.
        NativeLibraryConfig.All.WithLogCallback((level, message) => { if (Environment.GetEnvironmentVariable("EDGELLM_LLAMA_LOG") == "1") Console.Error.Write(message); });
        NativeApi.llama_empty_call(); // forces the load (throws RuntimeError with the reason when it fails)
        var lib = NativeApi.GetLoadedNativeLibrary(NativeLibraryName.LLama);
        return lib?.Metadata?.ToString() ?? "(loaded, description unavailable)";
    }

    public LlamaCppOracle(string ggufPath)
    {
        _ = s_library.Value;
        _weights = LLamaWeights.LoadFromFile(new ModelParams(ggufPath) { VocabOnly = true, GpuLayerCount = 0 });
    }

    public int VocabSize => _weights.Vocab.Count;

    public int[] Tokenize(string text, bool addSpecial, bool parseSpecial) =>
        _weights.NativeHandle.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8).Select(t => (int)t).ToArray();

    /// <summary>llama_token_to_piece(lstrip 0).</summary>
    public byte[] Piece(int id, bool special)
    {
        Span<byte> buf = stackalloc byte[256];
        int n = (int)_weights.NativeHandle.TokenToSpan((LLamaToken)id, buf, 0, special);
        if (n > buf.Length)
        {
            var big = new byte[n];
            _weights.NativeHandle.TokenToSpan((LLamaToken)id, big, 0, special);
            return big;
        }
        return buf[..n].ToArray();
    }

    public bool IsEog(int id) => ((LLamaToken)id).IsEndOfGeneration(_weights.Vocab);

    public int Attributes(int id) => (int)((LLamaToken)id).GetAttributes(_weights.Vocab);

    public int? Bos => _weights.Vocab.BOS is { } t ? (int)t : null;
    public int? Eos => _weights.Vocab.EOS is { } t ? (int)t : null;
    public int? Eot => _weights.Vocab.EOT is { } t ? (int)t : null;
    public bool AddBos => _weights.Vocab.ShouldAddBOS;
    public bool AddEos => _weights.Vocab.ShouldAddEOS;

    /// <summary>
    /// llama_detokenize. LLamaSharp 0.30.0 exposes no managed wrapper taking the vocabulary, so the two C
    /// functions are bound here from the library LLamaSharp already loaded (dlopen with RTLD_NOLOAD).
    /// </summary>
    public unsafe string Detokenize(int[] ids, bool removeSpecial, bool unparseSpecial)
    {
        var (getVocabPtr, detokPtr) = s_detok.Value;
        var getVocab = (delegate* unmanaged<nint, nint>)getVocabPtr;
        var detok = (delegate* unmanaged<nint, int*, int, byte*, int, byte, byte, int>)detokPtr;
        nint vocab = getVocab(_weights.NativeHandle.DangerousGetHandle());
        var buf = new byte[Math.Max(64, ids.Length * 64)];
        fixed (int* t = ids)
        fixed (byte* b = buf)
        {
            int n = detok(vocab, t, ids.Length, b, buf.Length, removeSpecial ? (byte)1 : (byte)0, unparseSpecial ? (byte)1 : (byte)0);
            if (n < 0) throw new InvalidOperationException($"llama_detokenize needs {-n} bytes");
            return Encoding.UTF8.GetString(buf, 0, n);
        }
    }

    /// <summary>llama.cpp's grammar sampler (llama_sampler_init_grammar) on this vocabulary; null when llama.cpp refuses the grammar.</summary>
    public GrammarSampler? Grammar(string grammar, string root = "root")
    {
        var f = s_grammar.Value;
        nint vocab;
        unsafe { vocab = ((delegate* unmanaged<nint, nint>)s_detok.Value.GetVocab)(_weights.NativeHandle.DangerousGetHandle()); }
        nint smpl;
        var g = Encoding.UTF8.GetBytes(grammar + "\0");
        var r = Encoding.UTF8.GetBytes(root + "\0");
        unsafe
        {
            fixed (byte* gp = g)
            fixed (byte* rp = r)
                smpl = ((delegate* unmanaged<nint, byte*, byte*, nint>)f.Init)(vocab, gp, rp);
        }
        return smpl == 0 ? null : new GrammarSampler(smpl, VocabSize);
    }

    /// <summary>A llama_sampler holding a grammar: which tokens it lets through, and accepting one.</summary>
    public sealed class GrammarSampler(nint handle, int vocabSize) : IDisposable
    {
        private nint _handle = handle;

        [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
        private struct TokenData { public int Id; public float Logit; public float P; }

        [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
        private unsafe struct TokenDataArray { public TokenData* Data; public nuint Size; public long Selected; public byte Sorted; }

        /// <summary>llama_sampler_apply over the whole vocabulary (every logit 0): the tokens left above −∞.</summary>
        public unsafe bool[] Allowed()
        {
            var data = new TokenData[vocabSize];
            for (int i = 0; i < vocabSize; i++) data[i] = new TokenData { Id = i, Logit = 0, P = 0 };
            fixed (TokenData* d = data)
            {
                var arr = new TokenDataArray { Data = d, Size = (nuint)vocabSize, Selected = -1, Sorted = 0 };
                ((delegate* unmanaged<nint, TokenDataArray*, void>)s_grammar.Value.Apply)(_handle, &arr);
                var allowed = new bool[vocabSize];
                for (int i = 0; i < (int)arr.Size; i++)
                    if (!float.IsNegativeInfinity(d[i].Logit)) allowed[d[i].Id] = true;
                return allowed;
            }
        }

        /// <summary>llama_sampler_accept.</summary>
        public unsafe void Accept(int token) => ((delegate* unmanaged<nint, int, void>)s_grammar.Value.Accept)(_handle, token);

        public unsafe void Dispose()
        {
            if (_handle != 0) ((delegate* unmanaged<nint, void>)s_grammar.Value.Free)(_handle);
            _handle = 0;
        }
    }

    private static readonly Lazy<(nint Init, nint Apply, nint Accept, nint Free)> s_grammar = new(() =>
    {
        _ = s_library.Value;
        nint h = dlopen("libllama.so", RtldLazy | RtldNoLoad);
        if (h == 0) throw new InvalidOperationException("libllama.so is not loaded in this process");
        return (System.Runtime.InteropServices.NativeLibrary.GetExport(h, "llama_sampler_init_grammar"),
                System.Runtime.InteropServices.NativeLibrary.GetExport(h, "llama_sampler_apply"),
                System.Runtime.InteropServices.NativeLibrary.GetExport(h, "llama_sampler_accept"),
                System.Runtime.InteropServices.NativeLibrary.GetExport(h, "llama_sampler_free"));
    });

    private static readonly Lazy<(nint GetVocab, nint Detok)> s_detok = new(() =>
    {
        _ = s_library.Value;
        nint h = dlopen("libllama.so", RtldLazy | RtldNoLoad);
        if (h == 0) throw new InvalidOperationException("libllama.so is not loaded in this process");
        return (System.Runtime.InteropServices.NativeLibrary.GetExport(h, "llama_model_get_vocab"),
                System.Runtime.InteropServices.NativeLibrary.GetExport(h, "llama_detokenize"));
    });

    private const int RtldLazy = 1, RtldNoLoad = 4;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "dlopen")]
    private static extern nint dlopen([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string file, int mode);

    public void Dispose() => _weights.Dispose();
}
