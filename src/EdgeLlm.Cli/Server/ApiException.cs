namespace EdgeLlm.Cli.Server;

/// <summary>
/// A request the server refuses, turned into an HTTP status and OpenAI's error object
/// (<c>{"error": {"message", "type", "param", "code"}}</c>) by <see cref="OpenAiServer"/>.
/// </summary>
public sealed class ApiException(int status, string message, string type = ApiException.InvalidRequest, string? param = null, string? code = null)
    : Exception(message)
{
    /// <summary>OpenAI's type for a bad request (400, 404, 413).</summary>
    public const string InvalidRequest = "invalid_request_error";

    /// <summary>The HTTP status code.</summary>
    public int Status { get; } = status;

    /// <summary>The error object's <c>type</c>.</summary>
    public string Type { get; } = type;

    /// <summary>The request field at fault, when one is.</summary>
    public string? Param { get; } = param;

    /// <summary>A machine-readable code (e.g. <c>model_not_found</c>).</summary>
    public string? Code { get; } = code;

    /// <summary>A 400 naming the field at fault.</summary>
    public static ApiException BadField(string param, string message, string? code = null) => new(400, message, InvalidRequest, param, code);

    /// <summary>The error object for this exception.</summary>
    public ErrorResponse ToResponse() => new() { Error = new ErrorBody { Message = Message, Type = Type, Param = Param, Code = Code } };
}
