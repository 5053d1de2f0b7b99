using System;
using System.Collections.Generic;
using EdgeLlm.Generators.Helpers;
using EdgeLlm.Generators.Model;

namespace EdgeLlm.Generators;

public sealed partial class TransformerGenerator
{
    /// <summary>
    /// Expands a file type (Q4_K_M, ...) into per-tensor types by the rules of
    /// EdgeLlm.Quant.TensorTypePlanner (llama.cpp's llama_tensor_get_type, Feb 2025), restricted to
    /// what this generator specializes: llama, qwen2 and qwen3, no experts, not falcon. The library's
    /// planner reads a GgufFile, which the generator cannot reference inside the compiler, so the
    /// rules are re-expressed here over the config's shape; a test checks both agree tensor by tensor.
    /// </summary>
    internal static class TypePlanner
    {
        private static readonly (string Name, string Default)[] s_fileTypes =
        {
            ("F32", "F32"), ("F16", "F16"), ("BF16", "BF16"), ("Q4_0", "Q4_0"), ("Q4_1", "Q4_1"), ("Q5_0", "Q5_0"),
            ("Q5_1", "Q5_1"), ("Q8_0", "Q8_0"), ("Q2_K", "Q2_K"), ("Q3_K_S", "Q3_K"), ("Q3_K_M", "Q3_K"), ("Q3_K_L", "Q3_K"),
            ("Q4_K_S", "Q4_K"), ("Q4_K_M", "Q4_K"), ("Q5_K_S", "Q5_K"), ("Q5_K_M", "Q5_K"), ("Q6_K", "Q6_K"), ("IQ4_NL", "IQ4_NL"),
        };

        /// <summary>The shape facts the rules look at.</summary>
        public sealed record Shape(string Architecture, int Dim, int FeedForward, int Layers, int Heads, int KvHeads, int HeadDim, bool Tied);

        /// <summary>The plan: token_embd, output (= token_embd when tied) and the layers.</summary>
        public sealed record Result(string TokenEmbd, string Output, EquatableArray<LayerSpec> Layers);

        public static IEnumerable<string> FileTypeNames
        {
            get { foreach (var e in s_fileTypes) yield return e.Name; }
        }

        /// <summary>The canonical spelling of a file type name (case-insensitive), or null.</summary>
        public static string? NormalizeFileType(string name)
        {
            foreach (var e in s_fileTypes)
                if (string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase)) return e.Name;
            return null;
        }

        public static string DefaultType(string fileType)
        {
            foreach (var e in s_fileTypes) if (e.Name == fileType) return e.Default;
            throw new ArgumentException("unknown file type " + fileType);
        }

        /// <summary>Values per row of a tensor kind (GGUF ne[0]: the matrix's input width).</summary>
        public static long RowLength(Shape s, string kind) => kind switch
        {
            "attn_output" => (long)s.Heads * s.HeadDim,
            "ffn_down" => s.FeedForward,
            _ => s.Dim,
        };

        public static Result Plan(Shape s, string fileType, bool pure, IReadOnlyDictionary<string, string> overrides)
        {
            string def = DefaultType(fileType);
            bool rules = !pure && QuantSpec.Get(def).IsQuantized;
            string Type(string kind, int layer)
            {
                if (overrides.TryGetValue(kind, out var o)) return o;
                if (!rules) return def;
                return Fallback(Rule(s, fileType, def, kind, layer), RowLength(s, kind));
            }

            var layers = new LayerSpec[s.Layers];
            for (int il = 0; il < s.Layers; il++)
                layers[il] = new LayerSpec(Type("attn_q", il), Type("attn_k", il), Type("attn_v", il), Type("attn_output", il),
                    Type("ffn_gate", il), Type("ffn_up", il), Type("ffn_down", il));
            // Tied: token_embd is the output projection and takes the output rule (and an "output" override).
            string tok = s.Tied ? (overrides.TryGetValue("token_embd", out var t) ? t : Type("output", -1)) : Type("token_embd", -1);
            string output = s.Tied ? tok : Type("output", -1);
            return new Result(tok, output, layers.ToEquatableArray());
        }

        private static bool UseMoreBits(int i, int n) => i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;

        private static string Rule(Shape s, string ftype, string type, string kind, int i)
        {
            int n = s.Layers;
            int gqa = s.KvHeads > 0 ? s.Heads / s.KvHeads : 0;
            bool is70B = s.Architecture == "llama" && n == 80 && s.Heads != s.KvHeads;
            switch (kind)
            {
                case "output":
                    // The output projection is the most sensitive matrix: Q6_K unless Q8_0 asked, Q8_0 when rows do not divide.
                    if (s.Dim % QuantSpec.Get(type).BlockSize != 0) return "Q8_0";
                    return type != "Q8_0" ? "Q6_K" : type;
                case "attn_v":
                    if (ftype == "Q2_K") type = gqa >= 4 ? "Q4_K" : "Q3_K";
                    else if (ftype == "Q3_K_M") type = i < 2 ? "Q5_K" : "Q4_K";
                    else if (ftype == "Q3_K_L") type = "Q5_K";
                    else if (ftype == "IQ4_NL" && gqa >= 4) type = "Q5_K";
                    else if ((ftype == "Q4_K_M" || ftype == "Q5_K_M") && UseMoreBits(i, n)) type = "Q6_K";
                    else if (ftype == "Q4_K_S" && i < 4) type = "Q5_K";
                    if (is70B && (type == "Q3_K" || type == "Q4_K")) type = "Q5_K";
                    return type;
                case "ffn_down":
                    if (ftype == "Q2_K") return "Q3_K";
                    if (ftype == "Q3_K_M") return i < n / 16 ? "Q5_K" : "Q4_K";
                    if (ftype == "Q3_K_L") return "Q5_K";
                    if (ftype == "Q4_K_M") return UseMoreBits(i, n) ? "Q6_K" : type;
                    if (i < n / 8 && ftype == "IQ4_NL") return "Q5_K";
                    if (ftype == "Q5_K_M" && UseMoreBits(i, n)) return "Q6_K";
                    if (ftype == "Q4_K_S" && i < n / 8) return "Q5_K";
                    return type;
                case "attn_output":
                    if (ftype == "Q2_K") return "Q3_K";
                    if (ftype == "Q3_K_M") return "Q4_K";
                    if (ftype == "Q3_K_L") return "Q5_K";
                    return type;
                default:
                    return type; // token_embd, attn_q, attn_k, ffn_gate, ffn_up: no rule for these file types
            }
        }

        /// <summary>Rows that do not divide into the type's blocks: Q2_K/Q3_K→IQ4_NL, Q4_K→Q5_0, Q5_K→Q5_1, Q6_K→Q8_0, else F16.</summary>
        private static string Fallback(string type, long row)
        {
            if (row % QuantSpec.Get(type).BlockSize == 0) return type;
            string fb = type switch
            {
                "Q2_K" or "Q3_K" => "IQ4_NL",
                "Q4_K" => "Q5_0",
                "Q5_K" => "Q5_1",
                "Q6_K" => "Q8_0",
                _ => "F16",
            };
            return row % QuantSpec.Get(fb).BlockSize == 0 ? fb : "F16";
        }
    }
}
