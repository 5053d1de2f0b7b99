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
/// order; <c>additionalProperties</c> absent or false; true or a schema lets other keys in, their values held
/// to that schema), <c>items</c>, <c>enum</c> / <c>const</c>
/// (strings, numbers, booleans, null; a number must be written as listed), <c>minItems</c> / <c>maxItems</c> and <c>minLength</c> / <c>maxLength</c>
/// (in characters: a code point, or one escape such as <c>\n</c> or <c>\u00e9</c>). Keywords that only
/// narrow values (<c>description</c>, <c>title</c>, <c>multipleOf</c>, ...) are
/// accepted and not enforced; <c>pattern</c> is enforced (<see cref="StringPattern"/>: the regular-language part of
/// ECMA-262 regexes), <c>format</c> is enforced for <c>date</c>, <c>time</c>, <c>date-time</c> and <c>uuid</c>
/// (<see cref="StringFormat"/>; other formats are not); <c>minimum</c> / <c>maximum</c> / <c>exclusiveMinimum</c> / <c>exclusiveMaximum</c> are
/// enforced on integers (<c>"type": "integer"</c>; on numbers that may have fractions they are not). <c>$ref</c> into the same document (<c>$defs</c>, <c>definitions</c>; not recursive) and
/// <c>anyOf</c>/<c>oneOf</c> of alternatives with different JSON types (pydantic's Optional:
/// <c>[{...}, {"type": "null"}]</c>) are followed. <c>allOf</c> of several schemas is merged into one (properties and
/// required names of all; other keywords from whichever schema sets them; two different values for one keyword or
/// property are refused), as llama.cpp's json-schema-to-grammar merges them. Keywords that change the structure and are not
/// implemented (<c>not</c>, overlapping alternatives, enums of objects or arrays, ...) are refused with an <see cref="ArgumentException"/> naming the place, so a request never gets
/// less than it asked for without knowing.
/// </summary>
public sealed class JsonSchemaNode
{
    /// <summary>Most properties of one object, and values of one enum (a bit mask tracks them).</summary>
    public const int MaxMembers = 64;

