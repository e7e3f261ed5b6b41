using System.Net;
using Babel.Silo;
using k8s.Models;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Hosting.Kubernetes;
using Xunit;

namespace Babel.UnitTests.Deploy;

/// <summary>
/// The perimeter in deploy/k8s: TLS settings and the TLS Secret's mount in silos and client Jobs, the Role's verbs as narrow
/// as the options Babel gives Orleans' Kubernetes hosting, and egress policies that allow only DNS, the silos, the
/// Kubernetes API, Azure Storage and the listed teacher hosts.
/// </summary>
public partial class ManifestTests
{
    private const string TlsSecret = "babel-tls";

    /// <summary>Where <paramref name="container"/> mounts Secret <paramref name="secret"/> (read-only), failing when it does not.</summary>
    private static string MountedSecretFolder(V1PodSpec pod, V1Container container, string secret)
    {
        var volume = Assert.Single(pod.Volumes, v => v.Secret?.SecretName == secret);
        var mount = Assert.Single(container.VolumeMounts, m => m.Name == volume.Name);
        Assert.True(mount.ReadOnlyProperty, $"{secret} is mounted writable.");
        return mount.MountPath;
    }

    /// <summary>The (Secret, key) files <paramref name="container"/>'s settings read from its Secret volumes.</summary>
    private static IEnumerable<(string Secret, string Key)> SecretFilesRead(V1PodSpec pod, V1Container container) =>
        from volume in pod.Volumes ?? []
        where volume.Secret is not null
        from mount in container.VolumeMounts ?? []
        where mount.Name == volume.Name
        from variable in container.Env ?? []
        where variable.Value?.StartsWith(mount.MountPath + "/", StringComparison.Ordinal) == true
        select (volume.Secret.SecretName, variable.Value[(mount.MountPath.Length + 1)..]);

    [Fact]
    public void Silos_and_the_client_job_use_TLS_with_the_TLS_Secret_mounted_read_only_where_the_settings_point()
    {
        var deployment = BaseDeployment();
        var job = Assert.Single(LoadFile("examples", "profile-job.yaml").OfType<V1Job>());
        var pods = new[] { (deployment.Spec.Template.Spec, Silo(deployment)), (job.Spec.Template.Spec, Assert.Single(job.Spec.Template.Spec.Containers)) };
        var settings = new List<Dictionary<string, string>>();
        foreach (var (pod, container) in pods)
        {
            var folder = MountedSecretFolder(pod, container, TlsSecret);
            var volume = Assert.Single(pod.Volumes, v => v.Secret?.SecretName == TlsSecret);
            // 0440: the pod's group (fsGroup) reads the key, nobody else.
            Assert.Equal(Convert.ToInt32("440", 8), volume.Secret.DefaultMode);
            Assert.Equal(pod.SecurityContext.RunAsGroup, pod.SecurityContext.FsGroup);
            var env = container.Env.Where(e => e.Name.StartsWith("Babel__Tls__", StringComparison.Ordinal)).ToDictionary(e => e.Name, e => e.Value);
            Assert.Equal("true", env[EnvName(BabelTlsOptions.Section, nameof(BabelTlsOptions.Enabled))]);
            // A kubernetes.io/tls Secret's two files.
            Assert.Equal($"{folder}/tls.crt", env[EnvName(BabelTlsOptions.Section, nameof(BabelTlsOptions.CertificatePath))]);
            Assert.Equal($"{folder}/tls.key", env[EnvName(BabelTlsOptions.Section, nameof(BabelTlsOptions.KeyPath))]);
            Assert.DoesNotContain(container.Env, e => e.Name == BabelTlsOptions.PasswordKey && e.Value is not null);
            settings.Add(env);
        }
        // Silos and clients must agree, or the handshake fails.
        Assert.Equal(settings[0], settings[1]);
    }

