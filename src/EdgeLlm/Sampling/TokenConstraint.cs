using EdgeLlm.Tokenizers;

namespace EdgeLlm.Sampling;

/// <summary>
/// A rule on which tokens may come next (<see cref="JsonConstraint"/>, <see cref="GrammarConstraint"/>),
/// applied as llama.cpp's common sampler applies a grammar: the token the sampler drew is checked first,
/// and only a rejected token makes it draw again over the logits of the allowed tokens.
/// </summary>
public abstract class TokenConstraint
{
    /// <summary>Only an end-of-generation token may follow: the output is complete.</summary>
    public abstract bool IsComplete { get; }

    /// <summary>Whether <paramref name="token"/> may come next.</summary>
    public abstract bool Allows(int token);

    /// <summary>Records a token that <see cref="Allows"/> accepted.</summary>
    /// <exception cref="ArgumentException">the token is not allowed here.</exception>
    public abstract void Accept(int token);

    /// <summary>What is being constrained, for error messages ("the JSON output").</summary>
    protected abstract string Subject { get; }

    /// <summary>
    /// The token to generate, given the one <paramref name="sampler"/> drew from <paramref name="logits"/>:
    /// that one when it is allowed, else a new draw over the allowed tokens only (llama.cpp's common
    /// sampler does the same with a grammar). The choice is recorded (<see cref="Accept"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">no token of the vocabulary is allowed.</exception>
    public int Choose(Sampler sampler, ReadOnlySpan<float> logits, int sampled)
    {
        ArgumentNullException.ThrowIfNull(sampler);
        int next = sampled;
        if (!Allows(next))
        {
            float[] masked = logits.ToArray();
            if (Mask(masked) == 0) throw new InvalidOperationException($"no token of this vocabulary continues {Subject}");
            next = sampler.Sample(masked);
        }
        Accept(next);
        return next;
    }

    /// <summary>Sets the logit of every token that may not come next to −∞ (in place).</summary>
    /// <returns>How many tokens remain allowed.</returns>
    public virtual int Mask(Span<float> logits)
    {
        int allowed = 0;
        for (int id = 0; id < logits.Length; id++)
        {
            if (float.IsNegativeInfinity(logits[id])) continue;
            if (Allows(id)) allowed++;
            else logits[id] = float.NegativeInfinity;
        }
        return allowed;
    }

    /// <summary>The constraint asked for: a grammar, a JSON schema, any JSON object, or none (null).</summary>
    /// <exception cref="ArgumentException">a grammar and JSON output are both asked for.</exception>
    public static TokenConstraint? For(Tokenizer tokenizer, GbnfGrammar? grammar, bool jsonObject, JsonSchemaNode? schema)
    {
        if (grammar is not null && (jsonObject || schema is not null))
            throw new ArgumentException("a grammar and JSON output cannot be asked for together: choose one");
        if (grammar is not null) return new GrammarConstraint(tokenizer, grammar);
        return jsonObject || schema is not null ? new JsonConstraint(tokenizer, schema) : null;
    }
}