    private static readonly HashSet<string> s_ignored = new(StringComparer.Ordinal)
    {
        "$schema", "$id", "$comment", "title", "description", "default", "examples", "multipleOf",
        "uniqueItems", "minProperties", "maxProperties", "deprecated", "readOnly", "writeOnly", "strict",
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

    /// <summary>anyOf / oneOf alternatives of different JSON types (null: none); <see cref="Types"/> is their union.</summary>
    internal JsonSchemaNode[]? AnyOf { get; private init; }

    /// <summary>The allowed strings, JSON-escaped UTF-8 (null: any string).</summary>
    internal byte[][]? Enum { get; private init; }

    /// <summary>The allowed numbers, booleans and null of an enum or const, as compact JSON text (null: none); the value must be written exactly so.</summary>
    internal byte[][]? RawEnum { get; private init; }

    /// <summary>Fewest items of an array (minItems; 0: no bound).</summary>
    internal int MinItems { get; private init; }

    /// <summary>Most items of an array (maxItems; -1: no bound).</summary>
    internal int MaxItems { get; private init; } = -1;

    /// <summary>Fewest characters of a string (minLength; 0: no bound).</summary>
    internal int MinLength { get; private init; }

    /// <summary>Most characters of a string (maxLength; -1: no bound).</summary>
    internal int MaxLength { get; private init; } = -1;

    /// <summary>The string format the value must have (<c>format</c>: date, time, date-time, uuid), or null.</summary>
    internal StringFormat? Format { get; private init; }

    /// <summary>The schema of an object's keys that are not listed (<c>additionalProperties</c> true: any value; a schema: that), or null: listed keys only (a free-form object, without <c>properties</c>, takes any key).</summary>
    internal JsonSchemaNode? Additional { get; private init; }

    /// <summary>The regular expression a string value must match (<c>pattern</c>), or null.</summary>
    internal StringPattern? Pattern { get; private init; }

    /// <summary>Least value of an integer (minimum / exclusiveMinimum, for <c>"type": "integer"</c>); long.MinValue: no bound.</summary>
    internal long IntegerMin { get; private init; } = long.MinValue;

    /// <summary>Greatest value of an integer (maximum / exclusiveMaximum); long.MaxValue: no bound.</summary>
    internal long IntegerMax { get; private init; } = long.MaxValue;

    /// <summary>An integer's value is bounded.</summary>
    internal bool HasIntegerBounds => IntegerMin != long.MinValue || IntegerMax != long.MaxValue;

    /// <summary>Allows any value.</summary>
    public static JsonSchemaNode AnyValue { get; } = new() { Types = JsonTypes.Any };

    /// <summary>Compiles a schema (a JSON object); the root must describe an object.</summary>
    /// <exception cref="ArgumentException">not an object, an unsupported keyword, a bad value; the message names the JSON path.</exception>
    public static JsonSchemaNode Parse(JsonElement schema)
    {
        var node = new Compiler(schema).Compile(schema, "schema");
        if ((node.Types & ~JsonTypes.Object) != 0 || node.Types == JsonTypes.None)
            throw new ArgumentException("schema: the root must be an object schema (\"type\": \"object\"), as OpenAI's structured outputs require");
        return node;
    }

    /// <summary>
    /// Compiles one schema document: local references (<c>$ref</c> to <c>#/$defs/...</c>,
    /// <c>#/definitions/...</c> or any JSON pointer into the document) are followed, a recursive one is refused.
    /// </summary>
    private sealed class Compiler(JsonElement root)
    {
        private readonly HashSet<string> _resolving = new(StringComparer.Ordinal);

        // Each reference is compiled once and its node shared: a schema whose definitions each use the next one
        // twice would otherwise take time exponential in their number (nodes are immutable, so sharing is safe).
        private readonly Dictionary<string, JsonSchemaNode> _resolved = new(StringComparer.Ordinal);

        /// <summary>Deepest nesting of schemas, references included (JSON parsing bounds the document's own nesting, not a chain of references).</summary>
        private const int MaxNesting = 128;

        private int _nesting;

        public JsonSchemaNode Compile(JsonElement s, string path)
        {
            if (++_nesting > MaxNesting) throw new ArgumentException($"{path}: the schema nests deeper than {MaxNesting} levels (references included)");
            try
            {
                return CompileNode(s, path);
            }
            finally
            {
                _nesting--;
            }
        }

        private JsonSchemaNode CompileNode(JsonElement s, string path)
        {
            if (s.ValueKind == JsonValueKind.True) return AnyValue;
            if (s.ValueKind != JsonValueKind.Object) throw new ArgumentException($"{path} must be a schema object, got {s.ValueKind}");
            // allOf of several schemas: one schema that holds them all (MergeAllOf), as llama.cpp's json-schema-to-grammar merges them.
            if (s.TryGetProperty("allOf", out var all) && all.ValueKind == JsonValueKind.Array && all.GetArrayLength() > 1)
                return Compile(MergeAllOf(s, path), path);
            JsonTypes types = JsonTypes.None;
            (string, byte[], JsonSchemaNode)[] props = [];
            ulong required = 0;
            JsonSchemaNode? items = null;
            byte[][]? enumValues = null;
            JsonElement? requiredList = null;
            JsonSchemaNode? reference = null;
            JsonSchemaNode[]? anyOf = null;
            int minItems = 0, maxItems = -1, minLength = 0, maxLength = -1;
            byte[][]? rawEnum = null;
            JsonTypes enumTypes = JsonTypes.None;
            bool bounds = false;
            double? minimum = null, maximum = null, exclusiveMinimum = null, exclusiveMaximum = null;
            StringFormat? format = null;
            JsonSchemaNode? additional = null;
            StringPattern? pattern = null;
            bool minimumExclusive = false, maximumExclusive = false; // draft 4: exclusiveMinimum/Maximum are booleans beside minimum/maximum
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
                        // false (or absent): the listed properties only; true or a schema: other keys too, their values
                        // any JSON or held to that schema (pydantic's dict[str, T]).
                        if (p.Value.ValueKind == JsonValueKind.True) additional = AnyValue;
                        else if (p.Value.ValueKind == JsonValueKind.Object) additional = Compile(p.Value, at);
                        else if (p.Value.ValueKind != JsonValueKind.False)
                            throw new ArgumentException($"{at} must be a boolean or a schema");
                        break;
                    case "items":
                        items = Compile(p.Value, at);
                        break;
                    case "$ref":
                        if (p.Value.ValueKind != JsonValueKind.String) throw new ArgumentException($"{at} must be a string");
                        if (reference is not null) throw new ArgumentException($"{path}: $ref and allOf are supported alone, not together");
                        reference = Reference(p.Value.GetString()!, at);
                        break;
                    case "anyOf":
                    case "oneOf":
                        anyOf = Alternatives(p.Value, at);
                        break;
                    case "allOf":
                        // pydantic wraps a described reference as {"allOf": [{"$ref": ...}], "description": ...}: one schema is that schema.
                        if (p.Value.ValueKind != JsonValueKind.Array || p.Value.GetArrayLength() == 0)
                            throw new ArgumentException($"{at} must be an array of at least one schema");
                        if (reference is not null) throw new ArgumentException($"{path}: $ref and allOf are supported alone, not together");
                        reference = Compile(p.Value[0], $"{at}[0]");
                        break;
                    case "$defs":
                    case "definitions":
                        break; // read through $ref
                    case "minItems":
                        minItems = Count(p.Value, at);
                        bounds = true;
                        break;
                    case "maxItems":
                        maxItems = Count(p.Value, at);
                        bounds = true;
                        break;
                    case "minLength":
                        minLength = Count(p.Value, at);
                        bounds = true;
                        break;
                    case "maxLength":
                        maxLength = Count(p.Value, at);
                        bounds = true;
                        break;
                    case "format":
                        if (p.Value.ValueKind != JsonValueKind.String) throw new ArgumentException($"{at} must be a string");
                        format = StringFormat.Named(p.Value.GetString()!); // formats not enforced are accepted as descriptions
                        break;
                    case "pattern":
                        if (p.Value.ValueKind != JsonValueKind.String) throw new ArgumentException($"{at} must be a string");
                        try
                        {
                            pattern = StringPattern.Parse(p.Value.GetString()!);
                        }
                        catch (ArgumentException e)
                        {
                            throw new ArgumentException($"{at}: {e.Message}");
                        }
                        break;
                    case "minimum":
                        minimum = Bound(p.Value, at);
                        break;
                    case "maximum":
                        maximum = Bound(p.Value, at);
                        break;
                    case "exclusiveMinimum":
                        if (p.Value.ValueKind is JsonValueKind.True or JsonValueKind.False) minimumExclusive = p.Value.ValueKind == JsonValueKind.True;
                        else exclusiveMinimum = Bound(p.Value, at);
                        break;
                    case "exclusiveMaximum":
                        if (p.Value.ValueKind is JsonValueKind.True or JsonValueKind.False) maximumExclusive = p.Value.ValueKind == JsonValueKind.True;
                        else exclusiveMaximum = Bound(p.Value, at);
                        break;
                    case "enum":
                    case "const":
                        var values = p.Name == "const" ? [p.Value] : p.Value.ValueKind == JsonValueKind.Array ? p.Value.EnumerateArray().ToArray()
                            : throw new ArgumentException($"{at} must be an array");
                        if (values.Length == 0 || values.Length > MaxMembers) throw new ArgumentException($"{at} must hold 1 to {MaxMembers} values");
                        if (values.Any(v => v.ValueKind is JsonValueKind.Object or JsonValueKind.Array))
                            throw new ArgumentException($"{at}: only strings, numbers, booleans and null are supported");
                        var strings = values.Where(v => v.ValueKind == JsonValueKind.String).Select(v => Escaped(v.GetString()!)).ToArray();
                        var raw = values.Where(v => v.ValueKind != JsonValueKind.String).Select(v => System.Text.Encoding.UTF8.GetBytes(v.GetRawText())).ToArray();
                        enumValues = strings.Length > 0 ? strings : null;
                        rawEnum = raw.Length > 0 ? raw : null;
                        enumTypes = (strings.Length > 0 ? JsonTypes.String : JsonTypes.None)
                            | values.Aggregate(JsonTypes.None, (t, v) => t | v.ValueKind switch
                            {
                                JsonValueKind.Number => v.TryGetInt64(out _) ? JsonTypes.Integer | JsonTypes.Number : JsonTypes.Number,
                                JsonValueKind.True or JsonValueKind.False => JsonTypes.Boolean,
                                JsonValueKind.Null => JsonTypes.Null,
                                _ => JsonTypes.None,
                            });
                        break;
                    default:
                        if (!s_ignored.Contains(p.Name)) throw new ArgumentException($"{at} is not supported (supported: type, properties, required, additionalProperties, items, enum/const, $ref, anyOf/oneOf of different types, minItems/maxItems, minLength/maxLength, minimum/maximum, pattern, format)");
                        break;
                }
            }
            if (reference is not null || anyOf is not null)
            {
                if (props.Length > 0 || items is not null || enumTypes != JsonTypes.None || types != JsonTypes.None || bounds || (reference is not null && anyOf is not null))
                    throw new ArgumentException($"{path}: $ref, anyOf and oneOf are supported alone (beside descriptive keywords), not mixed with type, properties, items, enum or length bounds");
                if (reference is not null) return reference;
                return new JsonSchemaNode { Types = anyOf!.Aggregate(JsonTypes.None, (t, a) => t | a.Types), AnyOf = anyOf };
            }
            if (enumTypes != JsonTypes.None)
            {
                // Every listed value must be of a declared type ("type": "integer" with [1, 2]; "number" takes integers too).
                if (types != JsonTypes.None)
                {
                    var declared = (types & JsonTypes.Number) != 0 ? types | JsonTypes.Integer : types;
                    if ((enumTypes & JsonTypes.String) != 0 && (declared & JsonTypes.String) == 0
                        || (enumTypes & JsonTypes.Boolean) != 0 && (declared & JsonTypes.Boolean) == 0
                        || (enumTypes & JsonTypes.Null) != 0 && (declared & JsonTypes.Null) == 0
                        || (enumTypes & (JsonTypes.Number | JsonTypes.Integer)) != 0 && (declared & enumTypes & (JsonTypes.Number | JsonTypes.Integer)) == 0)
                        throw new ArgumentException($"{path}: an enum value is not of the declared type");
                }
                types = enumTypes;
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
            if (maxItems >= 0 && minItems > maxItems) throw new ArgumentException($"{path}: minItems {minItems} is above maxItems {maxItems}: no array fits");
            if (maxLength >= 0 && minLength > maxLength) throw new ArgumentException($"{path}: minLength {minLength} is above maxLength {maxLength}: no string fits");
            // Bounds are enforced on integers (as llama.cpp's json-schema-to-grammar does); on numbers with fractions they are accepted and not enforced.
            long intMin = long.MinValue, intMax = long.MaxValue;
            if ((types & JsonTypes.Integer) != 0 && (types & JsonTypes.Number) == 0 && rawEnum is null)
            {
                const double Limit = 9_999_999_999_999_999; // 16 digits, JsonConstraint.MaxIntegerDigits
                double lo = Math.Max(minimum is { } m1 ? (minimumExclusive ? Math.Floor(m1) + 1 : Math.Ceiling(m1)) : double.NegativeInfinity,
                    exclusiveMinimum is { } e1 ? Math.Floor(e1) + 1 : double.NegativeInfinity);
                double hi = Math.Min(maximum is { } m2 ? (maximumExclusive ? Math.Ceiling(m2) - 1 : Math.Floor(m2)) : double.PositiveInfinity,
                    exclusiveMaximum is { } e2 ? Math.Ceiling(e2) - 1 : double.PositiveInfinity);
                if (lo > hi) throw new ArgumentException($"{path}: no integer lies between the minimum and the maximum");
                if (lo > -Limit) intMin = (long)Math.Min(lo, Limit);
                if (hi < Limit) intMax = (long)Math.Max(hi, -Limit);
            }
            return new JsonSchemaNode
            {
                IntegerMin = intMin, IntegerMax = intMax, Additional = additional, Format = (types & JsonTypes.String) != 0 && enumValues is null ? format : null,
                Pattern = (types & JsonTypes.String) != 0 && enumValues is null ? pattern : null,
                Types = types, Properties = props, KeyBytes = props.Select(p => p.Item2).ToArray(), Required = required, Items = items, Enum = enumValues, RawEnum = rawEnum,
                MinItems = minItems, MaxItems = maxItems, MinLength = minLength, MaxLength = maxLength,
            };
        }

        /// <summary>A minimum / maximum: a finite number.</summary>
        private static double Bound(JsonElement v, string at) =>
            v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d) ? d : throw new ArgumentException($"{at} must be a number");

