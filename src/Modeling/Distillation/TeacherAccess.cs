using System.Net;
using System.Text.RegularExpressions;
using Babel.Storage;

namespace Babel.Modeling.Distillation;

/// <summary>
/// What a worker lets a distillation job reach: the teacher hosts it may call and the environment variables it may read
/// a teacher key from. Whoever submits a job names the URL and the variable; the silo decides which are allowed, so a job
/// cannot send a silo's other secrets (a storage connection string) to a host of its choosing. Loopback is always
/// allowed, over http or https; another host only when listed, over https unless plain http is allowed too. Key
/// variables are the names under <see cref="KeyVariablePrefix"/> and those listed.
/// </summary>
public sealed partial class TeacherAccess
{
    /// <summary>Environment variables with this prefix may hold a teacher key without being listed.</summary>
    public const string KeyVariablePrefix = "BABEL_TEACHER_";

    private readonly HashSet<string> _hosts;
    private readonly HashSet<string> _keyVariables;
    private readonly bool _plainHttp;

    /// <param name="hosts">Teacher hosts allowed besides loopback (names or IP addresses, compared without case).</param>
    /// <param name="keyVariables">Environment variables allowed besides the <see cref="KeyVariablePrefix"/> ones.</param>
    /// <param name="plainHttp">Allow http (not only https) to <paramref name="hosts"/>.</param>
    public TeacherAccess(IEnumerable<string> hosts, IEnumerable<string> keyVariables, bool plainHttp)
    {
        _hosts = new HashSet<string>(hosts.Select(h => h.Trim()).Where(h => h.Length > 0), StringComparer.OrdinalIgnoreCase);
        _keyVariables = new HashSet<string>(keyVariables.Select(v => v.Trim()).Where(v => v.Length > 0), StringComparer.Ordinal);
        _plainHttp = plainHttp;
    }

    /// <summary>Loopback teachers only, keys only from <c>BABEL_TEACHER_*</c>.</summary>
    public static TeacherAccess Default { get; } = new([], [], plainHttp: false);

    /// <summary>A comma-separated list as options hold it.</summary>
    public static IReadOnlyList<string> List(string? text) => text?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) ?? [];

    /// <summary>True for a name an environment variable can have: letters, digits and '_', not starting with a digit.</summary>
    public static bool IsVariableName(string? name) => name is not null && VariableName().IsMatch(name);

    /// <summary>The teacher URL, checked; one sentence naming the silo setting to change when it is not allowed.</summary>
    public Uri CheckEndpoint(string baseUrl)
    {
        if (!Uri.TryCreate(baseUrl, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            throw new UserInputException($"The teacher URL '{baseUrl}' is not an http(s) URL; give --teacher openai:http://HOST:PORT/v1.");
        }
        if (uri.UserInfo.Length > 0) throw new UserInputException("The teacher URL carries a user name or password; put the key in an environment variable named by --api-key-env instead.");
        if (IsLoopback(uri)) return uri;
        if (!_hosts.Contains(uri.IdnHost))
        {
            throw new UserInputException($"The teacher host '{uri.IdnHost}' is not allowed on this silo; only loopback is, unless the silo lists the host in Babel:Worker:TeacherHosts.");
        }
        if (uri.Scheme == "http" && !_plainHttp)
        {
            throw new UserInputException($"Plain http to the teacher host '{uri.IdnHost}' is not allowed on this silo; use https, or set Babel:Worker:TeacherPlainHttp on the silo.");
        }
        return uri;
    }

    /// <summary>The key in <paramref name="variable"/> (null when unset or empty); one sentence when the silo does not allow reading it.</summary>
    public string? ReadKey(string variable)
    {
        if (!IsVariableName(variable)) throw new UserInputException($"--api-key-env '{variable}' is not an environment variable name.");
        if (!variable.StartsWith(KeyVariablePrefix, StringComparison.Ordinal) && !_keyVariables.Contains(variable))
        {
            throw new UserInputException($"The environment variable '{variable}' may not hold a teacher key on this silo; use a name starting with {KeyVariablePrefix}, or list it in Babel:Worker:TeacherKeyVariables on the silo.");
        }
        return Environment.GetEnvironmentVariable(variable) is { Length: > 0 } key ? key : null;
    }

    /// <summary>Loopback by name or address; a host name other than <c>localhost</c> is not resolved, so it counts as remote.</summary>
    public static bool IsLoopback(Uri uri) =>
        uri.IsLoopback || (IPAddress.TryParse(uri.IdnHost.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address));

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]*$", RegexOptions.CultureInvariant)]
    private static partial Regex VariableName();
}
