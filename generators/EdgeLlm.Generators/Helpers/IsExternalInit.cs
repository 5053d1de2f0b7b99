namespace System.Runtime.CompilerServices;

/// <summary>Lets netstandard2.0 compile records and init-only setters (the type ships in .NET 5+).</summary>
internal static class IsExternalInit
{
}
