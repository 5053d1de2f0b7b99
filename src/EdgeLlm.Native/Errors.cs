using System.Runtime.InteropServices;
using System.Text;

namespace EdgeLlm.Native;

/// <summary>The <c>edgellm_error</c> codes of edgellm.h (values are part of the ABI).</summary>
internal enum EdgeLlmError
{
    Ok = 0,
    InvalidArgument = 1,
    NullHandle = 2,
    InvalidHandle = 3,
    BufferTooSmall = 4,
    ModelLoadFailed = 5,
    ContextFull = 6,
    OutOfMemory = 7,
    NoLogits = 8,
    Busy = 9,
    Internal = 10,
    Template = 11,
    BackendUnavailable = 12,
}

/// <summary>A failure with its ABI code; thrown inside the library and turned into a return value at the boundary.</summary>
internal sealed class EdgeLlmException(EdgeLlmError code, string message) : Exception(message)
{
    public EdgeLlmError Code { get; } = code;
}

/// <summary>
/// The per-thread message behind <c>edgellm_last_error</c>: a NUL-terminated UTF-8 copy in native memory,
/// so the pointer handed to C stays valid (the GC never moves it) until the thread's next failure.
/// </summary>
internal static unsafe class LastError
{
    [ThreadStatic] private static byte* t_message;
    private static readonly byte* s_empty = (byte*)NativeMemory.AllocZeroed(1);

    /// <summary>The current thread's last message, or "".</summary>
    public static byte* Get() => t_message != null ? t_message : s_empty;

    /// <summary>Replaces the current thread's message.</summary>
    public static void Set(string message)
    {
        int n = Encoding.UTF8.GetByteCount(message);
        var p = (byte*)NativeMemory.Alloc((nuint)n + 1);
        Encoding.UTF8.GetBytes(message, new Span<byte>(p, n));
        p[n] = 0;
        var old = t_message;
        t_message = p;
        if (old != null) NativeMemory.Free(old);
    }

    /// <summary>
    /// Maps any exception to its code and records its message; the one place where exceptions end, so that
    /// none crosses into C.
    /// </summary>
    public static int Fail(Exception e, string function)
    {
        EdgeLlmError code = e switch
        {
            EdgeLlmException x => x.Code,
            ArgumentException => EdgeLlmError.InvalidArgument,
            // The Vulkan backend failing after its context was created (e.g. a lost device) is still "unavailable".
            Vulkan.VulkanUnavailableException => EdgeLlmError.BackendUnavailable,
            OutOfMemoryException => EdgeLlmError.OutOfMemory, // InsufficientMemoryException included
            _ => EdgeLlmError.Internal,
        };
        string text = code == EdgeLlmError.Internal ? $"{function}: internal error: {e.GetType().Name}: {e.Message}" : $"{function}: {e.Message}";
        try
        {
            Set(text);
        }
        catch (OutOfMemoryException)
        {
            // No memory for the message: the code still tells what happened.
        }
        return (int)code;
    }
}
