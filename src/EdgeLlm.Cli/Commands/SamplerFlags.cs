using System.CommandLine;
using EdgeLlm.Sampling;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// The sampler flags shared by <c>run</c> and <c>chat</c> (llama.cpp's names and defaults):
/// --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n, --seed.
/// </summary>
internal sealed class SamplerFlags
{
    private readonly Option<float> _temp = new("--temp") { Description = "Temperature (0 = greedy)", DefaultValueFactory = _ => 0.8f };
    private readonly Option<int> _topK = new("--top-k") { Description = "Top-k sampling (0 = off)", DefaultValueFactory = _ => 40 };
    private readonly Option<float> _topP = new("--top-p") { Description = "Top-p (nucleus) sampling (1 = off)", DefaultValueFactory = _ => 0.95f };
    private readonly Option<float> _minP = new("--min-p") { Description = "Min-p sampling (0 = off)", DefaultValueFactory = _ => 0.05f };
    private readonly Option<float> _repeatPenalty = new("--repeat-penalty") { Description = "Penalty for repeating one of the last --repeat-last-n tokens (1 = off)", DefaultValueFactory = _ => 1.0f };
    private readonly Option<int> _repeatLastN = new("--repeat-last-n") { Description = "Tokens the repetition penalty looks back over (-1 = whole context)", DefaultValueFactory = _ => 64 };
    private readonly Option<ulong?> _seed;

    /// <param name="seedDescription">what --seed means for the command</param>
    public SamplerFlags(string seedDescription) => _seed = new("--seed") { Description = seedDescription };

    /// <summary>The options, to add to a command.</summary>
    public IEnumerable<Option> All => [_temp, _topK, _topP, _minP, _repeatPenalty, _repeatLastN, _seed];

    /// <summary>The parsed, validated sampler settings.</summary>
    /// <exception cref="UsageException">a value out of range (the message names the flag)</exception>
    public SamplerOptions Read(ParseResult pr)
    {
        var options = new SamplerOptions
        {
            Temperature = pr.GetValue(_temp),
            TopK = pr.GetValue(_topK),
            TopP = pr.GetValue(_topP),
            MinP = pr.GetValue(_minP),
            RepeatPenalty = pr.GetValue(_repeatPenalty),
            RepeatLastN = pr.GetValue(_repeatLastN),
            Seed = pr.GetValue(_seed),
        };
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return options;
    }
}
