using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using Babel.Grains.Engine;
using Babel.Silo;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Xunit;

namespace Babel.UnitTests.Deploy;

/// <summary>
/// deploy/k8s parses into typed Kubernetes objects, its overlays render, and it agrees with the code: probe paths, setting
/// names, ports, the metrics the alerts use, and a non-root container with a read-only root filesystem.
/// </summary>
public partial class ManifestTests
{
    private static readonly string Root = FindRoot();

    /// <summary>The repository root (the folder holding Distributed.sln).</summary>
    internal static string RepositoryRoot => Root;
    private static readonly string K8s = Path.Combine(Root, "deploy", "k8s");

    // Custom resources of the Prometheus Operator: KubernetesClient has no types for them, so they are checked as text.
    private static readonly HashSet<string> CustomResourceFiles = ["prometheus-rules.yaml", "servicemonitor.yaml"];

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Distributed.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No Distributed.sln above {AppContext.BaseDirectory}.");
    }

    private static IEnumerable<string> ManifestFiles() =>
        Directory.EnumerateFiles(K8s, "*.yaml", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) != "kustomization.yaml" && !CustomResourceFiles.Contains(Path.GetFileName(f)))
            .Order(StringComparer.Ordinal);

    private static List<object> LoadStrict(string yaml) => [.. KubernetesYaml.LoadAllFromString(yaml, strict: true)];

    private static List<object> LoadFile(params string[] relative) => LoadStrict(File.ReadAllText(Path.Combine([K8s, .. relative])));

    private static V1Deployment BaseDeployment() => Assert.Single(LoadFile("base", "deployment.yaml").OfType<V1Deployment>());

    private static V1Container Silo(V1Deployment deployment) => Assert.Single(deployment.Spec.Template.Spec.Containers);

    private static string EnvName(string section, string property) => section.Replace(":", "__", StringComparison.Ordinal) + "__" + property;

    private static int HttpPort() => new Uri(new HttpOptions().Urls).Port;

    [Fact]
    public void Every_manifest_parses_strictly_into_typed_objects()
    {
        var files = ManifestFiles().ToList();
        Assert.Contains(files, f => f.EndsWith(Path.Combine("base", "deployment.yaml"), StringComparison.Ordinal));
        foreach (var file in files)
        {
            var objects = LoadStrict(File.ReadAllText(file));
            Assert.True(objects.Count > 0, $"{file} holds no object.");
            Assert.All(objects, o => Assert.IsAssignableFrom<IKubernetesObject>(o));
        }
        foreach (var name in CustomResourceFiles)
        {
            var text = File.ReadAllText(Path.Combine(K8s, "monitoring", name));
            Assert.Contains("apiVersion: monitoring.coreos.com/v1", text, StringComparison.Ordinal);
            var document = KubernetesYaml.Deserialize<Dictionary<string, object>>(text);
            Assert.Equal("babel", Assert.IsType<Dictionary<object, object>>(document["metadata"], exactMatch: false)["namespace"]);
        }
    }

    [Fact]
    public void Overlays_render_with_kubectl_and_parse()
    {
        // The other tests check the files themselves, so without kubectl only the rendering is left out.
        var kubectl = FindKubectl();
        if (kubectl is null)
            return;
        foreach (var (overlay, tag) in new[] { ("cpu", "cpu"), ("gpu", "cuda") })
        {
            var objects = LoadStrict(Kustomize(kubectl, Path.Combine(K8s, "overlays", overlay)));
            var deployment = Assert.Single(objects.OfType<V1Deployment>());
            Assert.Equal($"babel-silo:{tag}", Silo(deployment).Image);
            Assert.All(objects.Cast<IKubernetesObject<V1ObjectMeta>>().Where(o => o.Kind != "Namespace"), o => Assert.Equal("babel", o.Metadata.NamespaceProperty));
            Assert.DoesNotContain(objects, o => o is V1Secret);
            Assert.Contains(objects, o => o is V1ServiceAccount);
            Assert.Contains(objects, o => o is V1Role);
            Assert.Contains(objects, o => o is V1RoleBinding);
            Assert.Contains(objects, o => o is V1PodDisruptionBudget);
            Assert.Contains(objects, o => o is V1NetworkPolicy);
            var limits = Silo(deployment).Resources.Limits;
            if (overlay == "gpu")
            {
                Assert.Equal(new ResourceQuantity("1"), limits["nvidia.com/gpu"]);
                Assert.NotEmpty(deployment.Spec.Template.Spec.NodeSelector);
                Assert.Contains(deployment.Spec.Template.Spec.Tolerations, t => t.Key == "nvidia.com/gpu");
            }
            else
            {
                Assert.False(limits.ContainsKey("nvidia.com/gpu"));
            }
        }
        var monitoring = Kustomize(kubectl, Path.Combine(K8s, "monitoring"));
        var dashboard = Assert.Single(LoadStrict(string.Join("\n---\n", monitoring.Split("\n---\n").Where(d => d.Contains("kind: ConfigMap", StringComparison.Ordinal)))).OfType<V1ConfigMap>());
        Assert.Equal("1", dashboard.Metadata.Labels["grafana_dashboard"]);
        Assert.Equal("babel", dashboard.Metadata.NamespaceProperty);
        Assert.Equal(File.ReadAllText(Path.Combine(K8s, "monitoring", "grafana-dashboard.json")), Assert.Single(dashboard.Data).Value);
    }

    private static string? FindKubectl() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Append("/usr/bin").Append("/usr/local/bin")
            .Select(dir => Path.Combine(dir, "kubectl"))
            .FirstOrDefault(File.Exists);

    private static string Kustomize(string kubectl, string folder)
    {
        var start = new ProcessStartInfo(kubectl) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("kustomize");
        start.ArgumentList.Add(folder);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(60)), $"kubectl kustomize {folder} did not finish.");
        Assert.True(process.ExitCode == 0, $"kubectl kustomize {folder} failed: {error.Result}");
        return output.Result;
    }

    [Fact]
    public void Client_job_runs_babel_profile_against_the_silos_with_its_own_narrow_storage_secret()
    {
        var job = Assert.Single(LoadFile("examples", "profile-job.yaml").OfType<V1Job>());
        var pod = job.Spec.Template.Spec;
        var client = Assert.Single(pod.Containers);
        Assert.Equal("babel", job.Metadata.NamespaceProperty);
        Assert.StartsWith("babel-client:", client.Image, StringComparison.Ordinal);
        Assert.Equal("profile", client.Args[0]);
        Assert.Contains("--cluster", client.Args);
        foreach (var required in new[] { "--model", "--corpus", "--out" })
            Assert.Contains(required, client.Args);

        // The same cluster as the silos, but not their account key: a SAS per service from the client's own Secret.
        var env = client.Env.ToDictionary(e => e.Name);
        var siloEnv = Silo(BaseDeployment()).Env.ToDictionary(e => e.Name);
        var clusterId = EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.ClusterId));
        Assert.Equal(BaseDeployment().Spec.Template.Metadata.Labels[KubernetesHosting.ClusterIdLabel], env[clusterId].Value);
        Assert.False(env.ContainsKey(StorageConnectionString.Key), "The client Job must not get the silos' shared connection string.");
        var siloSecret = siloEnv[StorageConnectionString.Key].ValueFrom.SecretKeyRef.Name;
        Assert.Equal(
            [("babel-client-storage", "blob-connection-string"), ("babel-client-storage", "table-connection-string")],
            new[] { StorageConnectionString.BlobKey, StorageConnectionString.TableKey }.Select(k => (env[k].ValueFrom.SecretKeyRef.Name, env[k].ValueFrom.SecretKeyRef.Key)));
        Assert.NotEqual(siloSecret, env[StorageConnectionString.TableKey].ValueFrom.SecretKeyRef.Name);

        // The network policy lets this pod reach the gateway port, which the gateway Service exposes.
        var policy = Assert.Single(LoadFile("base", "networkpolicy.yaml").OfType<V1NetworkPolicy>());
        var gateway = new BabelClusterOptions().GatewayPort;
        Assert.Contains(policy.Spec.Ingress, rule =>
            rule.Ports.Any(p => p.Port.Value == gateway.ToString(System.Globalization.CultureInfo.InvariantCulture))
            && rule.FromProperty.Any(peer => peer.PodSelector?.MatchLabels is { } labels && peer.NamespaceSelector is null
                && labels.All(l => job.Spec.Template.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value)));
        var service = LoadFile("base", "services.yaml").OfType<V1Service>().Single(s => s.Metadata.Name == "babel-gateway");
        Assert.Equal(gateway, Assert.Single(service.Spec.Ports).Port);

        // Non-root on a read-only root filesystem, with every written path on a volume.
        Assert.True(client.SecurityContext.ReadOnlyRootFilesystem);
        Assert.True(client.SecurityContext.RunAsNonRoot);
        Assert.Equal("Never", pod.RestartPolicy);
        var mounted = client.VolumeMounts.Select(m => m.MountPath).ToList();
        Assert.Contains(env["TMPDIR"].Value, mounted);
        Assert.Contains(client.WorkingDir, mounted);
        var output = client.Args[client.Args.IndexOf("--out") + 1];
        Assert.Contains(mounted, m => output.StartsWith(m + "/", StringComparison.Ordinal));
        Assert.All(client.VolumeMounts, m => Assert.Single(pod.Volumes, v => v.Name == m.Name));
    }

    [Fact]
    public void Secret_examples_are_not_deployed_and_hold_only_placeholders()
    {
        Assert.DoesNotContain("secret", File.ReadAllText(Path.Combine(K8s, "base", "kustomization.yaml")).Split('#')[0], StringComparison.OrdinalIgnoreCase);
        var secrets = LoadFile("base", "secret.example.yaml").OfType<V1Secret>().ToDictionary(s => s.Metadata.Name);
        // Every Secret a manifest reads (the silos', the client Job's, the TLS certificate) is shown, with the keys it reads.
        var referenced = ManifestFiles().SelectMany(f => LoadStrict(File.ReadAllText(f)))
            .SelectMany(o => o switch { V1Deployment d => [d.Spec.Template.Spec], V1Job j => new[] { j.Spec.Template.Spec }, _ => [] })
            .SelectMany(pod => pod.Containers.SelectMany(c => (c.Env ?? []).Where(e => e.ValueFrom?.SecretKeyRef is not null).Select(e => (e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key))
                .Concat(SecretFilesRead(pod, c))))
            .ToHashSet();
        Assert.Equal(["babel-client-storage", "babel-storage", "babel-tls"], referenced.Select(r => r.Item1).Distinct().Order(StringComparer.Ordinal));
        foreach (var (name, key) in referenced)
            Assert.True(secrets.TryGetValue(name, out var secret) && secret.StringData.ContainsKey(key), $"secret.example.yaml does not show key {key} of Secret {name}.");
        Assert.All(secrets.Values.SelectMany(s => s.StringData.Values), value => Assert.Matches("^<[A-Z_]+>$", value));
        Assert.Equal("kubernetes.io/tls", secrets["babel-tls"].Type);
    }

    [Fact]
    public void Probes_and_scrape_paths_are_the_endpoints_the_silo_maps()
    {
        var deployment = BaseDeployment();
        var silo = Silo(deployment);
        Assert.Equal(HealthEndpoints.Live, silo.LivenessProbe.HttpGet.Path);
        Assert.Equal(HealthEndpoints.Ready, silo.ReadinessProbe.HttpGet.Path);
        foreach (var probe in new[] { silo.LivenessProbe, silo.ReadinessProbe, silo.StartupProbe }.Where(p => p is not null))
            Assert.Equal(HttpPort(), ContainerPort(silo, probe.HttpGet.Port));

        var annotations = deployment.Spec.Template.Metadata.Annotations;
        Assert.Equal("true", annotations["prometheus.io/scrape"]);
        Assert.Equal(HttpPort().ToString(System.Globalization.CultureInfo.InvariantCulture), annotations["prometheus.io/port"]);
        Assert.Equal(HealthEndpoints.Metrics, annotations["prometheus.io/path"]);
        Assert.Matches($@"path:\s*{Regex.Escape(HealthEndpoints.Metrics)}\s", File.ReadAllText(Path.Combine(K8s, "monitoring", "servicemonitor.yaml")));
    }

    private static int ContainerPort(V1Container container, IntOrString port) =>
        int.TryParse(port.Value, out var number) ? number : Assert.Single(container.Ports, p => p.Name == port.Value).ContainerPort;

    [Fact]
    public void Environment_names_bind_to_the_silo_options_and_the_values_validate()
    {
        var env = Silo(BaseDeployment()).Env.ToDictionary(e => e.Name);
        using var scratch = new ScratchFolder();

        Assert.Equal("Cluster", env[EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.Mode))].Value);
        Assert.True(env.ContainsKey(EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.ClusterId))));
        Assert.True(env.ContainsKey(EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.ServiceId))));
        Assert.Equal("status.podIP", env[EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.AdvertisedAddress))].ValueFrom.FieldRef.FieldPath);
        // Pods must reach each other: the silo listens on the pod IP, not on its default, loopback.
        Assert.Equal("status.podIP", env[EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.ListenAddress))].ValueFrom.FieldRef.FieldPath);
        Assert.Equal("metadata.name", env["POD_NAME"].ValueFrom.FieldRef.FieldPath);
        Assert.Equal("metadata.namespace", env["POD_NAMESPACE"].ValueFrom.FieldRef.FieldPath);
        var secret = env[StorageConnectionString.Key].ValueFrom.SecretKeyRef;
        Assert.Equal(("babel-storage", "connection-string"), (secret.Name, secret.Key));
        // The workers' artifact cache defaults to $TMPDIR/babel-artifacts: TMPDIR must be the writable emptyDir.
        Assert.False(env.ContainsKey(EnvName(WorkerOptions.Section, nameof(WorkerOptions.CacheFolder))));
        var tmp = Assert.Single(Silo(BaseDeployment()).VolumeMounts, m => m.MountPath == env["TMPDIR"].Value);
        Assert.NotNull(Assert.Single(BaseDeployment().Spec.Template.Spec.Volumes, v => v.Name == tmp.Name).EmptyDir);
        var urls = env[EnvName(HttpOptions.Section, nameof(HttpOptions.Urls))].Value;
        Assert.Equal(HttpPort(), new Uri(urls).Port);

        // Every Babel__X__Y variable names a property of the options bound from Babel:X.
        var sections = new Dictionary<string, Type>
        {
            [BabelClusterOptions.Section] = typeof(BabelClusterOptions),
            [WorkerOptions.Section] = typeof(WorkerOptions),
            [HttpOptions.Section] = typeof(HttpOptions),
            [BabelTlsOptions.Section] = typeof(BabelTlsOptions),
        };
        foreach (var name in env.Keys.Where(n => n.StartsWith("Babel__", StringComparison.Ordinal)))
        {
            var parts = name.Split("__");
            Assert.True(parts.Length == 3, $"{name} is not Babel__Section__Setting.");
            Assert.True(sections.TryGetValue($"{parts[0]}:{parts[1]}", out var type), $"{name} names no options section.");
            Assert.True(type.GetProperty(parts[2]) is not null, $"{name}: {type.Name} has no property {parts[2]}.");
        }

        // Orleans' Kubernetes hosting: the pod variables it reads, and the ids taken from the labels it matches pods by.
        var labels = BaseDeployment().Spec.Template.Metadata.Labels;
        Assert.Equal($"metadata.labels['{KubernetesHosting.ClusterIdLabel}']", env[EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.ClusterId))].ValueFrom.FieldRef.FieldPath);
        Assert.Equal($"metadata.labels['{KubernetesHosting.ServiceIdLabel}']", env[EnvName(BabelClusterOptions.Section, nameof(BabelClusterOptions.ServiceId))].ValueFrom.FieldRef.FieldPath);
        Assert.Equal("metadata.name", env[KubernetesHosting.PodNameVariable].ValueFrom.FieldRef.FieldPath);
        Assert.Equal("metadata.namespace", env[KubernetesHosting.PodNamespaceVariable].ValueFrom.FieldRef.FieldPath);
        Assert.Equal("status.podIP", env[Orleans.Hosting.Kubernetes.KubernetesHostingOptions.PodIPEnvironmentVariable].ValueFrom.FieldRef.FieldPath);

        // Every value as Kubernetes fills it in for a pod of this template (downward API, secret, the TLS Secret's files, made
        // here under the names the Secret volume has) passes the silo's validators.
        var tlsMount = MountedSecretFolder(BaseDeployment().Spec.Template.Spec, Silo(BaseDeployment()), "babel-tls");
        using var certificate = Babel.Tests.Security.TestCertificates.SelfSigned("babel-cluster");
        Babel.Tests.Security.TestCertificates.WritePem(certificate, scratch.Path);
        string? Rebase(string? value) => value is not null && value.StartsWith(tlsMount + "/", StringComparison.Ordinal) ? Path.Combine(scratch.Path, value[(tlsMount.Length + 1)..]) : value;
        string? Resolve(V1EnvVar e) => Rebase(e.Value) ?? e.ValueFrom switch
        {
            { FieldRef.FieldPath: "metadata.name" } => "babel-silo-5d9c7-abcde",
            { FieldRef.FieldPath: "metadata.namespace" } => "babel",
            { FieldRef.FieldPath: "status.podIP" } => "10.0.0.5",
            { FieldRef.FieldPath: var path } when path.StartsWith("metadata.labels['", StringComparison.Ordinal) => labels[path["metadata.labels['".Length..^2]],
            { SecretKeyRef: not null } => "UseDevelopmentStorage=true",
            _ => throw new InvalidOperationException($"{e.Name} has a source the test does not know."),
        };
        var values = env.Values.Select(e => KeyValuePair.Create(e.Name.Replace("__", ":", StringComparison.Ordinal), Resolve(e)));
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
        var cluster = configuration.GetSection(BabelClusterOptions.Section).Get<BabelClusterOptions>()!;
        Assert.Equal(ClusterMode.Cluster, cluster.Mode);
        Assert.Equal((labels[KubernetesHosting.ClusterIdLabel], labels[KubernetesHosting.ServiceIdLabel]), (cluster.ClusterId, cluster.ServiceId));
        Assert.True(cluster.KubernetesHosting);
        Assert.True(KubernetesHosting.IsEnabled(cluster, configuration));
        Assert.True(new BabelClusterOptionsValidator(configuration).Validate(Options.DefaultName, cluster).Succeeded);
        Assert.True(new HttpOptionsValidator().Validate(null, configuration.GetSection(HttpOptions.Section).Get<HttpOptions>()!).Succeeded);
        Assert.True(new WorkerOptionsValidator().Validate(null, configuration.GetSection(WorkerOptions.Section).Get<WorkerOptions>() ?? new WorkerOptions()).Succeeded);
        var tls = configuration.GetSection(BabelTlsOptions.Section).Get<BabelTlsOptions>()!;
        Assert.True(tls.Enabled);
        var tlsResult = new BabelTlsOptionsValidator(configuration).Validate(null, tls);
        Assert.True(tlsResult.Succeeded, string.Join(" ", tlsResult.Failures ?? []));
    }

    [Fact]
    public void Ports_are_the_options_defaults_and_the_services_expose_them()
    {
        var defaults = new BabelClusterOptions();
        var ports = Silo(BaseDeployment()).Ports.ToDictionary(p => p.Name, p => p.ContainerPort);
        Assert.Equal(defaults.SiloPort, ports["silo"]);
        Assert.Equal(defaults.GatewayPort, ports["gateway"]);
        Assert.Equal(HttpPort(), ports["http"]);

        var services = LoadFile("base", "services.yaml").OfType<V1Service>().ToDictionary(s => s.Metadata.Name);
        Assert.Equal(defaults.GatewayPort, Assert.Single(services["babel-gateway"].Spec.Ports).Port);
        Assert.Equal(HttpPort(), Assert.Single(services["babel-metrics"].Spec.Ports).Port);

        var policy = Assert.Single(LoadFile("base", "networkpolicy.yaml").OfType<V1NetworkPolicy>());
        var allowed = policy.Spec.Ingress.SelectMany(rule => rule.Ports).Select(p => int.Parse(p.Port.Value, System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
        Assert.Superset(allowed, new HashSet<int> { defaults.SiloPort, defaults.GatewayPort, HttpPort() });

        var pdb = Assert.Single(LoadFile("base", "pdb.yaml").OfType<V1PodDisruptionBudget>());
        Assert.Equal("1", pdb.Spec.MaxUnavailable.Value);

        var rbac = LoadFile("base", "rbac.yaml");
        var role = Assert.Single(rbac.OfType<V1Role>());
        var rule = Assert.Single(role.Rules);
        Assert.Equal([""], rule.ApiGroups);
        Assert.Equal(["pods"], rule.Resources);
        Assert.Equal(KubernetesHostingVerbsBabelUses(), rule.Verbs.Order(StringComparer.Ordinal));
        var binding = Assert.Single(rbac.OfType<V1RoleBinding>());
        Assert.Equal(role.Metadata.Name, binding.RoleRef.Name);
        Assert.Equal(BaseDeployment().Spec.Template.Spec.ServiceAccountName, Assert.Single(binding.Subjects).Name);
    }

    /// <summary>The pod verbs Microsoft.Orleans.Hosting.Kubernetes needs, from the KubernetesClient methods its assembly calls.</summary>
    private static List<string> OrleansKubernetesHostingVerbs()
    {
        var assembly = typeof(Orleans.Hosting.Kubernetes.KubernetesHostingOptions).Assembly.Location;
        using var pe = new System.Reflection.PortableExecutable.PEReader(File.OpenRead(assembly));
        var metadata = System.Reflection.Metadata.PEReaderExtensions.GetMetadataReader(pe);
        var called = metadata.MemberReferences.Select(h => metadata.GetString(metadata.GetMemberReference(h).Name)).Where(n => n.Contains("NamespacedPod", StringComparison.Ordinal)).ToHashSet();
        var verbs = new Dictionary<string, string[]>
        {
            ["ReadNamespacedPod"] = ["get"],
            ["ListNamespacedPod"] = ["list"],
            ["WatchListNamespacedPod"] = ["list", "watch"],
            ["PatchNamespacedPod"] = ["patch"],
            ["DeleteNamespacedPod"] = ["delete"],
        };
        var unknown = called.Where(c => !verbs.Keys.Any(k => c.StartsWith(k, StringComparison.Ordinal))).ToList();
        Assert.True(unknown.Count == 0, $"Microsoft.Orleans.Hosting.Kubernetes calls {string.Join(", ", unknown)}: add its verb to this map and to base/rbac.yaml.");
        // A watch is a list with watch=true, whichever method the package uses for it.
        var needed = verbs.Where(v => called.Any(c => c.StartsWith(v.Key, StringComparison.Ordinal))).SelectMany(v => v.Value)
            .Concat(called.Any(c => c.Contains("ListNamespacedPodWithHttpMessages", StringComparison.Ordinal)) ? ["watch"] : []);
        return [.. needed.Distinct().Order(StringComparer.Ordinal)];
    }

    [Fact]
    public void Container_runs_as_non_root_with_a_read_only_root_filesystem()
    {
        var deployment = BaseDeployment();
        var pod = deployment.Spec.Template.Spec;
        var silo = Silo(deployment);
        var context = silo.SecurityContext;
        Assert.True(context.RunAsNonRoot);
        Assert.Equal(10001, context.RunAsUser);
        Assert.True(context.ReadOnlyRootFilesystem);
        Assert.False(context.AllowPrivilegeEscalation);
        Assert.Equal(["ALL"], context.Capabilities.Drop);
        Assert.True(pod.SecurityContext.RunAsNonRoot);
        Assert.Equal("babel-silo", pod.ServiceAccountName);
        Assert.NotNull(silo.Resources.Requests);
        Assert.NotNull(silo.Resources.Limits);

        var tmp = Assert.Single(silo.VolumeMounts, m => m.MountPath == "/tmp");
        Assert.NotNull(Assert.Single(pod.Volumes, v => v.Name == tmp.Name).EmptyDir);

        var dockerfile = File.ReadAllText(Path.Combine(Root, "deploy", "docker", "Dockerfile"));
        Assert.Matches(@"(?m)^USER 10001", dockerfile);
        Assert.Contains("dotnet publish src/Silo -c Release", dockerfile, StringComparison.Ordinal);
        Assert.Contains("-p:LibTorchPackage=", dockerfile, StringComparison.Ordinal);
        Assert.Contains($"\"{typeof(HealthEndpoints).Assembly.GetName().Name}.dll\"", dockerfile, StringComparison.Ordinal);

        // Each image patches TorchSharp's native library while its folder is writable (as root, before USER), so the
        // read-only root filesystem is never written to; the client Job's image is the `client` target.
        var stages = Regex.Split(dockerfile, @"(?m)^FROM ").Skip(1).ToDictionary(stage => stage.Split('\n')[0].Split(" AS ")[^1].Trim());
        foreach (var name in new[] { "silo", "client" })
        {
            var stage = stages[name];
            var prepare = stage.IndexOf(SiloProcess.PrepareNativeArgument, StringComparison.Ordinal);
            Assert.True(prepare > 0, $"Stage {name} does not run {SiloProcess.PrepareNativeArgument}.");
            Assert.True(prepare < stage.IndexOf("\nUSER 10001", StringComparison.Ordinal), $"Stage {name} prepares the native library after switching to the non-root user.");
        }
        Assert.Equal("silo", stages.Keys.Last());
        Assert.Contains("--target client", dockerfile, StringComparison.Ordinal);
        Assert.StartsWith("babel-client:", Assert.Single(LoadFile("examples", "profile-job.yaml").OfType<V1Job>()).Spec.Template.Spec.Containers[0].Image, StringComparison.Ordinal);
    }

    /// <summary>The <c>babel_*</c> metrics of README.md's metric table.</summary>
    internal static HashSet<string> DocumentedMetrics() =>
        ReadmeMetric().Matches(File.ReadAllText(Path.Combine(Root, "README.md"))).Select(m => m.Groups[1].Value).ToHashSet();

    /// <summary>A histogram's name without the <c>_bucket</c>/<c>_sum</c>/<c>_count</c> of its series.</summary>
    internal static string WithoutHistogramSuffix(string series) => HistogramSeries().Replace(series, "");

    [Fact]
    public void Alert_metrics_are_in_the_readme_table_and_defined_by_JobMetrics_or_DistillationMetrics()
    {
        var defined = JobMetricNames();
        var distillation = DistillationMetricNames();
        var documented = DocumentedMetrics();
        Assert.Equal(defined.Union(distillation).Union(ServingMetricNames()).Union(TrainingMetricNames()).Order(StringComparer.Ordinal), documented.Order(StringComparer.Ordinal));

        var rules = File.ReadAllText(Path.Combine(K8s, "monitoring", "prometheus-rules.yaml"));
        var used = BabelSeries().Matches(rules).Select(m => HistogramSeries().Replace(m.Value, "")).ToHashSet();
        Assert.Contains("babel_shards_failed_total", used);
        Assert.Contains("babel_shards_completed_total", used);
        foreach (var name in used)
        {
            Assert.True(documented.Contains(name), $"{name} is not in README.md's metric table.");
            Assert.True(defined.Contains(name) || distillation.Contains(name), $"{name} is neither a JobMetrics nor a DistillationMetrics instrument.");
        }
        foreach (var alert in new[] { "BabelSiloDown", "BabelShardFailures", "BabelJobStalled", "BabelJobFailed", "BabelTeacherFailures", "BabelTeacherThrottled" })
            Assert.Contains($"alert: {alert}", rules, StringComparison.Ordinal);
    }

    /// <summary>The Prometheus names OpenTelemetry's exporter gives the data-parallel training instruments.</summary>
    private static HashSet<string> TrainingMetricNames()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        using var metrics = new Grains.Training.TrainingMetrics(services.GetRequiredService<IMeterFactory>());
        var names = typeof(Grains.Training.TrainingMetrics).GetProperties().Where(p => typeof(Instrument).IsAssignableFrom(p.PropertyType))
            .Select(p => PrometheusName((Instrument)p.GetValue(metrics)!)).ToHashSet();
        Assert.Equal(5, names.Count);
        return names;
    }

    /// <summary>The Prometheus names OpenTelemetry's exporter gives JobMetrics' instruments.</summary>
    private static HashSet<string> JobMetricNames()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        using var metrics = new JobMetrics(services.GetRequiredService<IMeterFactory>());
        var names = new HashSet<string>();
        foreach (var property in typeof(JobMetrics).GetProperties().Where(p => typeof(Instrument).IsAssignableFrom(p.PropertyType)))
        {
            names.Add(PrometheusName((Instrument)property.GetValue(metrics)!));
        }
        Assert.Equal(9, names.Count);
        return names;
    }

    /// <summary>The Prometheus names of the distillation instruments (static fields of <see cref="Babel.Modeling.Distillation.DistillationMetrics"/>).</summary>
    private static HashSet<string> DistillationMetricNames()
    {
        var names = typeof(Babel.Modeling.Distillation.DistillationMetrics).GetFields()
            .Where(f => typeof(Instrument).IsAssignableFrom(f.FieldType))
            .Select(f => PrometheusName((Instrument)f.GetValue(null)!))
            .ToHashSet();
        Assert.Equal(10, names.Count);
        return names;
    }

    /// <summary>The Prometheus names of <c>babel serve</c>'s instruments.</summary>
    private static HashSet<string> ServingMetricNames()
    {
        var names = typeof(Babel.Silo.Serving.ServingMetrics).GetFields()
            .Where(f => typeof(Instrument).IsAssignableFrom(f.FieldType))
            .Select(f => PrometheusName((Instrument)f.GetValue(null)!))
            .ToHashSet();
        Assert.Equal(5, names.Count);
        return names;
    }

    private static string PrometheusName(Instrument instrument)
    {
        var name = instrument.Name.Replace('.', '_');
        if (instrument.Unit == "s")
            name += "_seconds";
        if (instrument.GetType().IsGenericType && instrument.GetType().GetGenericTypeDefinition() == typeof(Counter<>))
            name += "_total";
        return name;
    }

    [GeneratedRegex(@"(?m)^\|\s*`(babel_[a-z_]+)(?:\{[^}]*\})?`\s*\|")]
    private static partial Regex ReadmeMetric();

    [GeneratedRegex(@"\bbabel_[a-z_]+")]
    private static partial Regex BabelSeries();

    [GeneratedRegex("_(bucket|sum|count)$")]
    private static partial Regex HistogramSeries();
}
