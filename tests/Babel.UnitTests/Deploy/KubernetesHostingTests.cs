using Babel.Silo;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Xunit;

namespace Babel.UnitTests.Deploy;

/// <summary>
/// Orleans' Kubernetes hosting is chosen only for a cluster-mode silo that runs in a pod (or is told so), and then registered
/// beside Azure Table clustering; embedded and plain cluster silos stay as they were.
/// </summary>
public class KubernetesHostingTests
{
    private const string Pod = "babel-silo-5d9c7-abcde";
    private static readonly (string, string)[] PodEnvironment = [(KubernetesHosting.PodNameVariable, Pod), (KubernetesHosting.PodNamespaceVariable, "babel")];

    private static IConfiguration Configuration(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => KeyValuePair.Create(v.Key, (string?)v.Value))).Build();

    private static BabelClusterOptions Cluster(bool? kubernetesHosting = null) => new() { Mode = ClusterMode.Cluster, KubernetesHosting = kubernetesHosting };

    [Fact]
    public void Automatic_selection_needs_cluster_mode_and_both_pod_variables()
    {
        Assert.True(KubernetesHosting.IsEnabled(Cluster(), Configuration(PodEnvironment)));
        Assert.False(KubernetesHosting.IsEnabled(Cluster(), Configuration()));
        Assert.False(KubernetesHosting.IsEnabled(Cluster(), Configuration((KubernetesHosting.PodNameVariable, Pod))));
        Assert.False(KubernetesHosting.IsEnabled(Cluster(), Configuration((KubernetesHosting.PodNamespaceVariable, "babel"))));
        Assert.False(KubernetesHosting.IsEnabled(Cluster(), Configuration((KubernetesHosting.PodNameVariable, " "), (KubernetesHosting.PodNamespaceVariable, "babel"))));
        // Embedded mode (the CLI, a laptop) never uses it, even inside a pod.
        Assert.False(KubernetesHosting.IsEnabled(new BabelClusterOptions(), Configuration(PodEnvironment)));
        Assert.False(KubernetesHosting.IsEnabled(new BabelClusterOptions { KubernetesHosting = true }, Configuration(PodEnvironment)));
    }

    [Fact]
    public void The_setting_overrides_the_automatic_selection()
    {
        Assert.False(KubernetesHosting.IsEnabled(Cluster(kubernetesHosting: false), Configuration(PodEnvironment)));
        Assert.True(KubernetesHosting.IsEnabled(Cluster(kubernetesHosting: true), Configuration(PodEnvironment)));
    }

    [Fact]
    public void Forcing_it_without_a_pod_or_in_embedded_mode_is_refused_with_the_fix()
    {
        var connection = (StorageConnectionString.Key, "UseDevelopmentStorage=true");
        var withoutPod = new BabelClusterOptionsValidator(Configuration(connection)).Validate(Options.DefaultName, Cluster(kubernetesHosting: true));
        Assert.Equal(
            [
                "Babel:Cluster:KubernetesHosting is true but POD_NAME is not set; set it from the downward API as deploy/k8s/base/deployment.yaml does.",
                "Babel:Cluster:KubernetesHosting is true but POD_NAMESPACE is not set; set it from the downward API as deploy/k8s/base/deployment.yaml does.",
            ],
            withoutPod.Failures);

        var embedded = new BabelClusterOptionsValidator(Configuration(PodEnvironment)).Validate(Options.DefaultName, new BabelClusterOptions { KubernetesHosting = true });
        Assert.Equal(["Babel:Cluster:KubernetesHosting is true in embedded mode; set Babel:Cluster:Mode to Cluster or leave KubernetesHosting unset."], embedded.Failures);

        Assert.True(new BabelClusterOptionsValidator(Configuration([connection, .. PodEnvironment])).Validate(Options.DefaultName, Cluster(kubernetesHosting: true)).Succeeded);
    }

    [Theory]
    [InlineData(true, null, true)]
    [InlineData(true, "false", false)]
    [InlineData(false, null, false)]
    public void AddBabelSilo_registers_Kubernetes_hosting_beside_Azure_Table_clustering_only_when_selected(bool inPod, string? setting, bool expected)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var values = new Dictionary<string, string?>
        {
            ["Babel:Cluster:Mode"] = "Cluster",
            ["Babel:Cluster:KubernetesHosting"] = setting,
            [StorageConnectionString.Key] = "UseDevelopmentStorage=true",
        };
        if (inPod)
        {
            foreach (var (key, value) in PodEnvironment)
                values[key] = value;
        }
        builder.Configuration.AddInMemoryCollection(values);

        builder.AddBabelSilo();

        // The package's serializer metadata is registered whenever it is referenced; its hosting services only when selected.
        var kubernetes = builder.Services
            .Where(d => FromAssembly(d, "Orleans.Hosting.Kubernetes") && d.ServiceType != typeof(IConfigureOptions<Orleans.Serialization.Configuration.TypeManifestOptions>))
            .ToList();
        Assert.True(expected == kubernetes.Count > 0, string.Join("; ", kubernetes.Select(d => $"{d.ServiceType} {d.ImplementationType} {d.ImplementationInstance?.GetType()}")));
        if (expected)
        {
            // The package names the silo after the pod (and sets its other options) through these.
            Assert.Contains(kubernetes, d => d.ServiceType == typeof(IConfigureOptions<SiloOptions>));
            Assert.Contains(kubernetes, d => d.ServiceType == typeof(IPostConfigureOptions<EndpointOptions>));
        }
        // Membership is Azure Table's in every case.
        Assert.Contains(builder.Services, d => FromAssembly(d, "Orleans.Clustering.AzureStorage"));
    }

    private static bool FromAssembly(ServiceDescriptor descriptor, string assembly)
    {
        var type = descriptor.IsKeyedService ? descriptor.KeyedImplementationType : descriptor.ImplementationType;
        return type?.Assembly.GetName().Name == assembly || descriptor.ServiceType.Assembly.GetName().Name == assembly;
    }
}
