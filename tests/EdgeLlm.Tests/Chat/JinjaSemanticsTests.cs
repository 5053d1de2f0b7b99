using System.Text.Json;
using EdgeLlm.Chat.Jinja;
using Xunit;

namespace EdgeLlm.Tests.Chat;

/// <summary>
/// Jinja semantics, one template snippet each, against the output of Python's jinja2 3.1.6 as
/// Hugging Face configures it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
/// loopcontrols, transformers' tojson/raise_exception/strftime_now), rendered with <see cref="VarsJson"/>
/// and strftime_now fixed at 2024-07-26 13:05:09. The expected strings were produced by jinja2.
/// </summary>
public class JinjaSemanticsTests
{
    internal const string VarsJson = """
{"messages": [{"role": "system", "content": "  Sys  "}, {"role": "user", "content": "Hi \u201cq\u201d \ud83d\ude00"}, {"role": "assistant", "content": "A", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1, "b": [1.5, null, true]}}}]}], "s": "Hello World", "n": 5, "f": 2.5, "l": [3, 1, 2], "d": {"b": 2, "a": 1}, "e": [], "none": null, "neg": -7, "big": 1e+20, "small": 1e-05, "tools": [{"type": "function", "function": {"name": "get", "description": "Get it", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}]}
""";

    internal static readonly DateTime Now = new(2024, 7, 26, 13, 5, 9);

    internal static Dictionary<string, object?> Vars()
    {
        using var doc = JsonDocument.Parse(VarsJson);
        return (Dictionary<string, object?>)FromJson(doc.RootElement)!;
    }

