using System.Text.Encodings.Web;
using System.Text.Json;

namespace EdgeLlm.Sampling;

/// <summary>JSON value types a schema allows (JSON Schema's <c>type</c>).</summary>
[Flags]
public enum JsonTypes : byte
{
    /// <summary>No constraint recorded.</summary>
    None = 0,
    Object = 1,
    Array = 2,
    String = 4,
    Number = 8,
    Integer = 16,
    Boolean = 32,
    Null = 64,

    /// <summary>Any JSON value.</summary>
    Any = Object | Array | String | Number | Integer | Boolean | Null,
}

/// <summary>
/// The part of JSON Schema that <see cref="JsonConstraint"/> enforces while generating: <c>type</c>
/// (one or a list), <c>properties</c> with <c>required</c> (keys from the list only, each once, any
/// order; <c>additionalProperties</c> may be absent or false), <c>items</c>, and string
/// <c>enum</c> / <c>const</c>. Keywords that only narrow values (<c>description</c>, <c>title</c>,
/// <c>format</c>, <c>minimum</c>, <c>maxLength</c>, <c>pattern</c>, ...) are accepted and not
/// enforced; keywords that change the structure and are not implemented (<c>anyOf</c>, <c>oneOf</c>,
/// <c>allOf</c>, <c>$ref</c>, <c>additionalProperties</c> other than false, non-string enums, ...)
/// are refused with an <see cref="ArgumentException"/> naming the place, so a request never gets
/// less than it asked for without knowing.
/// </summary>
public sealed class JsonSchemaNode
{
    /// <summary>Most properties of one object, and values of one enum (a bit mask tracks them).</summary>
    public const int MaxMembers = 64;

    private static readonly HashSet<string> s_ignored = new(StringComparer.Ordinal)
    {
        "$schema", "$id", "$comment", "title", "description", "default", "examples", "format", "pattern",
        "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "deprecated", "readOnly", "writeOnly", "strict",
    };

    private JsonSchemaNode() { }

    /// <summary>The types a value may have.</summary>
    public JsonTypes Types { get; private init; }

    /// <summary>Object properties: name, its JSON-escaped UTF-8 form (as written between the quotes), its schema; empty for a free-form object.</summary>
    internal (string Name, byte[] Escaped, JsonSchemaNode Schema)[] Properties { get; private init; } = [];

    /// <summary>The escaped property names (<see cref="Properties"/>' Escaped, in order).</summary>
    internal byte[][] KeyBytes { get; private init; } = [];

    /// <summary>Bit i set: <see cref="Properties"/>[i] is required.</summary>
    internal ulong Required { get; private init; }

    /// <summary>The schema of array items (null: any value).</summary>
    internal JsonSchemaNode? Items { get; private init; }

    /// <summary>The allowed strings, JSON-escaped UTF-8 (null: any string).</summary>
    internal byte[][]? Enum { get; private init; }

    /// <summary>Allows any value.</summary>
    public static JsonSchemaNode AnyValue { get; } = new() { Types = JsonTypes.Any };

    /// <summary>Compiles a schema (a JSON object); the root must describe an object.</summary>
    /// <exception cref="ArgumentException">not an object, an unsupported keyword, a bad value; the message names the JSON path.</exception>
    public static JsonSchemaNode Parse(JsonElement schema)
    {
        var node = Compile(schema, "schema");
        if ((node.Types & ~JsonTypes.Object) != 0 || node.Types == JsonTypes.None)
            throw new ArgumentException("schema: the root must be an object schema (\"type\": \"object\"), as OpenAI's structured outputs require");
        return node;
    }

