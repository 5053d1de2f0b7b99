using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Kernels;
using EdgeLlm.Models;
using EdgeLlm.Tests.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Specialized;

/// <summary>
/// EDGELLM_PROFILE on the specialized path: its fused steps are timed under their own names
/// (NormQuantize, QkvRope, MatAdd, GateUpSwiGlu) next to the steps it shares with the generic
/// path (KvStore, Attention, the output's MatMat/MatVec), once per layer and forward pass, so a
/// profile of `edgellm bench` shows where a specialized pass spends its time.
/// </summary>
public class SpecializedProfileTests(ITestOutputHelper output)
{
    [Fact]
    public void Profile_CountsEveryFusedStep()
    {
        using var file = GgufFile.Open(SharedData.Model("stories260K-q8_0"));
        using var model = Model.Load(file);
        Assert.NotNull(model.Specialization);
        int layers = model.Config.BlockCount;
        bool was = Profiler.Enabled;
        Profiler.Enabled = true;
        try
        {
            var ops = new[] { Profiler.Op.NormQuantize, Profiler.Op.QkvRope, Profiler.Op.MatAdd, Profiler.Op.GateUpSwiGlu, Profiler.Op.KvStore, Profiler.Op.Attention, Profiler.Op.MatMat, Profiler.Op.MatVec };
            var before = ops.ToDictionary(op => op, Profiler.Calls);
            long runs = model.Specialization!.Runs;
            using (var ctx = new InferenceContext(model, contextLength: 64, threads: 2))
            {
                ctx.Eval([1, 403, 407, 261, 378]); // a batch: the output product is a MatMat only when several rows are kept, so one row here is MatVec
                ctx.Eval([400]);                   // one token
            }
            Assert.Equal(runs + 2, model.Specialization.Runs);
            var calls = ops.ToDictionary(op => op, op => Profiler.Calls(op) - before[op]);
            output.WriteLine(string.Join(", ", calls.Select(kv => $"{kv.Key} {kv.Value}")));
            // Other tests may time sections at the same time (the totals are process-wide): at least ours.
            Assert.True(calls[Profiler.Op.NormQuantize] >= 2 * (2 * layers + 1), $"NormQuantize {calls[Profiler.Op.NormQuantize]}");
            Assert.True(calls[Profiler.Op.QkvRope] >= 2 * layers, $"QkvRope {calls[Profiler.Op.QkvRope]}");
            Assert.True(calls[Profiler.Op.MatAdd] >= 2 * 2 * layers, $"MatAdd {calls[Profiler.Op.MatAdd]}");
            Assert.True(calls[Profiler.Op.GateUpSwiGlu] >= 2 * layers, $"GateUpSwiGlu {calls[Profiler.Op.GateUpSwiGlu]}");
            Assert.True(calls[Profiler.Op.KvStore] >= 2 * layers, $"KvStore {calls[Profiler.Op.KvStore]}");
            Assert.True(calls[Profiler.Op.Attention] >= 2 * layers, $"Attention {calls[Profiler.Op.Attention]}");
            Assert.True(calls[Profiler.Op.MatVec] + calls[Profiler.Op.MatMat] >= 2, "the output projection was not timed");
            Assert.Contains("GateUpSwiGlu", Profiler.Report());
        }
        finally
        {
            Profiler.Enabled = was;
        }
    }
}
