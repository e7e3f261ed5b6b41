using Babel.Grains.Engine;
using Babel.Silo;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Xunit;

namespace Babel.UnitTests.Silo;

/// <summary>Bad options are refused with one sentence per problem that names the setting and the fix, and never echo secrets.</summary>
public class SiloOptionsTests
{
    private const string SecretKey = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs=";

    private static IConfiguration Configuration(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => KeyValuePair.Create(v.Key, (string?)v.Value))).Build();

    private static ValidateOptionsResult Validate(BabelClusterOptions options, IConfiguration? configuration = null) =>
        new BabelClusterOptionsValidator(configuration ?? Configuration()).Validate(Options.DefaultName, options);

    [Fact]
    public void Defaults_are_valid_in_embedded_mode()
    {
        var options = new BabelClusterOptions();

        Assert.True(Validate(options).Succeeded);
        Assert.Equal((ClusterMode.Embedded, "babel", "babel", 11111, 30000), (options.Mode, options.ClusterId, options.ServiceId, options.SiloPort, options.GatewayPort));
        Assert.True(new WorkerOptionsValidator().Validate(null, new WorkerOptions()).Succeeded);
        Assert.True(new HttpOptionsValidator().Validate(null, new HttpOptions()).Succeeded);
        Assert.Equal("http://127.0.0.1:8080", new HttpOptions().Urls);
    }

    [Fact]
    public void Bad_port_names_the_setting_and_the_valid_range()
    {
        var result = Validate(new BabelClusterOptions { SiloPort = 70000 });

        Assert.Equal(["Babel:Cluster:SiloPort 70000 is not a TCP port; set a number from 1 to 65535."], result.Failures);
    }

    [Fact]
    public void Equal_silo_and_gateway_ports_are_refused()
    {
        var result = Validate(new BabelClusterOptions { SiloPort = 30000, GatewayPort = 30000 });

        Assert.Equal(["Babel:Cluster:SiloPort and Babel:Cluster:GatewayPort are both 30000; give them different ports."], result.Failures);
    }

    [Fact]
    public void Cluster_mode_without_connection_string_names_the_environment_variable()
    {
        var result = Validate(new BabelClusterOptions { Mode = ClusterMode.Cluster });

        var failure = Assert.Single(result.Failures!);
        Assert.Contains("BABEL_STORAGE_CONNECTION_STRING", failure, StringComparison.Ordinal);
    }

    [Fact]
    public void Cluster_mode_takes_the_connection_string_from_either_key()
    {
        var options = new BabelClusterOptions { Mode = ClusterMode.Cluster };

        Assert.True(Validate(options, Configuration(("BABEL_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true"))).Succeeded);
        Assert.True(Validate(options, Configuration(("ConnectionStrings:BabelStorage", "UseDevelopmentStorage=true"))).Succeeded);
    }

    [Fact]
    public void Each_service_takes_its_own_connection_string_before_the_shared_one()
    {
        var configuration = Configuration(
            ("BABEL_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("BABEL_STORAGE_TABLE_CONNECTION_STRING", "TableEndpoint=https://babel.table.core.windows.net/;SharedAccessSignature=sv=2020-12-06&tn=OrleansSiloInstances&sp=r&sig=c2ln"));

        var tables = StorageConnectionString.From(configuration, StorageService.Table)!;
        var blobs = StorageConnectionString.From(configuration, StorageService.Blob)!;

        Assert.Equal(("BABEL_STORAGE_TABLE_CONNECTION_STRING", "BABEL_STORAGE_CONNECTION_STRING"), (tables.Source, blobs.Source));
        Assert.StartsWith("TableEndpoint=", tables.Value, StringComparison.Ordinal);
        // A table SAS connection string has no blob endpoint and needs none.
        Assert.True(tables.IsWellFormed(StorageService.Table));
        Assert.False(tables.IsWellFormed(StorageService.Blob));
        Assert.True(Validate(new BabelClusterOptions { Mode = ClusterMode.Cluster }, configuration).Succeeded);
        Assert.Equal("TableEndpoint=https://babel.table.core.windows.net/;SharedAccessSignature=***",
            StorageConnectionString.RedactSecrets(tables.Value));
    }

    [Fact]
    public void One_service_alone_or_a_malformed_service_connection_string_is_refused_with_the_fix()
    {
        var tableOnly = Validate(new BabelClusterOptions { Mode = ClusterMode.Cluster },
            Configuration(("BABEL_STORAGE_TABLE_CONNECTION_STRING", "TableEndpoint=https://babel.table.core.windows.net/;SharedAccessSignature=sp=r&sig=c2ln")));
        Assert.Equal(["Cluster mode needs Azure Blob storage too; set BABEL_STORAGE_BLOB_CONNECTION_STRING or BABEL_STORAGE_CONNECTION_STRING to its connection string."],
            tableOnly.Failures);

        var malformed = Validate(new BabelClusterOptions { Mode = ClusterMode.Cluster }, Configuration(
            ("BABEL_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("BABEL_STORAGE_BLOB_CONNECTION_STRING", $"TableEndpoint=https://babel.table.core.windows.net/;SharedAccessSignature=sig={SecretKey}")));
        var failure = Assert.Single(malformed.Failures!);
        Assert.Equal("BABEL_STORAGE_BLOB_CONNECTION_STRING is not an Azure Blob storage connection string; set it to one such as " +
            "BlobEndpoint=https://ACCOUNT.blob.core.windows.net/;SharedAccessSignature=... (see deploy/k8s/README.md).", failure);
    }

    [Fact]
    public void Malformed_connection_string_is_refused_without_echoing_it()
    {
        var secret = $"AccountName=babel;AccountKey={SecretKey};NoSuchPart";
        var result = Validate(new BabelClusterOptions { Mode = ClusterMode.Cluster }, Configuration(("BABEL_STORAGE_CONNECTION_STRING", secret)));

        var failure = Assert.Single(result.Failures!);
        Assert.Contains("BABEL_STORAGE_CONNECTION_STRING", failure, StringComparison.Ordinal);
        Assert.DoesNotContain(SecretKey, failure, StringComparison.Ordinal);
        Assert.DoesNotContain("babel;", failure, StringComparison.Ordinal);
    }

    [Fact]
    public void Connection_string_never_prints_itself()
    {
        var connection = StorageConnectionString.From(Configuration(("BABEL_STORAGE_CONNECTION_STRING", $"AccountName=babel;AccountKey={SecretKey}")))!;

        Assert.DoesNotContain(SecretKey, connection.ToString(), StringComparison.Ordinal);
        Assert.Equal("failed with *** here", connection.Redact($"failed with {connection.Value} here"));
        Assert.Equal("DefaultEndpointsProtocol=https;AccountKey=***;EndpointSuffix=x",
            StorageConnectionString.RedactSecrets($"DefaultEndpointsProtocol=https;AccountKey={SecretKey};EndpointSuffix=x"));
    }

    [Fact]
    public void Worker_options_name_the_bad_device_and_thread_count()
    {
        var result = new WorkerOptionsValidator().Validate(null, new WorkerOptions { ThreadsPerSlot = 0, Devices = "cuda:0, gpu1" });

        Assert.Equal(
        [
            "Babel:Worker:ThreadsPerSlot 0 is below 1; set 1 or more.",
            "Babel:Worker:Devices has 'gpu1', which is not a device; list devices like cuda:0,cuda:1 or cpu:0,cpu:1.",
        ], result.Failures);
    }

    [Fact]
    public void Http_urls_must_be_http()
    {
        var validator = new HttpOptionsValidator();

        Assert.True(validator.Validate(null, new HttpOptions { Urls = "http://127.0.0.1:0;http://*:8080" }).Succeeded);
        Assert.Equal(["Babel:Http:Urls has 'ftp://host', which is not an http(s) URL; set one such as http://127.0.0.1:8080."],
            validator.Validate(null, new HttpOptions { Urls = "ftp://host" }).Failures);
    }

    [Fact]
    public void AddBabelSilo_refuses_an_unknown_mode_while_building()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection([KeyValuePair.Create("Babel:Cluster:Mode", (string?)"Clustr")]);

        var error = Assert.Throws<OptionsValidationException>(() => builder.AddBabelSilo());

        Assert.Equal("Babel:Cluster:Mode 'Clustr' is unknown; set one of Embedded, Cluster.", StartupFailure.Describe(error));
    }

    [Fact]
    public void AddBabelSilo_applies_the_override_after_configuration()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection([KeyValuePair.Create("Babel:Cluster:SiloPort", (string?)"0")]);

        builder.AddBabelSilo(options => options.SiloPort = 11112);
        using var host = builder.Build();

        Assert.Equal(11112, host.Services.GetRequiredService<IOptions<BabelClusterOptions>>().Value.SiloPort);
    }

    [Fact]
    public void Startup_failure_joins_every_options_failure_and_ignores_bugs()
    {
        var error = new AggregateException(
            new OptionsValidationException("", typeof(WorkerOptions), ["first."]),
            new OptionsValidationException("", typeof(HttpOptions), ["second."]));

        Assert.Equal($"first.{Environment.NewLine}second.", StartupFailure.Describe(error));
        Assert.Null(StartupFailure.Describe(new NullReferenceException()));
    }
}
