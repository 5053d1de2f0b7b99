using System.Collections;

namespace EdgeLlm.Chat.Jinja;

/// <summary>
/// A parsed Jinja template, rendered with the semantics Hugging Face uses for chat templates
/// (jinja2's ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the loop-controls
/// extension, plus <c>raise_exception</c>, <c>strftime_now</c> and a <c>tojson</c> that writes
/// json.dumps with ensure_ascii off). The interpreter is sandboxed: a template sees only the
/// values passed to it, cannot mutate them, and runs under <see cref="TemplateLimits"/>.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Stmt> _body;
    private readonly TemplateLimits _limits;

    private JinjaTemplate(List<Stmt> body, TemplateLimits limits)
    {
        _body = body;
        _limits = limits;
    }

    /// <summary>Parses a template.</summary>
    /// <exception cref="TemplateException">a syntax error, naming its line and column</exception>
    public static JinjaTemplate Parse(string source, TemplateLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        limits ??= TemplateLimits.Default;
        return new JinjaTemplate(Parser.Parse(source, limits), limits);
    }

    /// <summary>
    /// Renders with the given variables. Values may be null, string, bool, integers, float/double,
    /// <see cref="IDictionary{TKey,TValue}"/> with string keys, and lists/arrays of these;
    /// anything else is refused (no reflection over .NET objects).
    /// </summary>
    /// <param name="now">the time <c>strftime_now</c> formats (default: the local time now)</param>
    /// <exception cref="TemplateException">a runtime error, or the template's own <c>raise_exception</c></exception>
    public string Render(IEnumerable<KeyValuePair<string, object?>> variables, DateTime? now = null)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var vars = new Dictionary<string, Value>(StringComparer.Ordinal);
        foreach (var kv in variables) vars[kv.Key] = FromObject(kv.Value, kv.Key, 0);
        return Renderer.Render(_body, vars, _limits, now ?? DateTime.Now);
    }

    /// <summary>Converts a .NET value to a template value, by its type only.</summary>
    internal static Value FromObject(object? o, string path, int depth)
    {
        if (depth > 64) throw new ArgumentException($"template variable '{path}' is nested too deeply");
        switch (o)
        {
            case null: return Value.None;
            case string s: return new StringValue(s);
            case bool b: return Value.Bool(b);
            case int or long or short or sbyte or byte or ushort or uint: return new IntValue(Convert.ToInt64(o, System.Globalization.CultureInfo.InvariantCulture));
            case float f: return new FloatValue(f);
            case double d: return new FloatValue(d);
            case decimal m: return new FloatValue((double)m);
            case IDictionary<string, object?> dict:
            {
                var d = new DictValue();
                foreach (var kv in dict) d.Set(kv.Key, FromObject(kv.Value, path + "." + kv.Key, depth + 1));
                return d;
            }
            case IDictionary<string, string> sdict:
            {
                var d = new DictValue();
                foreach (var kv in sdict) d.Set(kv.Key, new StringValue(kv.Value));
                return d;
            }
            case IEnumerable e:
            {
                var items = new List<Value>();
                int i = 0;
                foreach (var item in e) items.Add(FromObject(item, $"{path}[{i++}]", depth + 1));
                return new ListValue(items);
            }
            default:
                throw new ArgumentException($"template variable '{path}' has type {o.GetType().Name}, which a template cannot use (give strings, numbers, booleans, lists or string-keyed dictionaries)");
        }
    }
}
