namespace Babel.Storage.Artifacts;

/// <summary>Validation of artifact keys and list prefixes, shared by every <see cref="IArtifactStore"/>.</summary>
public static class ArtifactKey
{
    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="key"/> is a relative '/'-separated path with no empty, '.' or '..' segment.</summary>
    public static string Validate(string key, string parameterName = "key")
    {
        ArgumentNullException.ThrowIfNull(key, parameterName);
        if (key.Length == 0) throw new ArgumentException("An artifact key must not be empty.", parameterName);
        CheckCharacters(key, parameterName);
        foreach (var segment in key.Split('/'))
        {
            if (segment.Length == 0 || segment is "." or "..")
                throw new ArgumentException($"The artifact key '{key}' has an empty, '.' or '..' segment; keys are relative paths like 'jobs/JOB/shards/SHARD.json'.", parameterName);
        }
        return key;
    }

    /// <summary>
    /// Throws <see cref="ArgumentException"/> unless <paramref name="prefix"/> is empty or a key prefix:
    /// the same rules as <see cref="Validate"/>, except that it may end with '/' or in the middle of a segment.
    /// </summary>
    public static string ValidatePrefix(string prefix, string parameterName = "prefix")
    {
        ArgumentNullException.ThrowIfNull(prefix, parameterName);
        if (prefix.Length == 0) return prefix;
        CheckCharacters(prefix, parameterName);
        var segments = prefix.Split('/');
        for (var i = 0; i < segments.Length; i++)
        {
            var last = i == segments.Length - 1;
            if ((segments[i].Length == 0 && !last) || segments[i] == ".." || (segments[i] == "." && !last))
                throw new ArgumentException($"The artifact prefix '{prefix}' has an empty, '.' or '..' segment; prefixes look like 'jobs/JOB/'.", parameterName);
        }
        return prefix;
    }

    private static void CheckCharacters(string value, string parameterName)
    {
        if (value[0] == '/')
            throw new ArgumentException($"The artifact key '{value}' starts with '/'; keys are relative paths like 'jobs/JOB/shards/SHARD.json'.", parameterName);
        if (value.Contains('\\'))
            throw new ArgumentException($"The artifact key '{value}' contains a backslash; separate segments with '/'.", parameterName);
        if (value.AsSpan().IndexOfAnyInRange('\0', '\u001f') >= 0)
            throw new ArgumentException($"The artifact key '{value}' contains a control character.", parameterName);
    }
}