        /// <summary>A count keyword's value: a non-negative integer (1.0 counts as 1, as JSON Schema allows).</summary>
        private static int Count(JsonElement v, string at)
        {
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d >= 0 && d == Math.Floor(d))
                return d > int.MaxValue ? int.MaxValue : (int)d;
            throw new ArgumentException($"{at} must be a non-negative integer, got {v.GetRawText()}");
        }

        private JsonSchemaNode Reference(string reference, string at)
        {
            if (_resolved.TryGetValue(reference, out var done)) return done;
            var target = Pointer(reference, at);
            if (!_resolving.Add(reference)) throw new ArgumentException($"{at}: \"{reference}\" refers to itself (recursive schemas are not supported)");
            try
            {
                return _resolved[reference] = Compile(target, reference);
            }
            finally
            {
                _resolving.Remove(reference);
            }
        }

        /// <summary>The schema a local reference (a JSON pointer into the document) points at.</summary>
        private JsonElement Pointer(string reference, string at)
        {
            if (!reference.StartsWith('#'))
                throw new ArgumentException($"{at}: only references into the same schema (\"#/...\") are supported, got \"{reference}\"");
            var target = root;
            foreach (string raw in reference.Length > 2 ? reference[2..].Split('/') : [])
            {
                string part = Uri.UnescapeDataString(raw).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
                if (target.ValueKind != JsonValueKind.Object || !target.TryGetProperty(part, out target))
                    throw new ArgumentException($"{at}: \"{reference}\" points at nothing");
            }
            return target;
        }

        /// <summary>
        /// <paramref name="s"/> with its <c>allOf</c> schemas (and theirs, and the schemas their <c>$ref</c>s point at) folded
        /// into one schema, as llama.cpp's json-schema-to-grammar merges them: the properties of all, in order of
        /// appearance; every <c>required</c> name; any other keyword from whichever schema sets it. A value must meet
        /// every schema of an allOf, so where two set the same keyword (or the same property) to different values the
        /// schema is refused, naming the place, rather than one silently dropped.
        /// </summary>
        private JsonElement MergeAllOf(JsonElement s, string path)
        {
            var props = new List<(string Name, JsonElement Schema)>();
            var required = new List<string>();
            var other = new List<(string Name, JsonElement Value)>();
            void Add(JsonElement part, string at, int depth)
            {
                if (depth > MaxNesting) throw new ArgumentException($"{at}: allOf and $ref nest deeper than {MaxNesting} levels");
                if (part.ValueKind == JsonValueKind.True) return;
                if (part.ValueKind != JsonValueKind.Object) throw new ArgumentException($"{at} must be a schema object, got {part.ValueKind}");
                foreach (var p in part.EnumerateObject())
                {
                    string where = $"{at}.{p.Name}";
                    switch (p.Name)
                    {
                        case "allOf":
                            if (p.Value.ValueKind != JsonValueKind.Array || p.Value.GetArrayLength() == 0)
                                throw new ArgumentException($"{where} must be an array of at least one schema");
                            int i = 0;
                            foreach (var m in p.Value.EnumerateArray()) Add(m, $"{where}[{i++}]", depth + 1);
                            break;
                        case "$ref":
                            if (p.Value.ValueKind != JsonValueKind.String) throw new ArgumentException($"{where} must be a string");
                            Add(Pointer(p.Value.GetString()!, where), p.Value.GetString()!, depth + 1);
                            break;
                        case "properties":
                            if (p.Value.ValueKind != JsonValueKind.Object) throw new ArgumentException($"{where} must be an object");
                            foreach (var prop in p.Value.EnumerateObject())
                            {
                                int k = props.FindIndex(x => x.Name == prop.Name);
                                if (k < 0) props.Add((prop.Name, prop.Value));
                                else if (!JsonElement.DeepEquals(props[k].Schema, prop.Value))
                                    throw new ArgumentException($"{where}.{prop.Name}: the schemas of allOf give this property different schemas (merging them is not implemented)");
                            }
                            break;
                        case "required":
                            if (p.Value.ValueKind != JsonValueKind.Array) throw new ArgumentException($"{where} must be an array of property names");
                            foreach (var r in p.Value.EnumerateArray())
                            {
                                if (r.ValueKind != JsonValueKind.String) throw new ArgumentException($"{where} must be an array of property names");
                                if (!required.Contains(r.GetString()!)) required.Add(r.GetString()!);
                            }
                            break;
                        case "$defs":
                        case "definitions":
                            break; // read through $ref
                        default:
                            if (s_ignored.Contains(p.Name)) break; // descriptions: whichever, none is enforced
                            int o = other.FindIndex(x => x.Name == p.Name);
                            if (o < 0) other.Add((p.Name, p.Value));
                            else if (!JsonElement.DeepEquals(other[o].Value, p.Value))
                                throw new ArgumentException($"{where}: the schemas of allOf set {p.Name} to different values (only one value, or one schema setting it, is supported)");
                            break;
                    }
                }
            }
            Add(s, path, 0);
            var buffer = new System.Buffers.ArrayBufferWriter<byte>();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                foreach (var (name, value) in other)
                {
                    w.WritePropertyName(name);
                    value.WriteTo(w);
                }
                if (props.Count > 0)
                {
                    w.WriteStartObject("properties");
                    foreach (var (name, schema) in props)
                    {
                        w.WritePropertyName(name);
                        schema.WriteTo(w);
                    }
                    w.WriteEndObject();
                }
                if (required.Count > 0)
                {
                    w.WriteStartArray("required");
                    foreach (string r in required) w.WriteStringValue(r);
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }
            // The merged schema's own document; its $refs still point into the root document (Pointer reads root).
            return JsonDocument.Parse(buffer.WrittenMemory).RootElement;
        }

        /// <summary>
        /// anyOf / oneOf whose alternatives start with different bytes (by JSON type: object, array,
        /// string, number or integer, boolean, null): the first byte of the value picks one. Alternatives
        /// that share a type would need both followed at once, which is refused.
        /// </summary>
        private JsonSchemaNode[] Alternatives(JsonElement list, string at)
        {
            if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0) throw new ArgumentException($"{at} must be a non-empty array of schemas");
            var alts = new List<JsonSchemaNode>();
            int i = 0;
            foreach (var e in list.EnumerateArray())
            {
                var alt = Compile(e, $"{at}[{i++}]");
                for (int k = 0; k < alts.Count; k++)
                    if ((Starts(alts[k].Types) & Starts(alt.Types)) != 0)
                        throw new ArgumentException($"{at}: alternatives {k} and {i - 1} can both start the same way (same JSON type); only alternatives of different types are supported");
                alts.Add(alt);
            }
            return [.. alts];
        }
    }

    /// <summary>The first-byte classes of a set of types (number and integer both start with '-' or a digit).</summary>
    private static JsonTypes Starts(JsonTypes t) => (t & (JsonTypes.Integer | JsonTypes.Number)) != 0 ? t | JsonTypes.Number | JsonTypes.Integer : t;

    /// <summary>The alternative of an anyOf that a value starting with <paramref name="type"/> takes, or null.</summary>
    internal JsonSchemaNode? Pick(JsonTypes type)
    {
        foreach (var alt in AnyOf!)
            if ((Starts(alt.Types) & type) != 0) return alt;
        return null;
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