    /// <summary>
    /// The pod verbs Babel's use of Microsoft.Orleans.Hosting.Kubernetes needs: those the package's calls need
    /// (<see cref="OrleansKubernetesHostingVerbs"/>), less the ones only reachable under conditions Babel never creates.
    /// </summary>
    private static List<string> KubernetesHostingVerbsBabelUses()
    {
        var verbs = OrleansKubernetesHostingVerbs();
        // The package can call both; the checks below decide whether Babel's silos ever do.
        Assert.Contains("patch", verbs);
        Assert.Contains("delete", verbs);

        // delete: pods of dead silos, only with DeleteDefunctSiloPods, as the silo's resolved options have it.
        if (!ResolvedKubernetesHostingOptions().DeleteDefunctSiloPods)
            verbs.Remove("delete");

        // patch: the pod's orleans/* labels, only when they differ from the silo's ids; the ids are read from those labels.
        var env = Silo(BaseDeployment()).Env.ToDictionary(e => e.Name);
        var idsFromLabels =
            env[EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.ClusterId))].ValueFrom?.FieldRef?.FieldPath == $"metadata.labels['{KubernetesHosting.ClusterIdLabel}']"
            && env[EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.ServiceId))].ValueFrom?.FieldRef?.FieldPath == $"metadata.labels['{KubernetesHosting.ServiceIdLabel}']"
            // The package would override the ids from these variables, which could then differ from the labels.
            && !env.ContainsKey(KubernetesHostingOptions.ClusterIdEnvironmentVariable) && !env.ContainsKey(KubernetesHostingOptions.ServiceIdEnvironmentVariable);
        if (idsFromLabels)
            verbs.Remove("patch");
        return verbs;
    }

    /// <summary>The <see cref="KubernetesHostingOptions"/> a silo configured as deploy/k8s configures it resolves.</summary>
    private static KubernetesHostingOptions ResolvedKubernetesHostingOptions()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Babel:Cluster:Mode"] = "Cluster",
            ["Babel:Cluster:KubernetesHosting"] = "true",
            ["Babel:Cluster:ListenAddress"] = "10.0.0.5",
            ["Babel:Cluster:AdvertisedAddress"] = "10.0.0.5",
            [KubernetesHosting.PodNameVariable] = "babel-silo-5d9c7-abcde",
            [KubernetesHosting.PodNamespaceVariable] = "babel",
            [StorageConnectionString.Key] = "UseDevelopmentStorage=true",
        });
        builder.AddBabelSilo();
        using var services = builder.Services.BuildServiceProvider();
        // Configured as the options factory does, without its validation, which reads POD_NAMESPACE from the process environment.
        var options = new KubernetesHostingOptions();
        foreach (var configure in services.GetServices<IConfigureOptions<KubernetesHostingOptions>>())
            configure.Configure(options);
        foreach (var configure in services.GetServices<IPostConfigureOptions<KubernetesHostingOptions>>())
            configure.PostConfigure(Options.DefaultName, options);
        return options;
    }

    [Fact]
    public void The_Role_grants_get_list_and_watch_only_as_Babel_never_lets_Orleans_patch_or_delete_pods()
    {
        Assert.Equal(["get", "list", "watch"], KubernetesHostingVerbsBabelUses().Order(StringComparer.Ordinal));
        var rule = Assert.Single(Assert.Single(LoadFile("base", "rbac.yaml").OfType<V1Role>()).Rules);
        Assert.DoesNotContain("patch", rule.Verbs);
        Assert.DoesNotContain("delete", rule.Verbs);
        Assert.Null(rule.ResourceNames);
    }

    private static List<V1NetworkPolicy> EgressPolicies(string selectorLabel, string selectorValue) =>
        ManifestFiles().Where(f => f.Contains($"{Path.DirectorySeparatorChar}base{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .SelectMany(f => LoadStrict(File.ReadAllText(f)).OfType<V1NetworkPolicy>())
            .Where(p => p.Spec.PolicyTypes.Contains("Egress") && p.Spec.PodSelector.MatchLabels.TryGetValue(selectorLabel, out var v) && v == selectorValue)
            .ToList();

    /// <summary>What an egress rule allows, by kind of peer: (peer, port/protocol) pairs.</summary>
    private static IEnumerable<(string Peer, string Port)> Allowed(IEnumerable<V1NetworkPolicy> policies) =>
        from policy in policies
        from rule in policy.Spec.Egress
        from peer in rule.To
        from port in rule.Ports
        select (Peer(peer), $"{port.Port.Value}/{port.Protocol}");

    private static string Peer(V1NetworkPolicyPeer peer) => peer switch
    {
        { IpBlock: not null } => "ip",
        { PodSelector.MatchLabels: var labels, NamespaceSelector.MatchLabels: var namespaces }
            when Label(labels, "k8s-app") == "kube-dns" && Label(namespaces, "kubernetes.io/metadata.name") == "kube-system" => "dns",
        { PodSelector.MatchLabels: var labels, NamespaceSelector: null } when Label(labels, "app.kubernetes.io/name") == "babel-silo" => "silo",
        _ => throw new InvalidOperationException($"An egress peer the test does not know: {k8s.KubernetesYaml.Serialize(peer)}"),
    };

    private static string? Label(IDictionary<string, string>? labels, string key) => labels is not null && labels.TryGetValue(key, out var value) ? value : null;

    [Fact]
    public void Silo_egress_allows_only_DNS_the_other_silos_and_HTTPS_to_the_listed_addresses()
    {
        var policies = EgressPolicies("app.kubernetes.io/name", "babel-silo");
        var defaults = new BabelClusterOptions();
        // Every rule names its peers and ports: an empty `to` or `ports` would allow every destination or port.
        Assert.All(policies.SelectMany(p => p.Spec.Egress), rule => Assert.True(rule.To is { Count: > 0 } && rule.Ports is { Count: > 0 }, $"An egress rule of {string.Join(", ", policies.Select(p => p.Metadata.Name))} allows everything."));

        Assert.Equal(
            new HashSet<(string, string)>
            {
                ("dns", "53/UDP"), ("dns", "53/TCP"),
                ("silo", $"{defaults.SiloPort}/TCP"), ("silo", $"{defaults.GatewayPort}/TCP"),
                // HTTPS to Azure Storage, the Kubernetes API (443, or 6443 behind its Service) and the teacher hosts.
                ("ip", "443/TCP"), ("ip", "6443/TCP"),
            },
            Allowed(policies).ToHashSet());
        AssertAddressesAreEditablePlaceholders(policies);
        // The teachers are their own, documented list.
        var teachers = Assert.Single(policies, p => p.Metadata.Name == "babel-silo-egress-teachers");
        Assert.All(teachers.Spec.Egress.SelectMany(r => r.To), peer => Assert.NotNull(peer.IpBlock));
        Assert.Contains("egress-teachers.yaml", File.ReadAllText(Path.Combine(K8s, "README.md")), StringComparison.Ordinal);
        var kustomization = File.ReadAllText(Path.Combine(K8s, "base", "kustomization.yaml"));
        Assert.Contains("- networkpolicy-egress.yaml", kustomization, StringComparison.Ordinal);
        Assert.Contains("- egress-teachers.yaml", kustomization, StringComparison.Ordinal);
    }

    [Fact]
    public void Client_egress_allows_only_DNS_the_gateway_and_HTTPS_to_storage()
    {
        var job = Assert.Single(LoadFile("examples", "profile-job.yaml").OfType<V1Job>());
        Assert.Equal("true", job.Spec.Template.Metadata.Labels["babel.io/client"]);
        var policies = EgressPolicies("babel.io/client", "true");

        Assert.Equal(
            new HashSet<(string, string)> { ("dns", "53/UDP"), ("dns", "53/TCP"), ("silo", $"{new BabelClusterOptions().GatewayPort}/TCP"), ("ip", "443/TCP") },
            Allowed(policies).ToHashSet());
        AssertAddressesAreEditablePlaceholders(policies);
    }

    /// <summary>No ipBlock opens the internet; as shipped, each is one address of the documentation range, to be edited.</summary>
    private static void AssertAddressesAreEditablePlaceholders(IEnumerable<V1NetworkPolicy> policies)
    {
        var documentation = IPNetwork.Parse("192.0.2.0/24");
        foreach (var block in policies.SelectMany(p => p.Spec.Egress).SelectMany(r => r.To).Select(p => p.IpBlock).Where(b => b is not null))
        {
            var network = IPNetwork.Parse(block.Cidr);
            Assert.True(network.PrefixLength == 32 && documentation.Contains(network.BaseAddress), $"ipBlock {block.Cidr} is not a one-address placeholder to edit.");
        }
    }
}
