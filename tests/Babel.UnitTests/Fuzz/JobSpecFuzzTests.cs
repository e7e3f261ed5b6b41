using Babel.Grains;
using Babel.Grains.Engine;
using Babel.Storage;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Babel.UnitTests.Fuzz;

/// <summary>
/// A job's parameters reach the engine as JSON from whoever submits, and every worker parses them again: for every job
/// kind, malformed or hostile parameters are one <see cref="UserInputException"/> sentence, never another exception.
/// </summary>
public sealed class JobSpecFuzzTests
{
    public static readonly TheoryData<string> Parameters = new()
    {
        "",
        "null",
        "[]",
        "\"text\"",
        "{}",
        "{\"model\": 5, \"corpus\": [], \"languages\": \"eng\"}",
        "{\"model\": \"models/m\", \"corpus\": \"corpora/c\", \"languages\": [null]}",
        "{\"model\": \"models/m\", \"corpus\": \"corpora/c\", \"languages\": [\"eng\"], \"shardTokens\": 1e999}",
        "{\"model\": \"models/m\", \"corpus\": \"corpora/c\", \"languages\": [\"eng\"], \"documentsPerShard\": -2147483648}",
        "{\"model\": \"../../etc\", \"corpus\": \"/\", \"languages\": [\"eng\"]}",
        "{\"data\": \"datasets/d\", \"base\": null, \"methods\": [\"text2tree\"], \"seeds\": [1]}",
        "{\"teacher\": \"openai\", \"baseUrl\": \"file:///etc/passwd\", \"dataset\": \"d\"}",
        "{\"a\":" + string.Concat(Enumerable.Repeat("[", 200)) + string.Concat(Enumerable.Repeat("]", 200)) + "}",
        "{\"model\": \"models/m\"",
    };

    private static IReadOnlyList<IJobKind> Kinds()
    {
        var services = new ServiceCollection();
        services.AddBabelJobKinds();
        return [.. services.BuildServiceProvider().GetServices<IJobKind>()];
    }

    [Theory]
    [MemberData(nameof(Parameters))]
    public async Task Every_kind_refuses_malformed_parameters_with_one_sentence(string parameters)
    {
        var kinds = Kinds();
        Assert.True(kinds.Count >= 8, $"{kinds.Count} kinds registered");
        foreach (var kind in kinds)
        {
            var error = await Record.ExceptionAsync(() => kind.PlanAsync(parameters, new NoArtifacts(), CancellationToken.None));
            Assert.True(error is UserInputException, $"{kind.Name} on {parameters}: {error?.GetType().Name ?? "accepted"}: {error?.Message}");
            Assert.DoesNotContain('\n', error!.Message);
        }
    }

    /// <summary>Validation comes before any input is opened: a kind that asks for one has accepted the parameters.</summary>
    private sealed class NoArtifacts : IArtifactResolver
    {
        public Task<string> LocalFolderAsync(string key, CancellationToken cancellationToken) =>
            throw new UserInputException($"the parameters were accepted and the input {key} was opened");
    }
}
