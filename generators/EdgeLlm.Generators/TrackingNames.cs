namespace EdgeLlm.Generators;

/// <summary>Names of the pipeline steps, for incrementality tests (IncrementalStepRunReason).</summary>
internal static class TrackingNames
{
    public const string ConfigFiles = nameof(ConfigFiles);
    public const string Execute = nameof(Execute);
    public const string Diagnostics = nameof(Diagnostics);
    public const string Output = nameof(Output);
}
