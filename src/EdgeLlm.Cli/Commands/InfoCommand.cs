using EdgeLlm.Engine;
using System.CommandLine;
using System.Globalization;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary><c>edgellm info</c>: what a GGUF file holds and how EdgeLlm would run it (stdout).</summary>
public static class InfoCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var cmd = new Command("info", "Describe a GGUF model: architecture, hyper-parameters, tensor types, tokenizer, kernel path") { model };
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            string path = ModelResolver.Resolve(pr.GetValue(model));
            using var f = GgufFile.Open(path);
            Console.Out.Write(Describe(f));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    internal static string Describe(GgufFile f)
    {
        var ci = CultureInfo.InvariantCulture;
        var o = new System.Text.StringBuilder();
        string arch = f.GetString("general.architecture") ?? "(none)";
        o.AppendLine(ci, $"file: {f.FilePath}");
        o.AppendLine(ci, $"file size: {f.FileSize:N0} bytes");
        o.AppendLine(ci, $"gguf version: {f.Version}");
        if (f.GetString("general.name") is { } name) o.AppendLine(ci, $"name: {name}");
        o.AppendLine(ci, $"architecture: {arch}");
        if (f.GetInt("general.file_type") is long ft) o.AppendLine(ci, $"file type: {ft}");

        o.AppendLine("hyper-parameters:");
        foreach (var kv in f.MetadataList.Where(kv => kv.Key.StartsWith(arch + ".", StringComparison.Ordinal)))
            o.AppendLine(ci, $"  {kv.Key[(arch.Length + 1)..]}: {kv.Value}");

        o.AppendLine(ci, $"tensors: {f.Tensors.Count}");
        foreach (var g in f.Tensors.GroupBy(t => t.Type).OrderBy(g => (uint)g.Key))
        {
            bool ok = WeightFormat.TryGet(g.Key, out _);
            o.AppendLine(ci, $"  {GgmlTypes.Name(g.Key),-8} {g.Count(),5} tensors {g.Sum(t => t.ByteSize),14:N0} bytes{(ok ? "" : "  (not supported by EdgeLlm)")}");
        }

        o.Append("tokenizer: ");
        try
        {
            var tok = Tokenizer.FromGguf(f);
            o.AppendLine(ci, $"{f.GetString("tokenizer.ggml.model")} (pre: {f.GetString("tokenizer.ggml.pre") ?? "default"}), {tok.VocabSize} tokens, BOS {tok.Bos}, EOS {tok.Eos}, add BOS {tok.AddBos}");
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or ArgumentException or InvalidOperationException or KeyNotFoundException)
        {
            o.AppendLine(ci, $"unavailable ({e.Message})");
        }
        o.AppendLine(ci, $"chat template: {(f.GetString("tokenizer.chat_template") is null ? "none" : "present")}");
        o.AppendLine(ci, $"kernel path: {CpuFeatures.KernelPath} ({CpuFeatures.Describe()})");
        o.AppendLine("backend: cpu");
        if (BertModel.IsEncoder(f))
        {
            try
            {
                using var bert = BertModel.Load(f, threads: 1);
                string pooling = bert.IsReranker ? "rank" : TextEmbedder.FilePooling(f, arch)?.ToString().ToLowerInvariant() ?? "none (the file names none)";
                string heads = bert.HeadCountKv == bert.HeadCount ? $"{bert.HeadCount} heads" : $"{bert.HeadCount} query / {bert.HeadCountKv} KV heads";
                o.AppendLine(ci, $"encoder: {arch}, {bert.BlockCount} blocks, {heads} of {bert.HeadDim}, bidirectional attention, " +
                    $"{arch switch { "nomic-bert" => $"rope NEOX base {bert.RopeFreqBase:G}, SwiGLU", "jina-bert-v2" => "ALiBi, GEGLU", "gemma-embedding" => $"Gemma 3 blocks (rope NEOX base {bert.RopeFreqBase:G}, a symmetric window in five of six), GeGLU", _ => "learned positions, GELU" }} of {bert.FeedForwardLength}, up to {bert.ContextLength} tokens a text");
                if (bert.IsReranker)
                    o.AppendLine(ci, $"reranker: a classification head of {bert.ClassifierOutputs} output(s){(bert.ClassifierLabels is { } labels ? $" ({string.Join(", ", labels)})" : "")}, the first the relevance score (edgellm rerank)");
                else
                    o.AppendLine(ci, $"embeddings: {bert.EmbeddingLength} dimensions, pooling {pooling}{(bert.DenseWidth > 0 ? $", then dense layers {bert.EmbeddingLength} → {bert.DenseWidth} → {bert.EmbeddingLength}" : "")} (edgellm embed)");
            }
            catch (ModelLoadException e)
            {
                o.AppendLine(ci, $"encoder: does not load ({e.Message})");
            }
            o.AppendLine(ci, $"specializations in this build: {EdgeLlm.Specialized.SpecializationRegistry.All.Count} (decoders only)");
            return o.ToString();
        }
        try
        {
            using var m = Model.Load(f, new ModelLoadOptions { SkipMemoryCheck = true });
            o.AppendLine(ci, $"attention: {Attention(m)}");
            if (f.GetInt($"{arch}.pooling_type") == 4 && f.FindTensor("cls.output.weight") is { } head)
                o.AppendLine(ci, $"reranker: a decoder reranker, cls.output of {(head.Dims.Length > 1 ? head.Dims[1] : 1)} row(s) on the last token{(f.GetString(TextReranker.TemplateKey) is null ? "" : ", a rerank template")} (edgellm rerank)");
            o.AppendLine(ci, $"feed-forward: {FeedForward(m)}");
            o.AppendLine(ci, $"kv cache per 1024 tokens: {KvCache(m)}");
            o.AppendLine(ci, $"forward pass: {EdgeLlm.Specialized.SpecializationRegistry.Describe(m)}");
            o.AppendLine(ci, $"weight layout: {(m.RepackedBytes == 0 ? "as in the file (memory-mapped)" : $"{string.Join(", ", m.RepackedLayouts)} repacked at load ({m.RepackedBytes / 1048576.0:F1} MiB in memory the model owns, in place of the mapped pages; EDGELLM_REPACK=0 turns it off)")}");
        }
        catch (ModelLoadException e)
        {
            o.AppendLine(ci, $"forward pass: generic (the model does not load: {e.Message})");
        }
        var compiled = EdgeLlm.Specialized.SpecializationRegistry.All;
        o.AppendLine(ci, $"specializations in this build: {(compiled.Count == 0 ? "none" : $"{compiled.Count} ({string.Join(", ", compiled.Select(x => x.Name).Order(StringComparer.Ordinal))})")}");
        return o.ToString();
    }

    /// <summary>The KV cache's size per 1024 tokens in each type -ctk/-ctv take (quantized ones only where the heads are whole blocks of 32).</summary>
    private static string KvCache(Model m)
    {
        var ci = CultureInfo.InvariantCulture;
        string Size(KvCacheType t) => string.Create(ci, $"{t.Name()} {m.EstimateKvCacheBytes(1024, t, t) / 1048576.0:F1} MiB");
        var c = m.Config;
        string sizes = c.HeadDim % 32 == 0
            ? $"{Size(KvCacheType.F16)}, {Size(KvCacheType.Q8_0)}, {Size(KvCacheType.Q4_0)} (-ctk/-ctv)"
            : string.Create(ci, $"{Size(KvCacheType.F16)} (f16 only: heads of {c.HeadDim} are no whole blocks of 32)");
        int local = Enumerable.Range(0, c.BlockCount).Count(c.IsSlidingWindowLayer);
        return c.SlidingWindow > 0 && local > 0
            ? string.Create(ci, $"{sizes}; its {local} sliding-window layers of {c.BlockCount} keep at most {InferenceContext.SlidingWindowCacheLength(c.SlidingWindow)} positions at any context (--swa-full: all)")
            : sizes;
    }

    /// <summary>
    /// The blocks' feed-forward networks: one SwiGLU (GeGLU) of the file's width, or a mixture of experts with how
    /// many are used per token and the share of the weights a token reads.
    /// </summary>
    private static string FeedForward(Model m)
    {
        var c = m.Config;
        var ci = CultureInfo.InvariantCulture;
        string glu = c.GeluGate ? "GeGLU" : c.ExpertSwiGluOai ? "clamped SwiGLU (gpt-oss)" : "SwiGLU";
        if (!c.IsMixtureOfExperts) return string.Create(ci, $"{glu} of {c.FeedForwardLength}");
        long total = m.File.Tensors.Sum(t => t.ByteSize);
        long unused = m.File.Tensors.Where(t => t.Name.EndsWith("_exps.weight", StringComparison.Ordinal))
            .Sum(t => t.ByteSize / c.ExpertCount * (c.ExpertCount - c.ExpertUsedCount));
        string shared = c.ExpertSharedFeedForwardLength > 0 ? string.Create(ci, $", plus a shared expert of {c.ExpertSharedFeedForwardLength}") : "";
        // LFM2-MoE: the router and the dense blocks before the experts (after the older parts, which tools read)
        string router = c.ExpertGatingSigmoid ? ", sigmoid router" : "";
        if (c.ExpertSelectionBias) router += c.ExpertGatingSigmoid ? " with a per-expert choice bias" : ", a per-expert choice bias";
        // gpt-oss: top-k of the raw (biased) logits, weights the softmax of the chosen
        if (c.ExpertGatingSoftmaxWeight) router += ", router with biases: the top experts by logit, weighted by the softmax of their logits";
        string dense = c.LeadingDenseBlocks > 0 ? string.Create(ci, $", after {c.LeadingDenseBlocks} dense block{(c.LeadingDenseBlocks == 1 ? "" : "s")} ({glu} of {c.FeedForwardLength})") : "";
        return string.Create(ci,
            $"mixture of {c.ExpertCount} {glu} experts of {c.ExpertFeedForwardLength}, {c.ExpertUsedCount} per token{(c.ExpertWeightsNorm ? " (weights normalized)" : "")}{shared}{router}{dense}; a token reads {(total - unused) / 1048576.0:F1} of {total / 1048576.0:F1} MiB of weights");
    }

    /// <summary>
    /// How the loaded model attends, as the engine will run it (not only the file's keys): heads, rope,
    /// LongRoPE, sliding windows and soft-caps.
    /// </summary>
    private static string Attention(Model m)
    {
        var c = m.Config;
        var ci = CultureInfo.InvariantCulture;
        var parts = new List<string>
        {
            string.Create(ci, $"{c.HeadCount} query / {c.HeadCountKv} KV heads of {c.HeadDim}"),
            string.Create(ci, $"rope {(c.RopeNeox ? "NEOX" : "normal")} base {c.RopeFreqBase:G}{(c.RopeFreqScale != 1f ? $" scale {c.RopeFreqScale:G}" : "")}{(c.RopeDimensionCount < c.HeadDim ? $" on {c.RopeDimensionCount} of {c.HeadDim} dimensions" : "")}"),
        };
        bool freqs = m.File.FindTensor("rope_freqs.weight") is not null;
        if (freqs) parts.Add("rope frequency factors (rope_freqs)");
        if (!freqs && (m.File.FindTensor("rope_factors_long.weight") is not null || m.File.FindTensor("rope_factors_short.weight") is not null))
            parts.Add(string.Create(ci, $"LongRoPE: short factors for a context up to {c.RopeOriginalContextLength} tokens, long beyond"));
        if (c.RopeAttnFactor != 1f) parts.Add(string.Create(ci, $"attention factor {c.RopeAttnFactor:G}"));
        if (c.RopeYarn.ExtFactor != 0f)
            parts.Add(string.Create(ci, $"YaRN over an original {c.RopeOriginalContextLength} tokens (ramp over rotary pairs {c.RopeYarn.CorrLow:G}–{c.RopeYarn.CorrHigh:G})"));
        if (c.SlidingWindow > 0)
        {
            int local = Enumerable.Range(0, c.BlockCount).Count(c.IsSlidingWindowLayer);
            parts.Add(string.Create(ci, $"sliding window {c.SlidingWindow} in {local} of {c.BlockCount} layers (rope base {c.RopeFreqBaseSwa:G} there)"));
        }
        if (c.AttnLogitSoftcap > 0) parts.Add(string.Create(ci, $"scores soft-capped at {c.AttnLogitSoftcap:G}"));
        if (m.File.FindTensor("blk.0.attn_sinks.weight") is not null) parts.Add("a learned sink logit per head in each softmax");
        if (c.FinalLogitSoftcap > 0) parts.Add(string.Create(ci, $"logits soft-capped at {c.FinalLogitSoftcap:G}"));
        // (appended after the older parts, which outside tools read)
        if (c.NoRopeLayerStep > 0)
        {
            int plain = Enumerable.Range(0, c.BlockCount).Count(l => !c.UsesRope(l));
            parts.Add(string.Create(ci, $"no rope in {plain} of {c.BlockCount} layers"));
        }
        if (c.ShortConvTaps > 0)
        {
            int conv = Enumerable.Range(0, c.BlockCount).Count(c.IsShortConvLayer);
            parts.Add(string.Create(ci, $"short convolutions of {c.ShortConvTaps} taps instead in {conv} of {c.BlockCount} layers"));
        }
        if (c.AttentionScale != 0) parts.Add(string.Create(ci, $"scores scaled by {c.AttentionScale:G}"));
        if (c.EmbeddingScale != 1f) parts.Add(string.Create(ci, $"embeddings × {c.EmbeddingScale:G}"));
        if (c.ResidualScale != 1f) parts.Add(string.Create(ci, $"residual branches × {c.ResidualScale:G}"));
        if (c.LogitScale != 1f) parts.Add(string.Create(ci, $"logits / {c.LogitScale:G}"));
        if (!c.PreNorms) parts.Add("no norm before attention or feed-forward, their outputs normed (post-norms only)");
        if (c.QkNormFullWidth) parts.Add("Q/K norms over whole rows");
        if (c.QkNormAfterRope) parts.Add("Q/K head norms after the rope");
        if (c.AttnTemperatureScale != 0f) parts.Add(string.Create(ci, $"query temperature 1 + {c.AttnTemperatureScale:G}·ln(⌊pos / {c.AttnTemperatureFloor}⌋ + 1)"));
        return string.Join("; ", parts);
    }
}
