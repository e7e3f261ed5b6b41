using System.Net;
using Babel.Silo;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Xunit;

namespace Babel.UnitTests.Silo;

/// <summary>
/// The silo and gateway ports listen on loopback unless <c>Babel:Cluster:ListenAddress</c> says otherwise, in cluster mode
/// too, and with Kubernetes hosting (whose own default is every interface); the advertised address must be reachable.
/// The real sockets of a cluster silo process are checked in Babel.FunctionalTests' PerimeterTests.
/// </summary>
public class ListenAddressTests
{
    private const string Connection = "UseDevelopmentStorage=true";

    private static IConfiguration Configuration(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => KeyValuePair.Create(v.Key, (string?)v.Value))).Build();

    private static ValidateOptionsResult Validate(BabelClusterOptions options) =>
        new BabelClusterOptionsValidator(Configuration((StorageConnectionString.Key, Connection))).Validate(Options.DefaultName, options);

    /// <summary>The endpoints Orleans would use for a silo configured by <paramref name="settings"/>, after every configure and post-configure step.</summary>
    private static EndpointOptions ResolvedEndpoints(params (string Key, string Value)[] settings)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, (string?)s.Value)).Append(KeyValuePair.Create(StorageConnectionString.Key, (string?)Connection)));
        builder.AddBabelSilo();
        using var services = builder.Services.BuildServiceProvider();
        return services.GetRequiredService<IOptions<EndpointOptions>>().Value;
    }

    [Fact]
    public void A_cluster_silo_with_default_options_listens_and_advertises_on_loopback_only()
    {
        Assert.Equal("127.0.0.1", new BabelClusterOptions().ListenAddress);

        var endpoints = ResolvedEndpoints(("Babel:Cluster:Mode", "Cluster"));

        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 11111), endpoints.SiloListeningEndpoint);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 30000), endpoints.GatewayListeningEndpoint);
        Assert.Equal(IPAddress.Loopback, endpoints.AdvertisedIPAddress);
    }

    [Fact]
    public void Kubernetes_hosting_listens_on_the_pod_IP_only_when_the_manifests_set_it()
    {
        // The values deploy/k8s/base/deployment.yaml gives a pod; Kubernetes hosting alone would listen on 0.0.0.0.
        var endpoints = ResolvedEndpoints(
            ("Babel:Cluster:Mode", "Cluster"),
            ("Babel:Cluster:ListenAddress", "10.0.0.5"),
            ("Babel:Cluster:AdvertisedAddress", "10.0.0.5"),
            (KubernetesHosting.PodNameVariable, "babel-silo-5d9c7-abcde"),
            (KubernetesHosting.PodNamespaceVariable, "babel"));

        var pod = IPAddress.Parse("10.0.0.5");
        Assert.Equal(new IPEndPoint(pod, 11111), endpoints.SiloListeningEndpoint);
        Assert.Equal(new IPEndPoint(pod, 30000), endpoints.GatewayListeningEndpoint);
        Assert.Equal(pod, endpoints.AdvertisedIPAddress);
    }

    [Theory]
    [InlineData("Cluster", "0.0.0.0", "192.0.2.7", "0.0.0.0", "192.0.2.7")]
    [InlineData("Cluster", "192.0.2.7", null, "192.0.2.7", "192.0.2.7")]
    [InlineData("Embedded", "0.0.0.0", null, "0.0.0.0", "127.0.0.1")]
    [InlineData("Embedded", "127.0.0.1", null, "127.0.0.1", "127.0.0.1")]
    public void The_listen_address_is_used_as_given_and_advertised_unless_it_is_every_interface(string mode, string listen, string? advertised, string expectedListen, string expectedAdvertised)
    {
        var settings = new List<(string, string)> { ("Babel:Cluster:Mode", mode), ("Babel:Cluster:ListenAddress", listen) };
        if (advertised is not null)
            settings.Add(("Babel:Cluster:AdvertisedAddress", advertised));

        var endpoints = ResolvedEndpoints([.. settings]);

        Assert.Equal(IPAddress.Parse(expectedListen), endpoints.SiloListeningEndpoint!.Address);
        Assert.Equal(IPAddress.Parse(expectedListen), endpoints.GatewayListeningEndpoint!.Address);
        Assert.Equal(IPAddress.Parse(expectedAdvertised), endpoints.AdvertisedIPAddress);
    }

    [Fact]
    public void Advertising_an_address_the_silo_does_not_listen_on_is_refused_with_the_fix()
    {
        var result = Validate(new BabelClusterOptions { Mode = ClusterMode.Cluster, AdvertisedAddress = "10.0.0.5" });

        Assert.Equal(
            ["Babel:Cluster:AdvertisedAddress 10.0.0.5 is not the address the silo listens on (Babel:Cluster:ListenAddress 127.0.0.1), so no other silo " +
             "or client could reach it; set Babel:Cluster:ListenAddress to 10.0.0.5, or to 0.0.0.0 to listen on every interface."],
            result.Failures);
        Assert.True(Validate(new BabelClusterOptions { Mode = ClusterMode.Cluster, AdvertisedAddress = "10.0.0.5", ListenAddress = "10.0.0.5" }).Succeeded);
        Assert.True(Validate(new BabelClusterOptions { Mode = ClusterMode.Cluster, AdvertisedAddress = "10.0.0.5", ListenAddress = "0.0.0.0" }).Succeeded);
        Assert.True(Validate(new BabelClusterOptions { Mode = ClusterMode.Cluster, AdvertisedAddress = "127.0.0.1" }).Succeeded);
    }

    [Fact]
    public void A_listen_address_that_is_not_an_IP_names_the_choices()
    {
        var result = Validate(new BabelClusterOptions { ListenAddress = "localhost" });

        Assert.Equal(
            ["Babel:Cluster:ListenAddress 'localhost' is not an IP address; set 127.0.0.1 (this machine only), this machine's IP (one interface) or 0.0.0.0 (every interface)."],
            result.Failures);
    }
}
