namespace EdgeLlm.Sampling;

/// <summary>What <see cref="StopStringMatcher.Append"/> allows to be shown after a chunk of generated text.</summary>
/// <param name="Text">Text that can be emitted now: it cannot be part of a stop string any more.</param>
/// <param name="Stopped">True once a stop string has appeared; generation should end. The stop string itself is not in <paramref name="Text"/>.</param>
/// <param name="StopString">The stop string that matched, when <paramref name="Stopped"/>.</param>
public readonly record struct StopMatch(string Text, bool Stopped, string? StopString);

/// <summary>
/// Watches generated text for stop strings (<c>--reverse-prompt</c>/<c>stop</c>) as it arrives in pieces. Text that
/// might be the beginning of a stop string is held back until the next piece decides it; the stop string and
/// anything after it are never emitted.
/// </summary>
/// <remarks>
/// Invariant: the held-back text is the longest suffix of what has arrived that is a proper prefix of some stop
/// string. A stop string that starts before it would need a longer such suffix, so every match starts inside the
/// held-back text or the new piece, and searching only there is enough.
/// </remarks>
public sealed class StopStringMatcher
{
    private readonly string[] _stops;
    private string _pending = "";

    /// <summary>Creates a matcher for <paramref name="stopStrings"/> (may be empty: then text passes straight through).</summary>
    /// <exception cref="ArgumentException">A stop string is null or empty.</exception>
    public StopStringMatcher(IEnumerable<string> stopStrings)
    {
        ArgumentNullException.ThrowIfNull(stopStrings);
        _stops = [.. stopStrings];
        for (int i = 0; i < _stops.Length; i++)
            if (string.IsNullOrEmpty(_stops[i]))
                throw new ArgumentException($"stop string {i} is empty: an empty stop string would end generation at once", nameof(stopStrings));
    }

    /// <summary>True after a stop string matched; later input is ignored.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The text currently held back because it could begin a stop string.</summary>
    public string Pending => _pending;

    /// <summary>Adds the next piece of generated text and returns what can be emitted now.</summary>
    public StopMatch Append(string chunk)
    {
        ArgumentNullException.ThrowIfNull(chunk);
        if (Stopped) return new StopMatch("", true, null);
        string text = _pending + chunk;

        // The earliest occurrence wins; at the same position the longer stop string (it contains the shorter).
        int at = -1;
        string? which = null;
        foreach (var s in _stops)
        {
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (at < 0 || i < at || (i == at && s.Length > which!.Length)))
            {
                at = i;
                which = s;
            }
        }
        if (which is not null)
        {
            Stopped = true;
            _pending = "";
            return new StopMatch(text[..at], true, which);
        }

        int hold = LongestPrefixSuffix(text);
        // Never split a surrogate pair: a high surrogate at the end waits for its partner.
        if (hold == 0 && text.Length > 0 && char.IsHighSurrogate(text[^1])) hold = 1;
        _pending = text[^hold..];
        return new StopMatch(text[..^hold], false, null);
    }

    /// <summary>At the end of generation: returns the held-back text (no stop string came) and clears it.</summary>
    public string Flush()
    {
        string rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }

    /// <summary>Clears the held-back text and the stopped state, for the next generation.</summary>
    public void Reset()
    {
        _pending = "";
        Stopped = false;
    }

    // Length of the longest suffix of text that is a proper prefix of a stop string.
    private int LongestPrefixSuffix(string text)
    {
        int best = 0;
        foreach (var s in _stops)
        {
            for (int len = Math.Min(s.Length - 1, text.Length); len > best; len--)
            {
                if (string.CompareOrdinal(text, text.Length - len, s, 0, len) == 0)
                {
                    best = len;
                    break;
                }
            }
        }
        return best;
    }
}