    internal static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Number => e.TryGetInt64(out long l) ? (object)l : e.GetDouble(),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => e.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value)),
        _ => null,
    };

    [Theory]
        [InlineData("{{ s|upper }}|{{ s|lower }}|{{ s|length }}|{{ l|length }}|{{ d|length }}", "HELLO WORLD|hello world|11|3|2")]
        [InlineData("{{ n / 2 }} {{ n // 2 }} {{ neg // 2 }} {{ neg % 3 }} {{ 2 ** 10 }} {{ f * 2 }} {{ 7 % -3 }} {{ n - 0.5 }}", "2.5 2 -4 2 1024 5.0 -2 4.5")]
        [InlineData("{{ big }} {{ small }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 1.0 }} {{ -0.0 }} {{ 123456789.123 }}", "1e+20 1e-05 0.30000000000000004 1e+16 1000000000000000.0 1.0 -0.0 123456789.123")]
        [InlineData("{{ none }} {{ true }} {{ l }} {{ d }} {{ ('a', 1) }} {{ ('a',) }} {{ \"it's\" }} {{ [\"it's\", 'say \"x\"'] }}", "None True [3, 1, 2] {'b': 2, 'a': 1} ('a', 1) ('a',) it's [\"it's\", 'say \"x\"']")]
        [InlineData("{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}|{% endfor %}", "10TrueFalse332|21FalseFalse321|32FalseTrue310|")]
        [InlineData("{% for x in l %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}", "3")]
        [InlineData("{% for x in e %}a{% else %}empty{% endfor %}", "empty")]
        [InlineData("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", "b=2;a=1;b=2;a=1;ba")]
        [InlineData("{{ messages[0].content|trim }}|{{ messages[-1].role }}|{{ messages[1:]|length }}|{{ l[::-1] }}|{{ s[1:4] }}|{{ s[::-2] }}|{{ s[-3:] }}", "Sys|assistant|2|[2, 1, 3]|ell|drWolH|rld")]
        [InlineData("{{ tools|tojson }}", "[{\"type\": \"function\", \"function\": {\"name\": \"get\", \"description\": \"Get it\", \"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"string\"}}}}}]")]
        [InlineData("{{ tools[0]|tojson(indent=4) }}", "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get\",\n        \"description\": \"Get it\",\n        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n                \"x\": {\n                    \"type\": \"string\"\n                }\n            }\n        }\n    }\n}")]
        [InlineData("{{ messages|tojson }}", "[{\"role\": \"system\", \"content\": \"  Sys  \"}, {\"role\": \"user\", \"content\": \"Hi \u201cq\u201d \U0001f600\"}, {\"role\": \"assistant\", \"content\": \"A\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [1.5, null, true]}}}]}]")]
        [InlineData("{{ messages[2].tool_calls[0].function.arguments|tojson }}", "{\"a\": 1, \"b\": [1.5, null, true]}")]
        [InlineData("{{ undefined_var }}|{{ undefined_var is defined }}|{{ undefined_var|default('dflt') }}|{{ none|default('x') }}|{{ ''|default('y', true) }}", "|False|dflt|None|y")]
        [InlineData("{{ messages|selectattr('role','equalto','user')|list|length }}|{{ messages|rejectattr('role','equalto','user')|map(attribute='role')|join(',') }}", "1|system,assistant")]
        [InlineData("{{ messages|map(attribute='role')|list }}", "['system', 'user', 'assistant']")]
        [InlineData("{{ l|sort }}|{{ l|sort(reverse=true) }}|{{ l|first }}|{{ l|last }}|{{ l|max }}|{{ l|min }}|{{ l|sum }}|{{ [1,1,2]|unique|list }}", "[1, 2, 3]|[3, 2, 1]|3|2|3|1|6|[1, 2]")]
        [InlineData("{% set ns = namespace(found=false, c=0) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% set ns.c = ns.c + 1 %}{% endfor %}{{ ns.found }}{{ ns.c }}", "True3")]
        [InlineData("{% set x = 1 %}{% for i in l %}{% set x = i %}{% endfor %}{{ x }}", "1")]
        [InlineData("{% for i in l %}{% if loop.first %}{% set y = 5 %}{% endif %}{{ y }}{% endfor %}", "5")]
        [InlineData("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' + 'cd' }}|{{ [1] + [2] }}|{{ 'x' * 3 }}", "a1NoneTrue|abcd|[1, 2]|xxx")]
        [InlineData("{{ 'yes' if n > 3 else 'no' }}|{{ 'yes' if n > 30 }}|{{ n > 3 and 'a' or 'b' }}|{{ not n }}|{{ 1 < n < 10 }}", "yes||a|False|True")]
        [InlineData("{{ 'ell' in s }}|{{ 3 in l }}|{{ 'a' in d }}|{{ 'z' not in d }}|{{ 'x' in undefined_v }}", "True|True|True|True|False")]
        [InlineData("{{ s.split() }}|{{ s.split('o') }}|{{ s.startswith('He') }}|{{ s.endswith(('x','ld')) }}|{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ s.replace('l','L') }}", "['Hello', 'World']|['Hell', ' W', 'rld']|True|True|a b|a|HeLLo WorLd")]
        [InlineData("{{ s|replace('o', '0') }}|{{ '%s-%d'|format('a', 3) }}|{{ s|title }}|{{ 'hello'|capitalize }}|{{ '3'|int + 1 }}|{{ 'x'|int }}|{{ 2.7|int }}|{{ '2.5'|float }}", "Hell0 W0rld|a-3|Hello World|Hello|4|0|2|2.5")]
        [InlineData("{% macro greet(name, greeting='Hi') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Al', greeting='Yo') }}", "Hi, Bob! Yo, Al!")]
        [InlineData("{% set content %}captured {{ n }}{% endset %}[{{ content }}]", "[captured 5]")]
        [InlineData("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %j %I%p') }}", "26 Jul 2024|2024-07-26 13:05:09 Friday July 208 01PM")]
        [InlineData("{{ none.attr is defined }}|{{ d.missing is defined }}|{{ s.missing is defined }}", "False|False|False")]
        [InlineData("{{ l is iterable }}{{ s is iterable }}{{ d is mapping }}{{ n is number }}{{ true is number }}{{ s is string }}{{ none is none }}{{ l is sequence }}{{ d is sequence }}{{ undefined_v is iterable }}{{ n is integer }}{{ f is float }}{{ n is odd }}{{ 4 is divisibleby 2 }}", "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue")]
        [InlineData("  {% if true %}\n    x\n  {% endif %}\n  y", "    x\n  y")]
        [InlineData("{%- if true -%}\n   a   \n{%- endif -%}\n   b", "ab")]
        [InlineData("  {{ n }}\n  {%+ if true %}k{% endif %}", "  5\n  k")]
        [InlineData("a {# comment #}\n  {# comment2 #}\nb", "a b")]
        [InlineData("{% raw %}{{ not parsed }}{% endraw %}", "{{ not parsed }}")]
        [InlineData("{{ d|dictsort }}|{{ {'x': 1, 'y': [1, 2]} }}|{{ [1,2,3]|reverse|list }}|{{ 'abc'|reverse }}", "[('a', 1), ('b', 2)]|{'x': 1, 'y': [1, 2]}|[3, 2, 1]|cba")]
        [InlineData("{{ '{}-{}'.format(1, 'b') }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b c'.split(None, 1) }}|{{ s.find('o') }}|{{ s.count('l') }}", "1-b|['a', 'b', '', 'c']|['a', 'b c']|4|3")]
        [InlineData("{{ l|join(', ') }}|{{ messages|map(attribute='role')|join }}|{{ [1, 'a', none]|join('-') }}", "3, 1, 2|systemuserassistant|1-a-None")]
        [InlineData("{{ 'ab'|tojson }}{{ \"\\u00e9\\n\\t\\\"\\\\\"|tojson }}{{ 1.5|tojson }}{{ none|tojson }}{{ true|tojson }}{{ {'a': []}|tojson }}{{ [{}]|tojson(indent=2) }}", "\"ab\"\"\u00e9\\n\\t\\\"\\\\\"1.5nulltrue{\"a\": []}[\n  {}\n]")]
        [InlineData("{{ range(3)|list }}{{ range(1, 10, 3)|list }}{{ range(5, 0, -2)|list }}", "[0, 1, 2][1, 4, 7][5, 3, 1]")]
        [InlineData("{{ \"multi\nline\" }}{{ 'a' 'b' }}", "multi\nlineab")]
        [InlineData("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (1, 2) %}{{ t }}", "12(1, 2)")]
        [InlineData("{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }} {% endfor %}", "1:user 2:assistant ")]
        [InlineData("{{ messages[0]['content'] }}{{ messages[0].content.strip() }}{{ d['a'] }}{{ d.get('z', 'def') }}{{ d.get('a') }}{{ d.keys()|list }}{{ d.values()|list }}", "  Sys  Sys1def1['b', 'a'][2, 1]")]
        [InlineData("{{ -n }}{{ -f }}{{ +n }}{{ n|abs }}{{ neg|abs }}{{ 2.567|round(1) }}{{ 2.5|round }}{{ 3.5|round }}", "-5-2.55572.62.04.0")]
        [InlineData("{{ s|center(21) }}|{{ \"a\\nb\\n\\nc\"|indent(2) }}|{{ \"a\\nb\"|indent(2, true) }}", "     Hello World     |a\n  b\n\n  c|  a\n  b")]
        [InlineData("{{ l|batch(2)|list }}{{ s|wordcount }}", "[[3, 1], [2]]2")]
        [InlineData("{{ messages|selectattr('tool_calls', 'defined')|list|length }}{{ messages|selectattr('tool_calls')|map(attribute='role')|first }}", "1assistant")]
        [InlineData("{{ loop }}", "")]
        [InlineData("{% for a in [1,2] %}{% for b in [3,4] %}{{ loop.index }}{{ a }}{{ b }}{% endfor %}{{ loop.index }}{% endfor %}", "11321411232242")]
        [InlineData("{{ s[100] }}|{{ l[10] }}|{{ 'abc'[1] }}|{{ l[-1] }}", "||b|2")]
        [InlineData("{{ \"x\" if none else \"y\" }}{{ none is not none }}{{ n is not string }}", "yFalseTrue")]
        [InlineData("{{ messages[1].content|length }}{{ messages[1].content[-1] }}{{ messages[1].content[::-1] }}", "8\U0001f600\U0001f600 \u201dq\u201c iH")]
        [InlineData("{%- for x in l -%}\n  {{ x }}\n{%- endfor %}", "312")]
        [InlineData("{% filter upper %}abc {{ s }}{% endfilter %}", "ABC HELLO WORLD")]
        [InlineData("{{ n is eq 5 }}{{ n is ge 5 }}{{ n is lt 5 }}{{ l|select('odd')|list }}{{ l|reject('equalto', 1)|list }}", "TrueTrueFalse[3, 1][3, 2]")]
        [InlineData("{{ 'A' < 'a' }}{{ [1,2] < [1,3] }}{{ 1 == 1.0 }}{{ true == 1 }}{{ {'a':1} == {'a':1} }}{{ 'a' == none }}\n", "TrueTrueTrueTrueTrueFalse")]
        [InlineData("{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        {%- set date_string = strftime_now(\"%d %b %Y\") %}\n    {%- else %}\n        {%- set date_string = \"26 Jul 2024\" %}\n    {%- endif %}\n{%- endif %}\nToday: {{ date_string }}", "Today: 26 Jul 2024")]
        [InlineData("<s>{% for m in messages %}\n    {% if m.role == 'user' %}\n        [INST] {{ m.content }} [/INST]\n    {% else %}\n        {{ m.content }}</s>\n    {% endif %}\n{% endfor %}", "<s>          Sys  </s>\n        [INST] Hi \u201cq\u201d \U0001f600 [/INST]\n        A</s>\n")]
        [InlineData("  {#- c -#}  x  {#+ c2 #}\n y", "x   y")]
        [InlineData("{% if true %}  a  {% endif %}\n  b {% if true -%}\n  c\n  {%- endif %}", "  a    b c")]
        [InlineData("a\n{{- ' b ' -}}\nc\n\t{{ 'd' }}", "a b c\n\td")]
        [InlineData("{% set x = [1,2,3] %}{% for i in x %}\n{{ i }}\n{%- endfor %}", "123")]
        [InlineData("{%- macro render(t, depth=0) -%}\n{{ t.name }}{% if t.kids is defined %}({% for k in t.kids %}{{ render(k, depth + 1) }}{% if not loop.last %},{% endif %}{% endfor %}){% endif %}\n{%- endmacro -%}\n{{ render({'name': 'r', 'kids': [{'name': 'a'}, {'name': 'b', 'kids': [{'name': 'c'}]}]}) }}", "r(a,b(c))")]
        [InlineData("{%- set tools_json = tools | tojson(indent=2) %}{{ tools_json }}", "[\n  {\n    \"type\": \"function\",\n    \"function\": {\n      \"name\": \"get\",\n      \"description\": \"Get it\",\n      \"parameters\": {\n        \"type\": \"object\",\n        \"properties\": {\n          \"x\": {\n            \"type\": \"string\"\n          }\n        }\n      }\n    }\n  }\n]")]
        [InlineData("{{ tools[0].function.parameters|tojson(sort_keys=true) }}|{{ {'b':1,'a':{'d':2,'c':3}}|tojson(sort_keys=true) }}", "{\"properties\": {\"x\": {\"type\": \"string\"}}, \"type\": \"object\"}|{\"a\": {\"c\": 3, \"d\": 2}, \"b\": 1}")]
        [InlineData("{{ {'a': '\u00e9'}|tojson(ensure_ascii=true) }}{{ 'x'|tojson(true) }}", "{\"a\": \"\\u00e9\"}\"x\"")]
        [InlineData("{{ {'a': 1, 'b': 2}|tojson(separators=(',', ':')) }}", "{\"a\":1,\"b\":2}")]
        [InlineData("{{ messages | length > 1 }}{{ messages|length is odd }}", "TrueTrue")]
        [InlineData("{%- for m in messages %}{% set c = m.content %}{% if c is string %}{{ c|trim }}{% endif %}{% endfor %}{{ c }}", "SysHi \u201cq\u201d \U0001f600A")]
        [InlineData("{% set d2 = {'role': 'x', 'items': 5} %}{{ d2['items'] }}|{{ d2.role }}", "5|x")]
        [InlineData("{{ messages[0] == messages[0] }}{{ messages[0] == {'role': 'system', 'content': '  Sys  '} }}{{ messages[0] != messages[1] }}", "TrueTrueTrue")]
        [InlineData("{{ none ~ '' }}{{ undefined_x ~ 'a' }}{{ undefined_x|string }}{{ undefined_x|length }}{{ undefined_x|list }}{{ undefined_x|join(',') }}{{ undefined_x|trim }}", "Nonea0[]")]
        [InlineData("{{ undefined_x == undefined_y }}{{ undefined_x is none }}{{ not undefined_x }}", "TrueFalseTrue")]
        [InlineData("{% for x in undefined_x %}a{% else %}empty{% endfor %}", "empty")]
        [InlineData("{{ l[1:] }}{{ l[:-1] }}{{ l[5:] }}{{ l[-10:2] }}{{ l[::2] }}{{ s[:100] }}", "[1, 2][3, 1][][3, 1][3, 2]Hello World")]
        [InlineData("{{ \"a\\tb\\\\n\" }}{{ '\\x41\\u00e9' }}{{ 'it\\'s' }}", "a\tb\\nA\u00e9it's")]
        [InlineData("{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 5 is sameas 5 }}{{ none is sameas none }}", "TrueTrueTrueTrue")]
        [InlineData("{{ 1_000 }}{{ 1e3 }}{{ 2.5e-3 }}{{ 0.5 }}", "10001000.00.00250.5")]
        [InlineData("{% if messages[0].role == 'system' %}{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}{{ loop_messages|length }}", "2")]
        [InlineData("{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('a','b') }};{% endfor %}", "-2-a;1-3-b;2--a;")]
        [InlineData("{{ s|truncate(3) }}", "...")]
        [InlineData("{{ \"%5.2f|%-4d|%03d|%s\"|format(3.14159, 7, 5, none) }}", " 3.14|7   |005|None")]
        [InlineData("{{ 'a-b c'.title() }}{{ 'hello world'|title }}{{ \"o'neil x-y\"|title }}", "A-B CHello WorldO'neil X-Y")]
        [InlineData("{{ ['b', 'A', 'a', 'B']|sort }}{{ ['b', 'A', 'a', 'B']|sort(case_sensitive=true) }}{{ ['b','A']|max }}", "['A', 'a', 'b', 'B']['A', 'B', 'a', 'b']b")]
        [InlineData("{% set ns = namespace(items=[]) %}{% for i in range(3) %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.items }}", "[0, 1, 2]")]
        [InlineData("{{ dict(a=1, b='x') }}{{ namespace(a=1).a }}", "{'a': 1, 'b': 'x'}1")]
        [InlineData("{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}{% for a, b in [(1, 2)] %}{{ a }}{% endfor %}", "371")]
    public void Renders_AsJinja2Does(string template, string expected)
    {
        Assert.Equal(expected, JinjaTemplate.Parse(template).Render(Vars(), Now));
    }

    [Theory]
    [InlineData("{{ raise_exception('boom') }}", "boom", 1, 19)]
    [InlineData("{{ undefined_var.attr }}", "'undefined_var' is undefined", 1, 17)]
    [InlineData("\n\n{{ 1 + 'a' }}", "unsupported operand type(s) for +: 'int' and 'str'", 3, 6)]
    [InlineData("{{ undefined_x + 'a' }}", "'undefined_x' is undefined", 1, 16)]
    [InlineData("{{ undefined_x['a'] }}", "'undefined_x' is undefined", 1, 15)]
    [InlineData("{{ l.append(4) }}", "access to attribute 'append' of 'list' object is unsafe", 1, 12)]
    [InlineData("{{ 10 / 0 }}", "division by zero", 1, 7)]
    [InlineData("{{ [3, 'a']|sort }}", "'<' not supported between instances of 'int' and 'str'", 1, 13)]
    [InlineData("{% for a, b in [[1, 2, 3]] %}{{ a }}{% endfor %}", "too many values to unpack (expected 2)", 1, 8)]
    [InlineData("{% set x = 1 %}{% set x.y = 2 %}", "cannot assign attribute on non-namespace object 'x'", 1, 23)]
    public void RuntimeErrors_NameTheLine(string template, string reason, int line, int column)
    {
        var t = JinjaTemplate.Parse(template);
        var e = Assert.Throws<TemplateException>(() => t.Render(Vars(), Now));
        Assert.Equal(reason, e.Reason);
        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.Contains($"line {line}, column {column}", e.Message, StringComparison.Ordinal);
        Assert.Equal(template.Contains("raise_exception", StringComparison.Ordinal), e.RaisedByTemplate);
    }

    [Theory]
    [InlineData("{{ foo( }}", 1, "unexpected '}'")]
    [InlineData("a\n{% if %}", 2, "unexpected end of statement block")]
    [InlineData("{% for x in l %}\n{{ x }}", 2, "expected {% endfor %} or {% else %}")]
    [InlineData("line1\nline2\n  {{ x | nosuchfilter }}", 3, "no filter named 'nosuchfilter'")]
    [InlineData("{% if x is nosuchtest %}{% endif %}", 1, "no test named 'nosuchtest'")]
    [InlineData("\n\n\n{% endif %}", 4, "without its opening tag")]
    [InlineData("{{ 'unterminated }}", 1, "unterminated string literal")]
    [InlineData("{% include 'x' %}", 1, "unknown or unsupported tag 'include'")]
    [InlineData("{# never closed", 1, "unclosed comment")]
    [InlineData("ok\n{{ x ", 2, "missing '}}'")]
    [InlineData("{% for x in l recursive %}{% endfor %}", 1, "recursive for loops are not supported")]
    [InlineData("{% set %}", 1, "expected a name")]
    public void SyntaxErrors_NameTheLine(string template, int line, string fragment)
    {
        var e = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse(template));
        Assert.Equal(line, e.Line);
        Assert.True(e.Column > 0);
        Assert.Contains(fragment, e.Reason, StringComparison.Ordinal);
        Assert.StartsWith($"template line {line}, column {e.Column}: ", e.Message, StringComparison.Ordinal);
    }
}
