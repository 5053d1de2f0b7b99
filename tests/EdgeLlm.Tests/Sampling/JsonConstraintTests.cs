using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Sampling;
using EdgeLlm.Tokenizers;
using EdgeLlm.Tests.Engine;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Sampling;

/// <summary>
/// <see cref="JsonConstraint"/>: the byte-level recognizer against System.Text.Json, and JSON-object
/// generation through <see cref="TextGenerator"/> (<see cref="GenerationOptions.JsonObject"/>).
/// </summary>
public class JsonConstraintTests(ITestOutputHelper output)
{
    private static bool Complete(string s) => JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(s));

    private static bool Prefix(string s) => JsonConstraint.IsPrefix(Encoding.UTF8.GetBytes(s));

    [Theory]
    [InlineData("{}")]
    [InlineData("{\n  \"a\": [\n\t1,\n\t2\n  ]\n}")]
    [InlineData("{\"a\":1}")]
    [InlineData("{\"a\": -0.5e+10, \"b\": [true, false, null, 0, 12.25, 3E-2], \"c\": {\"d\": []}}")]
    [InlineData("{\"s\": \"caf\\u00e9 \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\"}")]
    [InlineData("{\"ünï\": \"日本語 😀\"}")]
    [InlineData("{\"a\":[[[[{}]]]]}")]
    public void ValidObjects_AreComplete(string json)
    {
        Assert.True(Complete(json), json);
        Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(json).RootElement.ValueKind);
    }

    [Theory]
    [InlineData("[]")]                 // the root must be an object
    [InlineData("\"x\"")]
    [InlineData("{\"a\":01}")]         // no leading zeros
    [InlineData("{\"a\":1,}")]         // no trailing comma
    [InlineData("{a:1}")]              // keys are strings
    [InlineData("{\"a\" 1}")]
    [InlineData("{\"a\":1]")]          // mismatched closer
    [InlineData("{\"a\":tru")]         // a prefix, not complete: checked below
    [InlineData("{\"a\":.5}")]
    [InlineData("{\"a\":1.}")]
    [InlineData("{\"a\":1e}")]
    [InlineData("{\"a\":\"\\x\"}")]    // unknown escape
    [InlineData("{\"a\":\"\\u12g4\"}")]
    [InlineData("{\"a\":\"tab\there\"}")] // raw control character
    [InlineData("{} {}")]              // nothing after the root object
    [InlineData("{}x")]
    [InlineData("{\"a\":True}")]
    [InlineData(" {}")]                // nothing before the root object (llama.cpp's json.gbnf)
    [InlineData("{  }")]               // between tokens: nothing, one space, or a newline and an indent
    [InlineData("{\r\n}")]
    [InlineData("{\t}")]
    [InlineData("{\n\n}")]
    [InlineData("{\"a\":12345678901234567}")] // 17 integer digits
    public void InvalidObjects_AreNotComplete(string json)
    {
        Assert.False(Complete(json), json);
    }

    [Theory]
    [InlineData("{")]
    [InlineData("{\"a\":tru")]
    [InlineData("{\"a\":[1, 2")]
    [InlineData("{\"a\":\"unfinished \\u00")]
    [InlineData("{\"a\":-")]
    [InlineData("{\"a\":1e+")]
    public void Prefixes_AreAccepted(string prefix)
    {
        Assert.True(Prefix(prefix), prefix);
        Assert.False(Complete(prefix), prefix);
    }

    [Fact]
    public void InvalidUtf8_InStrings_IsRejected()
    {
        byte[] Obj(params byte[] inner) => [.. "{\"a\":\""u8.ToArray(), .. inner, .. "\"}"u8.ToArray()];
        Assert.True(JsonConstraint.IsCompleteObject(Obj(0xC3, 0xA9)));          // é
        Assert.False(JsonConstraint.IsCompleteObject(Obj(0xC0, 0x80)));         // overlong
        Assert.False(JsonConstraint.IsCompleteObject(Obj(0xED, 0xA0, 0x80)));   // a UTF-16 surrogate
        Assert.False(JsonConstraint.IsCompleteObject(Obj(0xE2, 0x82)));         // cut short by the quote
        Assert.False(JsonConstraint.IsCompleteObject(Obj(0x80)));               // a lone continuation byte
        Assert.False(JsonConstraint.IsCompleteObject(Obj(0xF4, 0x90, 0x80, 0x80))); // above U+10FFFF
    }

    [Fact]
    public void Whitespace_IntegerDigits_AndDepth_AreCapped()
    {
        Assert.True(Complete("{\n" + new string(' ', JsonConstraint.MaxIndent) + "}"));
        Assert.False(Prefix("{\n" + new string(' ', JsonConstraint.MaxIndent + 1)));
        Assert.True(Complete("{\"a\": " + new string('9', JsonConstraint.MaxIntegerDigits) + ".25}"));
        Assert.False(Prefix("{\"a\": " + new string('9', JsonConstraint.MaxIntegerDigits + 1)));
        Assert.True(Complete("{\"a\": -0.000000000000000000001}")); // fractions are not capped (as llama.cpp's)
        Assert.True(Prefix("{\"a\":" + new string('[', JsonConstraint.MaxDepth - 1)));
        Assert.False(Prefix("{\"a\":" + new string('[', JsonConstraint.MaxDepth)));
        // inside a string, spaces are text, not whitespace between tokens
        Assert.True(Complete("{\"a\":\"" + new string(' ', 100) + "\"}"));
    }

    /// <summary>Random JSON trees, serialized compactly and indented: every one is accepted, and every strict prefix is a prefix only.</summary>
    [Fact]
    public void RandomDocuments_AgreeWithSystemTextJson()
    {
        var rng = new Random(42);
        for (int i = 0; i < 300; i++)
        {
            var obj = (JsonObject)RandomNode(rng, 0, forceObject: true)!;
            foreach (bool indented in new[] { false, true })
            {
                string text = obj.ToJsonString(new JsonSerializerOptions { WriteIndented = indented, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
                byte[] bytes = Encoding.UTF8.GetBytes(text);
                Assert.True(JsonConstraint.IsCompleteObject(bytes), text);
                int cut = rng.Next(bytes.Length);
                Assert.True(JsonConstraint.IsPrefix(bytes.AsSpan(0, cut)), text[..Math.Min(text.Length, cut)]);
            }
        }
    }

    /// <summary>Random byte strings from JSON's alphabet: whatever the recognizer calls a complete object, System.Text.Json parses as one.</summary>
    [Fact]
    public void RandomBytes_CompleteMeansParsable()
    {
        var rng = new Random(7);
        byte[] alphabet = "{}[]\":,0123456789-+.eE truefalsn\\u\n"u8.ToArray();
        int complete = 0;
        for (int i = 0; i < 200_000; i++)
        {
            var bytes = new byte[rng.Next(2, 14)];
            bytes[0] = (byte)'{';
            for (int j = 1; j < bytes.Length; j++) bytes[j] = alphabet[rng.Next(alphabet.Length)];
            if (!JsonConstraint.IsCompleteObject(bytes)) continue;
            complete++;
            using var doc = JsonDocument.Parse(bytes);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        }
        output.WriteLine($"{complete} complete objects among the random strings");
        Assert.True(complete > 100);
    }

    private static JsonNode? RandomNode(Random rng, int depth, bool forceObject = false)
    {
        int kind = forceObject ? 0 : rng.Next(depth > 3 ? 2 : 0, 7);
        switch (kind)
        {
            case 0:
                var o = new JsonObject();
                for (int i = rng.Next(4); i > 0; i--) o["k" + rng.Next(1000) + (rng.Next(3) == 0 ? "é\"\\\n😀" : "")] = RandomNode(rng, depth + 1);
                return o;
            case 1:
                var a = new JsonArray();
                for (int i = rng.Next(4); i > 0; i--) a.Add(RandomNode(rng, depth + 1));
                return a;
            case 2: return JsonValue.Create(rng.Next(-1000, 1000));
            case 3: return JsonValue.Create(rng.NextDouble() * Math.Pow(10, rng.Next(-8, 8)) * (rng.Next(2) == 0 ? -1 : 1));
            case 4: return JsonValue.Create(rng.Next(2) == 0);
            case 5: return null;
            default: return JsonValue.Create("s\t" + (char)rng.Next(0x20, 0x7f) + "日本\u0001");
        }
    }

    private const string PersonSchema =
        "{\"type\": \"object\", \"properties\": {" +
        "\"name\": {\"type\": \"string\", \"description\": \"ignored\"}, " +
        "\"age\": {\"type\": \"integer\", \"minimum\": 0}, " +
        "\"score\": {\"type\": [\"number\", \"null\"]}, " +
        "\"mood\": {\"enum\": [\"happy\", \"sad\", \"say \\\"hi\\\"\"]}, " +
        "\"tags\": {\"type\": \"array\", \"items\": {\"type\": \"boolean\"}}, " +
        "\"extra\": {\"type\": \"object\"}}, " +
        "\"required\": [\"name\", \"age\"], \"additionalProperties\": false}";

    private static JsonSchemaNode Person() => JsonSchemaNode.Parse(JsonDocument.Parse(PersonSchema).RootElement);

    [Theory]
    [InlineData("{\"name\": \"Lily\", \"age\": 3}")]
    [InlineData("{\"age\": 3, \"name\": \"Lily\"}")]                 // any order
    [InlineData("{\"name\": \"\", \"age\": -0, \"score\": 1.5e3, \"mood\": \"sad\", \"tags\": [true, false], \"extra\": {\"x\": [1, {}]}}")]
    [InlineData("{\"name\": \"x\", \"age\": 1, \"score\": null, \"mood\": \"say \\\"hi\\\"\"}")] // an enum value with escapes
    [InlineData("{\"name\": \"x\", \"age\": 1, \"tags\": []}")]
    public void Schema_ValidObjects_AreComplete(string json)
    {
        Assert.True(JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), Person()), json);
        Assert.True(Complete(json)); // and plain JSON too
    }

    [Theory]
    [InlineData("{\"name\": \"Lily\"}")]                               // age is required
    [InlineData("{\"name\": \"Lily\", \"age\": 3, \"other\": 1}")]   // not a listed property
    [InlineData("{\"name\": \"Lily\", \"name\": \"Rose\", \"age\": 3}")] // twice
    [InlineData("{\"name\": 5, \"age\": 3}")]                           // wrong type
    [InlineData("{\"name\": \"x\", \"age\": 3.5}")]                     // integer
    [InlineData("{\"name\": \"x\", \"age\": 3e2}")]
    [InlineData("{\"name\": \"x\", \"age\": 3, \"mood\": \"glad\"}")] // not in the enum
    [InlineData("{\"name\": \"x\", \"age\": 3, \"mood\": \"happ\"}")]
    [InlineData("{\"name\": \"x\", \"age\": 3, \"tags\": [1]}")]        // items are booleans
    [InlineData("{\"name\": \"x\", \"age\": 3, \"score\": \"1\"}")]
    [InlineData("{\"nam\": \"x\", \"age\": 3}")]
    public void Schema_InvalidObjects_AreRejected(string json)
    {
        Assert.False(JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), Person()), json);
    }

    [Fact]
    public void Schema_KeysAreCheckedAsTheyAreWritten()
    {
        var p = Person();
        Assert.True(JsonConstraint.IsPrefix("{\"na"u8, p));
        Assert.False(JsonConstraint.IsPrefix("{\"nx"u8, p));
        Assert.True(JsonConstraint.IsPrefix("{\"mood\": \"ha"u8, p));
        Assert.False(JsonConstraint.IsPrefix("{\"mood\": \"hx"u8, p));
        Assert.False(JsonConstraint.IsPrefix("{\"name\": \"x\"}"u8, p)); // '}' before age
        // every listed key written: no ',' may follow
        var one = JsonSchemaNode.Parse(JsonDocument.Parse("{\"type\": \"object\", \"properties\": {\"a\": {}}}").RootElement);
        Assert.True(JsonConstraint.IsCompleteObject("{\"a\": [1, \"x\", null]}"u8, one));
        Assert.False(JsonConstraint.IsPrefix("{\"a\": 1,"u8, one));
    }

    [Theory]
    [InlineData("{\"type\": \"array\"}", "root must be an object")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"allOf\": []}}}", "schema.properties.a.allOf must be an array of at least one schema")]
    [InlineData("{\"type\": \"object\", \"not\": {}}", "schema.not is not supported")]
    [InlineData("{\"type\": \"object\", \"additionalProperties\": 5}", "schema.additionalProperties must be a boolean or a schema")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"enum\": [1, {\"x\": 2}]}}}", "only strings, numbers, booleans and null")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\", \"enum\": [\"x\", 2]}}}", "an enum value is not of the declared type")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\", \"enum\": [1.5]}}}", "an enum value is not of the declared type")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"date\"}}}", "unknown type 'date'")]
    [InlineData("{\"type\": \"object\", \"properties\": {}, \"required\": [\"b\"]}", "\"b\" is not one of the properties")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\", \"minItems\": 3, \"maxItems\": 2}}}", "minItems 3 is above maxItems 2")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\", \"maxLength\": -1}}}", "schema.properties.a.maxLength must be a non-negative integer")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\", \"minLength\": 1.5}}}", "minLength must be a non-negative integer")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}], \"maxLength\": 3}}}", "not mixed with type, properties, items, enum or length bounds")]
    public void Schema_Unsupported_IsRefusedNamingThePlace(string schema, string expected)
    {
        var ex = Assert.Throws<ArgumentException>(() => JsonSchemaNode.Parse(JsonDocument.Parse(schema).RootElement));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    /// <summary>minItems / maxItems and minLength / maxLength (characters: a code point or one escape), checked as the text is written.</summary>
    [Fact]
    public void Schema_ItemAndLengthBounds_AreEnforced()
    {
        const string Bounds = """
            {"type": "object", "properties": {
               "tags": {"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 4}, "minItems": 1, "maxItems": 3},
               "none": {"type": "array", "maxItems": 0},
               "code": {"type": "string", "minLength": 3, "maxLength": 3}},
             "required": ["tags"]}
            """;
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(Bounds).RootElement);
        bool Ok(string json) => JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), node);
        bool Prefix(string json) => JsonConstraint.IsPrefix(Encoding.UTF8.GetBytes(json), node);
        Assert.True(Ok("{\"tags\": [\"ab\"]}"));
        Assert.True(Ok("{\"tags\": [\"ab\", \"abcd\", \"日本語!\"], \"none\": [], \"code\": \"\\n\\u00e9x\"}"));
        Assert.False(Prefix("{\"tags\": []"));                          // minItems 1
        Assert.False(Prefix("{\"tags\": [\"ab\", \"ab\", \"ab\","));       // maxItems 3: no fourth
        Assert.True(Prefix("{\"tags\": [\"ab\", \"ab\", \"ab\""));
        Assert.False(Prefix("{\"tags\": [\"a\""));                      // minLength 2
        Assert.False(Prefix("{\"tags\": [\"abcde"));                    // maxLength 4
        Assert.False(Prefix("{\"tags\": [\"日本語日本"));                 // 5 characters, 15 bytes
        Assert.True(Prefix("{\"tags\": [\"日本語日"));
        Assert.False(Prefix("{\"tags\": [\"ab\"], \"none\": [1"));      // maxItems 0
        Assert.False(Prefix("{\"tags\": [\"ab\"], \"code\": \"\\t\\t\\t\\t")); // four escapes: four characters
        Assert.False(Ok("{\"tags\": [\"ab\"], \"code\": \"ab\"}"));
        // Keys are not held to a value's bounds.
        var keys = JsonSchemaNode.Parse(JsonDocument.Parse("{\"type\": \"object\", \"properties\": {\"longer-key\": {\"type\": \"string\", \"maxLength\": 1}}}").RootElement);
        Assert.True(JsonConstraint.IsCompleteObject("{\"longer-key\": \"x\"}"u8, keys));
    }

    /// <summary>
    /// minimum / maximum / exclusiveMinimum / exclusiveMaximum on integers (pydantic's conint, Field(ge=, le=)): a prefix
    /// is allowed only while some integer it can still become is in range, and the number ends only in range.
    /// </summary>
    [Fact]
    public void Schema_IntegerBounds_AreEnforced()
    {
        const string Schema = """
            {"type": "object", "properties": {
               "age": {"type": "integer", "minimum": 18, "maximum": 120},
               "delta": {"type": "integer", "exclusiveMinimum": -10, "exclusiveMaximum": 10},
               "old": {"type": "integer", "minimum": 5, "exclusiveMinimum": true},
               "neg": {"type": "integer", "maximum": -100},
               "ratio": {"type": "number", "minimum": 0, "maximum": 1}},
             "required": ["age"]}
            """;
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(Schema).RootElement);
        bool Ok(string json) => JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), node);
        bool Prefix(string json) => JsonConstraint.IsPrefix(Encoding.UTF8.GetBytes(json), node);
        foreach (int age in new[] { 18, 19, 99, 100, 120 })
            Assert.True(Ok($"{{\"age\": {age}}}"), $"age {age}");
        foreach (int age in new[] { 17, 121, 0, 5, 1000, -18 })
            Assert.False(Ok($"{{\"age\": {age}}}"), $"age {age}");
        Assert.True(Prefix("{\"age\": 1"));          // 18, 19, 100.. 120 still reachable
        Assert.False(Prefix("{\"age\": 0"));         // 0 takes no more digits
        Assert.False(Prefix("{\"age\": -"));         // nothing negative is >= 18
        Assert.False(Prefix("{\"age\": 13,"));       // too small, and it ended
        Assert.True(Prefix("{\"age\": 12"));         // 120
        Assert.False(Prefix("{\"age\": 121"));
        Assert.False(Prefix("{\"age\": 2000"));
        Assert.True(Ok("{\"age\": 20, \"delta\": -9}"));
        Assert.True(Ok("{\"age\": 20, \"delta\": 0}"));
        Assert.True(Ok("{\"age\": 20, \"delta\": -0}"));
        Assert.False(Ok("{\"age\": 20, \"delta\": 10}"));
        Assert.False(Ok("{\"age\": 20, \"delta\": -10}"));
        Assert.False(Prefix("{\"age\": 20, \"delta\": -10"));
        Assert.True(Ok("{\"age\": 20, \"old\": 6}"));   // draft 4: exclusiveMinimum true with minimum 5
        Assert.False(Ok("{\"age\": 20, \"old\": 5}"));
        Assert.True(Ok("{\"age\": 20, \"neg\": -100}"));
        Assert.True(Ok("{\"age\": 20, \"neg\": -1234567}"));
        Assert.False(Prefix("{\"age\": 20, \"neg\": -99,"));
        Assert.True(Prefix("{\"age\": 20, \"neg\": -9"));  // -900..
        Assert.False(Prefix("{\"age\": 20, \"neg\": 1"));
        // Numbers that may have fractions: the bounds are accepted and not enforced.
        Assert.True(Ok("{\"age\": 20, \"ratio\": 0.5}"));
        Assert.True(Ok("{\"age\": 20, \"ratio\": 7}"));
        var none = Assert.Throws<ArgumentException>(() => JsonSchemaNode.Parse(JsonDocument.Parse(
            "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\", \"minimum\": 2.5, \"maximum\": 2.9}}}").RootElement));
        Assert.Contains("schema.properties.a: no integer lies between the minimum and the maximum", none.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => JsonSchemaNode.Parse(JsonDocument.Parse(
            "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\", \"minimum\": \"1\"}}}").RootElement));
    }

    /// <summary>
    /// String formats as llama.cpp's json-schema-to-grammar enforces them (pydantic writes them for date, time,
    /// datetime and UUID fields): date, time (with a zone), date-time, uuid; other formats are not enforced.
    /// </summary>
    [Fact]
    public void Schema_StringFormats_AreEnforced()
    {
        const string Schema = """
            {"type": "object", "properties": {
               "day": {"type": "string", "format": "date"},
               "at": {"type": "string", "format": "time"},
               "when": {"type": "string", "format": "date-time"},
               "id": {"type": "string", "format": "uuid"},
               "mail": {"type": "string", "format": "email"},
               "maybe": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]}}}
            """;
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(Schema).RootElement);
        bool Ok(string json) => JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), node);
        bool Prefix(string json) => JsonConstraint.IsPrefix(Encoding.UTF8.GetBytes(json), node);
        foreach (var ok in new[]
        {
            "{\"day\": \"2024-02-29\"}", "{\"day\": \"1999-12-31\"}", "{\"day\": \"2000-10-01\"}",
            "{\"at\": \"13:45:00Z\"}", "{\"at\": \"23:59:59.123+02:00\"}", "{\"at\": \"00:00:00-11:30\"}",
            "{\"when\": \"2024-01-31T08:30:00Z\"}", "{\"when\": \"2024-01-31T08:30:00.500-05:00\"}",
            "{\"id\": \"123e4567-e89b-12d3-A456-426614174000\"}",
            "{\"mail\": \"not an address\"}",
            "{\"maybe\": null}", "{\"maybe\": \"2020-01-01\"}",
        })
            Assert.True(Ok(ok), ok);
        foreach (var bad in new[]
        {
            "{\"day\": \"2024-13", "{\"day\": \"2024-00", "{\"day\": \"2024-02-32", "{\"day\": \"2024-2-",
            "{\"day\": \"2024-02-29T", "{\"day\": \"24\"", "{\"day\": \"2024-1-", "{\"day\": \"\\u0032",
            "{\"at\": \"24:", "{\"at\": \"12:60", "{\"at\": \"12:00:00\"", "{\"at\": \"12:00:00.1Z",
            "{\"when\": \"2024-01-31 08", "{\"when\": \"2024-01-31T08:30:00\"",
            "{\"id\": \"123e4567-e89b-12d3-a456-42661417400\"", "{\"id\": \"g", "{\"id\": \"123e4567e",
            "{\"maybe\": \"tomorrow",
        })
            Assert.False(Prefix(bad), bad);
        Assert.True(Prefix("{\"day\": \"2024-1"));
        Assert.True(Prefix("{\"at\": \"12:00:00"));
        // Keys are not held to a value's format.
        Assert.True(Ok("{\"day\": \"2024-02-29\", \"id\": \"00000000-0000-0000-0000-000000000000\"}"));
    }

    /// <summary>
    /// <c>pattern</c>: a regex's regular-language part, matched character by character as the string is written;
    /// anchored patterns match the whole string, unanchored ones somewhere in it (JSON Schema's rule).
    /// </summary>
    [Fact]
    public void Schema_Patterns_AreEnforced()
    {
        const string Schema = """
            {"type": "object", "properties": {
               "phone": {"type": "string", "pattern": "^\\d{3}-\\d{4}$"},
               "code": {"type": "string", "pattern": "^(?:[A-Z]{2}|X)[0-9a-f]+$"},
               "has": {"type": "string", "pattern": "cat|dog"},
               "word": {"type": "string", "pattern": "^[^\\s,]{1,5}$", "maxLength": 3},
               "greek": {"type": "string", "pattern": "^[α-ω]+!?$"}}}
            """;
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(Schema).RootElement);
        bool Ok(string json) => JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), node);
        bool Prefix(string json) => JsonConstraint.IsPrefix(Encoding.UTF8.GetBytes(json), node);
        foreach (var ok in new[]
        {
            "{\"phone\": \"555-1234\"}", "{\"code\": \"AB0f\"}", "{\"code\": \"X12\"}",
            "{\"has\": \"a dog here\"}", "{\"has\": \"cat\"}", "{\"word\": \"héé\"}", "{\"greek\": \"αβγ!\"}",
        })
            Assert.True(Ok(ok), ok);
        foreach (var bad in new[]
        {
            "{\"phone\": \"55-", "{\"phone\": \"555-12345", "{\"phone\": \"555-123\"", "{\"phone\": \"a",
            "{\"code\": \"A1", "{\"code\": \"XYZ", "{\"code\": \"AB\"", "{\"code\": \"ABg",
            "{\"has\": \"a bird\"", "{\"word\": \"a b", "{\"word\": \"abcd", "{\"word\": \"\"",
            "{\"greek\": \"abc", "{\"greek\": \"α!!", "{\"phone\": \"\\u0035",
        })
            Assert.False(Prefix(bad), bad);
        Assert.True(Prefix("{\"has\": \"a bird and a ca"));
        Assert.True(Prefix("{\"greek\": \"\u03b1"));   // one UTF-8 byte of α's two: still possible
        foreach (var (pattern, expected) in new[]
        {
            ("(a", "missing ')'"), ("a)", "unbalanced ')'"), ("[a-", "missing ']'"), ("(?=a)", "look-arounds"),
            ("\\1", "\\1 is not supported"), ("a{3,2}", "the minimum is above the maximum"), ("*a", "nothing to repeat"),
            ("a^b", "'^' is supported only at the start"), (new string('(', 5000) + new string(')', 5000), "groups nested deeper than 64"),
            ("(a{1000}){1000}", "automaton states"),
        })
        {
            var e = Assert.Throws<ArgumentException>(() => JsonSchemaNode.Parse(JsonDocument.Parse(
                "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\", \"pattern\": " + JsonSerializer.Serialize(pattern) + "}}}").RootElement));
            Assert.Contains("schema.properties.a.pattern", e.Message, StringComparison.Ordinal);
            Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// additionalProperties true or a schema (pydantic's dict[str, T]): other keys are let in, their values held to
    /// that schema; listed keys keep their own schemas, at most once, and required ones are still required.
    /// </summary>
    [Fact]
    public void Schema_AdditionalProperties_LetOtherKeysIn()
    {
        const string Schema = """
            {"type": "object", "properties": {
               "scores": {"type": "object", "additionalProperties": {"type": "integer"}},
               "tags": {"type": "object", "additionalProperties": true},
               "meta": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"],
                        "additionalProperties": {"type": "string"}}}}
            """;
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(Schema).RootElement);
        bool Ok(string json) => JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), node);
        bool Prefix(string json) => JsonConstraint.IsPrefix(Encoding.UTF8.GetBytes(json), node);
        foreach (var ok in new[]
        {
            "{\"scores\": {\"alice\": 3, \"bob\": -1}}", "{\"scores\": {}}",
            "{\"tags\": {\"x\": [1, {\"y\": null}], \"z\": \"w\"}}",
            "{\"meta\": {\"id\": 7}}", "{\"meta\": {\"note\": \"hi\", \"id\": 7, \"idx\": \"s\", \"i\": \"t\"}}",
        })
        {
            int firstBad = Enumerable.Range(1, ok.Length).FirstOrDefault(n => !Prefix(ok[..n]));
            Assert.True(Ok(ok), $"{ok} fails at {firstBad}: {(firstBad > 0 ? ok[..firstBad] : "")}");
        }
        foreach (var bad in new[]
        {
            "{\"scores\": {\"alice\": \"3",                  // values are integers
            "{\"scores\": {\"alice\": 1.5",
            "{\"meta\": {\"id\": \"7",                       // the listed key keeps its own schema
            "{\"meta\": {\"idx\": 7",                         // any other key takes the additional one
            "{\"meta\": {\"id\": 7, \"id\":",                // a listed key at most once
            "{\"meta\": {\"note\": \"hi\"}",                 // id is required
        })
            Assert.False(Prefix(bad), bad);
    }

    /// <summary>pydantic's described reference, <c>{"allOf": [{"$ref": ...}], "description": ...}</c>: one schema in allOf is that schema.</summary>
    [Fact]
    public void Schema_AllOfOne_IsThatSchema()
    {
        const string Schema = """
            {"type": "object", "$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
             "properties": {"pet": {"allOf": [{"$ref": "#/$defs/Pet"}], "description": "the pet"}}, "required": ["pet"]}
            """;
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(Schema).RootElement);
        Assert.True(JsonConstraint.IsCompleteObject("{\"pet\": {\"name\": \"Rex\"}}"u8, node));
        Assert.False(JsonConstraint.IsPrefix("{\"pet\": {\"age\""u8, node));
        Assert.False(JsonConstraint.IsCompleteObject("{\"pet\": {}}"u8, node));
    }

    /// <summary>
    /// allOf of several schemas is one schema holding them all, as llama.cpp's json-schema-to-grammar merges them: a
    /// base object by reference plus its own properties (OpenAPI's composition), required names of every part; a
    /// string's type and length from two parts; two parts that disagree on a keyword or a property are refused.
    /// </summary>
    [Fact]
    public void Schema_AllOfSeveral_IsMerged()
    {
        const string Schema = """
            {"type": "object",
             "$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
                               "required": ["name"]}},
             "properties": {"dog": {"allOf": [{"$ref": "#/$defs/Pet"},
                                              {"properties": {"breed": {"enum": ["collie", "pug"]}}, "required": ["breed"]}],
                                    "description": "a pet with a breed"},
                            "tag": {"allOf": [{"type": "string"}, {"maxLength": 3}]}},
             "required": ["dog"]}
            """;
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(Schema).RootElement);
        Assert.True(JsonConstraint.IsCompleteObject("{\"dog\": {\"name\": \"Rex\", \"breed\": \"pug\"}}"u8, node));
        Assert.True(JsonConstraint.IsCompleteObject("{\"dog\": {\"breed\": \"collie\", \"age\": 3, \"name\": \"Rex\"}, \"tag\": \"abc\"}"u8, node));
        Assert.False(JsonConstraint.IsCompleteObject("{\"dog\": {\"name\": \"Rex\"}}"u8, node));             // breed is required (second part)
        Assert.False(JsonConstraint.IsCompleteObject("{\"dog\": {\"breed\": \"pug\"}}"u8, node));            // name is required (the reference)
        Assert.False(JsonConstraint.IsPrefix("{\"dog\": {\"breed\": \"husky"u8, node));                        // the enum
        Assert.False(JsonConstraint.IsPrefix("{\"dog\": {\"age\": -1"u8, node));                                 // the reference's minimum
        Assert.False(JsonConstraint.IsPrefix("{\"dog\": {\"color\""u8, node));                                  // no other keys
        Assert.False(JsonConstraint.IsPrefix("{\"tag\": \"abcd"u8, node));                                        // maxLength from the second part
        Assert.False(JsonConstraint.IsPrefix("{\"tag\": 1"u8, node));                                              // type from the first

        var keyword = Assert.Throws<ArgumentException>(() => JsonSchemaNode.Parse(JsonDocument.Parse(
            "{\"type\": \"object\", \"properties\": {\"a\": {\"allOf\": [{\"type\": \"string\"}, {\"type\": \"integer\"}]}}}").RootElement));
        Assert.Contains("schema.properties.a.allOf[1].type: the schemas of allOf set type to different values", keyword.Message, StringComparison.Ordinal);
        var property = Assert.Throws<ArgumentException>(() => JsonSchemaNode.Parse(JsonDocument.Parse(
            "{\"type\": \"object\", \"allOf\": [{\"properties\": {\"x\": {\"type\": \"string\"}}}, {\"properties\": {\"x\": {\"type\": \"number\"}}}]}").RootElement));
        Assert.Contains("schema.allOf[1].properties.x: the schemas of allOf give this property different schemas", property.Message, StringComparison.Ordinal);
    }

    /// <summary>Enums and consts of numbers, booleans and null (pydantic's Literal[1, 2], a const true), alone or mixed with strings: written exactly as listed.</summary>
    [Fact]
    public void Schema_NonStringEnums_AreEnforced()
    {
        const string Schema = """
            {"type": "object", "properties": {
               "n": {"enum": [1, 12, -3, 2.5]},
               "flag": {"const": true},
               "mixed": {"enum": ["auto", 0, null, false]},
               "level": {"type": "integer", "enum": [1, 2, 3]}},
             "required": ["n"]}
            """;
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(Schema).RootElement);
        bool Ok(string json) => JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), node);
        bool Prefix(string json) => JsonConstraint.IsPrefix(Encoding.UTF8.GetBytes(json), node);
        Assert.True(Ok("{\"n\": 1}"));
        Assert.True(Ok("{\"n\": 12, \"flag\": true, \"mixed\": \"auto\", \"level\": 3}"));
        Assert.True(Ok("{\"n\": -3,\n  \"mixed\": null}"));
        Assert.True(Ok("{\"n\": 2.5, \"mixed\": false}"));
        Assert.True(Ok("{\"mixed\": 0, \"n\": 1}"));
        Assert.False(Prefix("{\"n\": 13"));         // 1 then 3: not listed
        Assert.False(Prefix("{\"n\": 2,"));          // 2 alone is not listed (2.5 is)
        Assert.True(Prefix("{\"n\": 2."));
        Assert.False(Prefix("{\"n\": 1.0"));        // written as listed
        Assert.False(Prefix("{\"n\": \"1\""));      // a string is not the number
        Assert.False(Prefix("{\"n\": 1, \"flag\": f"));
        Assert.False(Prefix("{\"n\": 1, \"mixed\": \"manual"));
        Assert.False(Prefix("{\"n\": 1, \"mixed\": 1"));
        Assert.False(Prefix("{\"n\": 1, \"level\": 4"));
    }

    /// <summary>What pydantic writes for nested and Optional fields: $defs with $ref, and anyOf [..., null].</summary>
    [Fact]
    public void Schema_RefsAndTypeDisjointAnyOf_AreFollowed()
    {
        const string Pydantic = """
            {"$defs": {"Toy": {"properties": {"kind": {"enum": ["ball", "doll"], "title": "Kind", "type": "string"}},
                               "required": ["kind"], "title": "Toy", "type": "object"}},
             "properties": {"name": {"title": "Name", "type": "string"},
                            "toy": {"anyOf": [{"$ref": "#/$defs/Toy"}, {"type": "null"}], "default": null},
                            "age": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
             "required": ["name", "toy", "age"], "title": "Child", "type": "object"}
            """;
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(Pydantic).RootElement);
        bool Ok(string json) => JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), node);
        Assert.True(Ok("{\"name\": \"Lily\", \"toy\": {\"kind\": \"ball\"}, \"age\": 3}"));
        Assert.True(Ok("{\"name\": \"Lily\", \"toy\": null, \"age\": \"three\"}"));
        Assert.False(Ok("{\"name\": \"Lily\", \"toy\": {\"kind\": \"car\"}, \"age\": 3}"));
        Assert.False(Ok("{\"name\": \"Lily\", \"toy\": \"ball\", \"age\": 3}"));
        Assert.False(Ok("{\"name\": \"Lily\", \"toy\": null, \"age\": 3.5}"));
        Assert.False(Ok("{\"name\": \"Lily\", \"toy\": null, \"age\": true}"));
    }

    [Theory]
    [InlineData("{\"$defs\": {\"N\": {\"type\": \"object\", \"properties\": {\"next\": {\"$ref\": \"#/$defs/N\"}}}}, \"$ref\": \"#/$defs/N\"}", "refers to itself")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"anyOf\": [{\"type\": \"integer\"}, {\"type\": \"number\"}]}}}", "alternatives 0 and 1 can both start the same way")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"$ref\": \"#/$defs/Missing\"}}}", "points at nothing")]
    [InlineData("{\"type\": \"object\", \"properties\": {\"a\": {\"$ref\": \"http://x/s.json\"}}}", "only references into the same schema")]
    public void Schema_BadRefsAndAnyOf_AreRefused(string schema, string expected)
    {
        var ex = Assert.Throws<ArgumentException>(() => JsonSchemaNode.Parse(JsonDocument.Parse(schema).RootElement));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    /// <summary>Definitions that each use the next one twice (2^40 paths) compile at once: a reference is compiled once.</summary>
    [Fact]
    public void Schema_SharedRefs_CompileOnce()
    {
        var defs = new StringBuilder();
        for (int i = 0; i < 40; i++)
            defs.Append($"\"D{i}\": {{\"type\": \"object\", \"properties\": {{\"a\": {{\"$ref\": \"#/$defs/D{i + 1}\"}}, \"b\": {{\"$ref\": \"#/$defs/D{i + 1}\"}}}}}}, ");
        defs.Append("\"D40\": {\"type\": \"string\"}");
        string schema = "{\"$defs\": {" + defs + "}, \"$ref\": \"#/$defs/D0\"}";
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var node = JsonSchemaNode.Parse(JsonDocument.Parse(schema, new JsonDocumentOptions { MaxDepth = 256 }).RootElement);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
        Assert.True(JsonConstraint.IsPrefix("{\"a\": {\"b\": {\"a\": {"u8, node));
        Assert.False(JsonConstraint.IsPrefix("{\"a\": {\"c\""u8, node));
    }

    /// <summary>A chain of 5,000 references (which JSON's own depth limit does not bound) is refused, not a stack overflow.</summary>
    [Fact]
    public void Schema_DeepReferenceChain_IsRefused()
    {
        var defs = new StringBuilder();
        for (int i = 0; i < 5000; i++) defs.Append($"\"D{i}\": {{\"type\": \"array\", \"items\": {{\"$ref\": \"#/$defs/D{i + 1}\"}}}}, ");
        defs.Append("\"D5000\": {\"type\": \"null\"}");
        string schema = "{\"type\": \"object\", \"$defs\": {" + defs + "}, \"properties\": {\"a\": {\"$ref\": \"#/$defs/D0\"}}}";
        var ex = Assert.Throws<ArgumentException>(() => JsonSchemaNode.Parse(JsonDocument.Parse(schema).RootElement));
        Assert.Contains("nests deeper than 128 levels", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>The schema M.E.AI writes for a .NET record (what GetResponseAsync&lt;T&gt; sends) is accepted and enforced.</summary>
    [Fact]
    public void Schema_FromAIJsonUtilities_IsSupported()
    {
        var schema = Microsoft.Extensions.AI.AIJsonUtilities.CreateJsonSchema(typeof(Pet));
        output.WriteLine(schema.GetRawText());
        var node = JsonSchemaNode.Parse(schema);
        string json = JsonSerializer.Serialize(new Pet("Rex", 4, ["ball"], null), new JsonSerializerOptions(JsonSerializerDefaults.Web));
        output.WriteLine(json);
        Assert.True(JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), node), json);
    }

    public sealed record Pet(string Name, int Age, string[] Toys, string? Owner);


    private static Tokenizer Stories() => Tokenizer.FromGguf(EdgeLlm.Gguf.GgufFile.Open(SharedData.Model("stories260K")));

    private static (GenerationResult Result, ScriptedContext Context) Generate(Tokenizer tok, string scriptText, bool json, int maxTokens = 64)
    {
        int[] script = tok.Encode(scriptText, addSpecial: false);
        var ctx = new ScriptedContext(script, tok.VocabSize);
        var gen = new TextGenerator(ctx, tok);
        var r = gen.Generate([tok.Bos], new GenerationOptions
        {
            JsonObject = json,
            MaxTokens = maxTokens,
            Sampling = new SamplerOptions { Temperature = 0f },
        });
        return (r, ctx);
    }

    [Fact]
    public void Generation_FollowsValidJson_AndEndsWhenTheObjectCloses()
    {
        var tok = Stories();
        const string text = "{\"name\": \"Lily\", \"age\": 3, \"toys\": [\"ball\"]} and then more words";
        var (r, ctx) = Generate(tok, text, json: true);
        output.WriteLine(r.Text);
        Assert.Equal(FinishReason.EndOfGeneration, r.Reason);
        // SentencePiece writes the first piece as " {", which the root may not start with: "{" is drawn instead,
        // and the rest of the script follows (its whitespace may differ).
        Assert.True(Complete(r.Text));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("{\"name\": \"Lily\", \"age\": 3, \"toys\": [\"ball\"]}"), JsonNode.Parse(r.Text)), r.Text);
        // the closing token was sampled but never evaluated: nothing can follow it
        Assert.Equal(1 + r.CompletionTokens - 1, ctx.Evaluated);

        // Without the constraint the same model runs on past the object.
        var (free, _) = Generate(tok, text, json: false, maxTokens: 40);
        Assert.StartsWith("{\"name\": \"Lily\", \"age\": 3, \"toys\": [\"ball\"]} and", free.Text.TrimStart(), StringComparison.Ordinal);
    }

    [Fact]
    public void Generation_ReplacesTokensThatBreakTheJson()
    {
        var tok = Stories();
        // "a" as a bare key and a trailing comma: the scripted tokens there are not allowed, others are drawn instead
        var (r, _) = Generate(tok, "{a: 1,} {\"b\": 2}", json: true, maxTokens: 24);
        output.WriteLine(r.Text);
        Assert.True(Prefix(r.Text), r.Text);
        Assert.DoesNotContain("{a", r.Text, StringComparison.Ordinal);
        var (free, _) = Generate(tok, "{a: 1,} {\"b\": 2}", json: false, maxTokens: 24);
        Assert.StartsWith("{a: 1,}", free.Text.TrimStart(), StringComparison.Ordinal);
    }

    /// <summary>A real model (stories260K, greedy): whatever it writes under the constraint is JSON so far, and starts an object.</summary>
    [Fact]
    public void Stories260K_Greedy_WritesAJsonPrefix()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tok = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, 256, threads: 2);
        var gen = new TextGenerator(ctx, tok);
        var r = gen.Generate(tok.Encode("Once upon a time"), new GenerationOptions { JsonObject = true, MaxTokens = 60, Sampling = new SamplerOptions { Temperature = 0f } });
        output.WriteLine($"{r.Reason}: {r.Text}");
        Assert.StartsWith("{", r.Text.TrimStart(), StringComparison.Ordinal);
        Assert.True(Prefix(r.Text), r.Text);
        if (r.Reason == FinishReason.EndOfGeneration) Assert.True(Complete(r.Text), r.Text);
    }
}
