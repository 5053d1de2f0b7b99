using System.Text.Json;

namespace EdgeLlm.Tests.Models;

/// <summary>llama.cpp's golden outputs in ../shared/golden (M.P.json + M.P.logits.f32).</summary>
internal sealed record GoldenCase(int[] PromptIds, int[] GreedyIds, int Vocab, float[] Logits)
{
    public static GoldenCase Load(string model, string prompt)
    {
        string stem = Path.Combine(SharedData.Golden, $"{model}.{prompt}");
        using var doc = JsonDocument.Parse(File.ReadAllText(stem + ".json"));
        var root = doc.RootElement;
        int[] ids = root.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] greedy = root.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int vocab = root.GetProperty("n_vocab").GetInt32();
        float[] logits = [];
        string logitsPath = stem + ".logits.f32";
        if (File.Exists(logitsPath))
        {
            byte[] bytes = File.ReadAllBytes(logitsPath);
            logits = new float[bytes.Length / 4];
            Buffer.BlockCopy(bytes, 0, logits, 0, logits.Length * 4);
        }
        return new GoldenCase(ids, greedy, vocab, logits);
    }

    /// <summary>max|ours − golden| / std(golden), population std over the whole array (shared/README.md).</summary>
    public static double Figure(float[] ours, float[] golden)
    {
        if (ours.Length != golden.Length)
            throw new ArgumentException($"logits length {ours.Length} differs from the golden {golden.Length}");
        double mean = golden.Average(x => (double)x);
        double var = golden.Average(x => ((double)x - mean) * ((double)x - mean));
        double maxDiff = 0;
        for (int i = 0; i < ours.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs((double)ours[i] - golden[i]));
        return maxDiff / Math.Sqrt(var);
    }

    public static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}