    private static JsonSchemaNode Compile(JsonElement s, string path)
    {
        if (s.ValueKind == JsonValueKind.True) return AnyValue;
        if (s.ValueKind != JsonValueKind.Object) throw new ArgumentException($"{path} must be a schema object, got {s.ValueKind}");
        JsonTypes types = JsonTypes.None;
        (string, byte[], JsonSchemaNode)[] props = [];
        ulong required = 0;
        JsonSchemaNode? items = null;
        byte[][]? enumValues = null;
        JsonElement? requiredList = null;
        foreach (var p in s.EnumerateObject())
        {
            string at = $"{path}.{p.Name}";
            switch (p.Name)
            {
                case "type":
                    types = ParseTypes(p.Value, at);
                    break;
                case "properties":
                    if (p.Value.ValueKind != JsonValueKind.Object) throw new ArgumentException($"{at} must be an object");
                    var list = new List<(string, byte[], JsonSchemaNode)>();
                    foreach (var prop in p.Value.EnumerateObject())
                        list.Add((prop.Name, Escaped(prop.Name), Compile(prop.Value, $"{at}.{prop.Name}")));
                    if (list.Count > MaxMembers) throw new ArgumentException($"{at} has {list.Count} properties; at most {MaxMembers} are supported");
                    props = [.. list];
                    break;
                case "required":
                    if (p.Value.ValueKind != JsonValueKind.Array) throw new ArgumentException($"{at} must be an array of property names");
                    requiredList = p.Value;
                    break;
                case "additionalProperties":
                    if (p.Value.ValueKind != JsonValueKind.False)
                        throw new ArgumentException($"{at}: only false is supported (objects take the listed properties only)");
                    break;
                case "items":
                    items = Compile(p.Value, at);
                    break;
                case "enum":
                case "const":
                    var values = p.Name == "const" ? [p.Value] : p.Value.ValueKind == JsonValueKind.Array ? p.Value.EnumerateArray().ToArray()
                        : throw new ArgumentException($"{at} must be an array");
                    if (values.Length == 0 || values.Length > MaxMembers) throw new ArgumentException($"{at} must hold 1 to {MaxMembers} values");
                    if (values.Any(v => v.ValueKind != JsonValueKind.String)) throw new ArgumentException($"{at}: only strings are supported");
                    enumValues = values.Select(v => Escaped(v.GetString()!)).ToArray();
                    break;
                default:
                    if (!s_ignored.Contains(p.Name)) throw new ArgumentException($"{at} is not supported (supported: type, properties, required, additionalProperties: false, items, string enum/const)");
                    break;
            }
        }
        if (enumValues is not null)
        {
            if (types != JsonTypes.None && (types & JsonTypes.String) == 0) throw new ArgumentException($"{path}: a string enum needs type string");
            types = JsonTypes.String;
        }
        if (types == JsonTypes.None) types = props.Length > 0 ? JsonTypes.Object : items is not null ? JsonTypes.Array : JsonTypes.Any;
        if (requiredList is { } req)
        {
            foreach (var r in req.EnumerateArray())
            {
                int i = r.ValueKind == JsonValueKind.String ? Array.FindIndex(props, x => x.Item1 == r.GetString()) : -1;
                if (i < 0) throw new ArgumentException($"{path}.required: {r.GetRawText()} is not one of the properties");
                required |= 1UL << i;
            }
        }
        return new JsonSchemaNode { Types = types, Properties = props, KeyBytes = props.Select(p => p.Item2).ToArray(), Required = required, Items = items, Enum = enumValues };
    }

    private static JsonTypes ParseTypes(JsonElement t, string at)
    {
        if (t.ValueKind == JsonValueKind.String) return One(t.GetString()!, at);
        if (t.ValueKind != JsonValueKind.Array || t.GetArrayLength() == 0) throw new ArgumentException($"{at} must be a type name or a non-empty array of them");
        JsonTypes all = JsonTypes.None;
        foreach (var e in t.EnumerateArray())
            all |= e.ValueKind == JsonValueKind.String ? One(e.GetString()!, at) : throw new ArgumentException($"{at} must hold type names");
        return all;
    }

    private static JsonTypes One(string name, string at) => name switch
    {
        "object" => JsonTypes.Object,
        "array" => JsonTypes.Array,
        "string" => JsonTypes.String,
        "number" => JsonTypes.Number | JsonTypes.Integer,
        "integer" => JsonTypes.Integer,
        "boolean" => JsonTypes.Boolean,
        "null" => JsonTypes.Null,
        _ => throw new ArgumentException($"{at}: unknown type '{name}'"),
    };

    /// <summary>A string's JSON form between the quotes, UTF-8, with System.Text.Json's minimal escaping ("\"", "\\", control characters).</summary>
    private static byte[] Escaped(string s)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            w.WriteStringValue(s);
        return buffer.WrittenSpan[1..^1].ToArray();
    }
}
