using System.Collections.Concurrent;
using System.Text;
using EdgeLlm.Gguf;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Tests.Tokenizers;

/// <summary>Loads each vocabulary of llama.cpp's tokenizer suite (../shared/tokenizer) once per test run.</summary>
internal static class VocabCache
{
    /// <summary>The vocabularies of the suite; every one must be present (a missing file fails the tests).</summary>
    public static readonly string[] Names = ["llama-spm", "phi-3", "gpt-2", "deepseek-coder", "falcon", "starcoder", "llama-bpe", "qwen2"];

    private static readonly ConcurrentDictionary<string, Lazy<Tokenizer>> s_cache = new();

    public static string GgufPath(string name) => Path.Combine(SharedData.Tokenizer, $"ggml-vocab-{name}.gguf");

    public static Tokenizer Get(string name) => s_cache.GetOrAdd(name, n => new Lazy<Tokenizer>(() =>
    {
        using var file = GgufFile.Open(GgufPath(n));
        return Tokenizer.FromGguf(file);
    })).Value;

    /// <summary>The test strings: .inp split on the separator line, as bytes (no newline translation).</summary>
    public static string[] Inputs(string name)
    {
        byte[] all = File.ReadAllBytes(GgufPath(name) + ".inp");
        byte[] sep = Encoding.ASCII.GetBytes("\n__ggml_vocab_test__\n");
        var result = new List<string>();
        int start = 0;
        while (true)
        {
            int at = all.AsSpan(start).IndexOf(sep);
            if (at < 0) break;
            result.Add(new UTF8Encoding(false, true).GetString(all, start, at));
            start += at + sep.Length;
        }
        if (start != all.Length) throw new InvalidDataException($"{name}.inp does not end with the separator line");
        return result.ToArray();
    }

    /// <summary>The expected ids: line i of .out (" id id id", empty for the empty string).</summary>
    public static int[][] Expected(string name)
    {
        var text = File.ReadAllText(GgufPath(name) + ".out", Encoding.UTF8);
        var lines = text.Split('\n');
        if (lines.Length > 0 && lines[^1].Length == 0) lines = lines[..^1];
        return lines.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray()).ToArray();
    }
}
