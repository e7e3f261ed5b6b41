namespace Babel.Silo;

/// <summary>
/// Where the silo serves health, metrics and the model API, bound from <c>Babel:Http</c>. ASP.NET Core's own
/// <c>--urls</c> / <c>ASPNETCORE_URLS</c> win over it when given.
/// </summary>
public sealed class HttpOptions
{
    public const string Section = "Babel:Http";

    /// <summary>Semicolon-separated listen URLs. Default <c>http://127.0.0.1:8080</c>: loopback only unless configured.</summary>
    public string Urls { get; set; } = "http://127.0.0.1:8080";
}
