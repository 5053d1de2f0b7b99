using EdgeLlm.Chat.Jinja;
using Xunit;

namespace EdgeLlm.Tests.Chat;

/// <summary>
/// Templates are untrusted input (they come inside downloaded model files): loops, recursion and
/// output are bounded, and a template reaches nothing but its own values.
/// </summary>
public class JinjaSandboxTests
{
    private static TemplateException Fails(string template, TemplateLimits? limits = null, Dictionary<string, object?>? vars = null)
    {
        var t = JinjaTemplate.Parse(template, limits);
        return Assert.Throws<TemplateException>(() => t.Render(vars ?? []));
    }

    [Fact]
    public void NestedLoops_StopAtIterationLimit()
    {
        var e = Fails("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}");
        Assert.Contains("loop iterations", e.Reason, StringComparison.Ordinal);
        Assert.Equal(1, e.Line);
    }

    [Fact]
    public void IterationLimit_IsConfigurable()
    {
        var limits = new TemplateLimits { MaxLoopIterations = 10 };
        Assert.Equal("0123456789", JinjaTemplate.Parse("{% for i in range(10) %}{{ i }}{% endfor %}", limits).Render([]));
        Assert.Contains("limit of 10 loop iterations", Fails("{% for i in range(11) %}{% endfor %}", limits).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void HugeRange_IsRefused()
    {
        Assert.Contains("range()", Fails("{{ range(1000000000)|length }}").Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void UnboundedMacroRecursion_StopsAtCallDepth()
    {
        var e = Fails("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}");
        Assert.Contains("macro calls nested deeper than the limit of 64", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void BoundedMacroRecursion_Works()
    {
        var t = JinjaTemplate.Parse("{% macro count(n) %}{% if n > 0 %}{{ n }}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(5) }}");
        Assert.Equal("54321", t.Render([]));
    }

    [Fact]
    public void StringDoubling_StopsAtOutputLimit()
    {
        var e = Fails("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}");
        Assert.Contains("exceeds the limit", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void StringRepetition_StopsAtOutputLimit()
    {
        Assert.Contains("limit", Fails("{{ 'x' * 1000000000 }}").Reason, StringComparison.Ordinal);
        Assert.Contains("limit", Fails("{{ [1, 2] * 1000000000 }}").Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void LongOutput_StopsAtOutputLimit()
    {
        var limits = new TemplateLimits { MaxOutputChars = 1000 };
        var e = Fails("{% for i in range(10000) %}0123456789{% endfor %}", limits);
        Assert.Contains("more than the limit of 1000 characters", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void ListDoubling_StopsAtCollectionLimit()
    {
        var e = Fails("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}");
        Assert.Contains("limit", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void DeepNesting_IsASyntaxError_NotAStackOverflow()
    {
        var e = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse("{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}"));
        Assert.Contains("nested too deeply", e.Reason, StringComparison.Ordinal);
        string ifs = string.Concat(Enumerable.Repeat("{% if true %}", 5000)) + string.Concat(Enumerable.Repeat("{% endif %}", 5000));
        Assert.Contains("nested too deeply", Assert.Throws<TemplateException>(() => JinjaTemplate.Parse(ifs)).Reason, StringComparison.Ordinal);
        Assert.Contains("nested too deeply", Assert.Throws<TemplateException>(() => JinjaTemplate.Parse("{{ " + string.Concat(Enumerable.Repeat("not ", 5000)) + "x }}")).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void NoAccessToPythonOrDotNetInternals()
    {
        // Python's escape hatches are plain missing attributes here; .NET members do not exist for templates.
        var vars = new Dictionary<string, object?> { ["s"] = "x", ["d"] = new Dictionary<string, object?>() };
        Assert.Equal("", JinjaTemplate.Parse("{{ s.__class__ }}{{ d.GetType }}{{ s.Length }}{{ d.__init__ }}").Render(vars));
        Assert.Contains("has no attribute '__class__'", Fails("{{ s.__class__.__mro__ }}", vars: vars).Reason, StringComparison.Ordinal);
        Assert.Contains("has no attribute 'Length'", Fails("{{ s.Length() }}", vars: vars).Reason, StringComparison.Ordinal);
        Assert.Contains("unsafe", Fails("{{ d.update({'a': 1}) }}", vars: vars).Reason, StringComparison.Ordinal);
        Assert.Contains("is undefined", Fails("{{ cycler() }}").Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void InputsAreNotMutated_AcrossRenders()
    {
        var t = JinjaTemplate.Parse("{% set ns = namespace(n=0) %}{% for i in l %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}");
        var vars = new Dictionary<string, object?> { ["l"] = new List<object?> { 1, 2, 3 } };
        Assert.Equal("6", t.Render(vars));
        Assert.Equal("6", t.Render(vars));
    }
}
