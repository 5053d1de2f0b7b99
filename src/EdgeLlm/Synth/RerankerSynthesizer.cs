using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Synth;

/// <summary>
/// Decoder rerankers as llama.cpp's converter writes Qwen3-Reranker: a <c>qwen3</c> file with rank pooling
/// (<c>qwen3.pooling_type</c> 4), labels "yes" and "no", <c>cls.output.weight</c> holding the output projection's rows
/// of those two tokens (F32), and the Qwen3-Reranker prompt as <c>tokenizer.chat_template.rerank</c>.
/// </summary>
public static unsafe class RerankerSynthesizer
{
    /// <summary>The decoder reranker shapes <c>edgellm synth --like</c> writes, and the decoder shape each starts from.</summary>
    public static IReadOnlyDictionary<string, string> Shapes { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["qwen3-reranker-0.6b"] = "qwen3-0.6b",
    };

    /// <summary>Qwen3-Reranker's prompt (its model card's), with llama.cpp's <c>{query}</c> and <c>{document}</c>.</summary>
    public const string Qwen3Template =
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. " +
        "Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n" +
        "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n<Query>: {query}\n<Document>: {document}<|im_end|>\n" +
        "<|im_start|>assistant\n<think>\n\n</think>\n\n";

    /// <summary>
    /// Writes <paramref name="destination"/>: the qwen3 decoder <paramref name="source"/> with a reranker's head and
    /// metadata. The head's rows are the output projection's (token_embd's when tied) for "yes" and "no" (the first two
    /// tokens when the vocabulary has neither).
    /// </summary>
    /// <exception cref="ArgumentException">the source is not a qwen3 file</exception>
    public static void AddQwen3Head(string source, string destination)
    {
        using var src = GgufFile.Open(source);
        if (src.GetString("general.architecture") != "qwen3") throw new ArgumentException($"{source} is not a qwen3 model", nameof(source));
        var tokenizer = Tokenizer.FromGguf(src);
        int yes = tokenizer.TokenId("yes") ?? 0, no = tokenizer.TokenId("no") ?? 1;
        var loader = new TensorLoader(src);
        int embd = checked((int)(src.GetInt("qwen3.embedding_length") ?? throw new ArgumentException("no qwen3.embedding_length", nameof(source))));
        var rows = new TensorLoader.Dim(tokenizer.VocabSize, "the vocabulary");
        var cols = new TensorLoader.Dim(embd, "qwen3.embedding_length");
        var output = loader.OptionalMatrix("output.weight", cols, rows) ?? loader.Matrix("token_embd.weight", cols, rows);
        var head = new float[2 * embd];
        fixed (float* h = head)
        {
            output.Format.DequantizeRow(output.Row(yes), h, embd);
            output.Format.DequantizeRow(output.Row(no), h + embd, embd);
        }
        var w = new GgufWriter().CopyMetadata(src)
            .Set("general.name", (src.GetString("general.name") ?? "qwen3") + " reranker")
            .Set("qwen3.pooling_type", 4u)
            .Set("qwen3.classifier.output_labels", GgufValue.From(new[] { "yes", "no" }))
            .Set("tokenizer.chat_template.rerank", Qwen3Template);
        foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
        w.AddTensor("cls.output.weight", GgmlType.F32, [embd, 2], MemoryMarshal.AsBytes(head.AsSpan()).ToArray());
        w.Write(destination);
    }
}
