using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Azure.Data.Tables;
using Azure.Data.Tables.Sas;
using Azure.Storage.Blobs;
using Azure.Storage.Sas;
using Babel.Tests.Security;
using Xunit;
using Xunit.Abstractions;

namespace Babel.FunctionalTests.Cluster;

/// <summary>
/// The security perimeter of a cluster of real silo processes: their ports listen on loopback unless told otherwise,
/// and with TLS the silos form a cluster and run a job for a TLS client that holds only narrow SAS credentials (read on
/// the membership table, read/write on the artifact container), while a plaintext client is refused.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class PerimeterTests(PerplexityInputs inputs, ITestOutputHelper output)
{
    private static readonly TimeSpan _jobTimeout = TimeSpan.FromMinutes(2);
    private const string Password = "pfx-password-of-the-test";

    [Fact]
    public async Task A_cluster_silo_with_default_options_accepts_connections_on_loopback_only()
    {
        await using var cluster = await LocalCluster.StartAsync(silos: 1);
        var silo = Assert.Single(cluster.Silos);
        // Every address of this machine but 127.0.0.1: its interfaces' addresses, and 127.0.0.2, which a socket bound to
        // 0.0.0.0 accepts on Linux and one bound to 127.0.0.1 refuses.
        var others = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == OperationalStatus.Up)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses.Select(a => a.Address))
            .Where(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))
            .Append(IPAddress.Parse("127.0.0.2"))
            .ToList();
        output.WriteLine($"Other addresses: {string.Join(", ", others)}");

        foreach (var port in new[] { silo.SiloPort, silo.GatewayPort })
        {
            Assert.True(await ConnectsAsync(IPAddress.Loopback, port), $"127.0.0.1:{port} refused a connection; the silo is not listening.");
            foreach (var address in others)
                Assert.False(await ConnectsAsync(address, port), $"{address}:{port} accepted a connection; the silo listens beyond loopback.");
        }
    }

    [Fact]
    public async Task TLS_silos_run_a_job_for_a_TLS_client_with_SAS_credentials_and_refuse_a_plaintext_client()
    {
        var certificates = Directory.CreateTempSubdirectory("babel-tls-").FullName;
        try
        {
            using var certificate = TestCertificates.SelfSigned("babel-cluster");
            // Silos read the PEM files a Kubernetes TLS Secret mounts; the client the same certificate as a PFX with a password.
            var (crt, key) = TestCertificates.WritePem(certificate, certificates);
            var pfx = TestCertificates.WritePfx(certificate, Path.Combine(certificates, "client.pfx"), Password);
            await using var cluster = await LocalCluster.StartAsync(silos: 2, new Dictionary<string, string?>
            {
                ["Babel__Tls__Enabled"] = "true",
                ["Babel__Tls__CertificatePath"] = crt,
                ["Babel__Tls__KeyPath"] = key,
            });

            var client = new BabelCli(new Dictionary<string, string?>
            {
                ["BABEL_STORAGE_CONNECTION_STRING"] = null,
                ["BABEL_STORAGE_TABLE_CONNECTION_STRING"] = MembershipReadSas(cluster),
                ["BABEL_STORAGE_BLOB_CONNECTION_STRING"] = await ArtifactContainerSasAsync(cluster),
                ["Babel__Cluster__ClusterId"] = cluster.ClusterId,
                ["Babel__Tls__Enabled"] = "true",
                ["Babel__Tls__CertificatePath"] = pfx,
                ["BABEL_TLS_CERTIFICATE_PASSWORD"] = Password,
            }, inputs.Folder);
            var result = await client.RunAsync(_jobTimeout, [.. inputs.Arguments, "--cluster", "--job-id", "tls-sas"]);
            Report(result);
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.True(JsonNode.DeepEquals(inputs.Reference, JsonNode.Parse(result.Stdout)), $"The TLS cluster's result differs from the embedded run.\n{result}");
            // Both silos ran shards, so they talked to each other over TLS.
            var status = await client.RunAsync(_jobTimeout, "status", "tls-sas", "--cluster", "--format", "json");
            Assert.True(status.ExitCode == 0, status.ToString());
            var workers = JsonNode.Parse(status.Stdout)!["shardDetails"]!.AsArray().Select(s => (string?)s!["worker"]).ToList();
            Assert.All(cluster.Silos, silo => Assert.Contains(workers, w => w!.StartsWith(silo.WorkerPrefix, StringComparison.Ordinal)));

            // The account key is no way around TLS: without it the client is refused, in bounded time, with one sentence.
            var plaintext = await cluster.Cli.RunAsync(_jobTimeout, "status", "--cluster");
            Report(plaintext);
            Assert.True(plaintext.ExitCode == 2, plaintext.ToString());
            Assert.StartsWith("error: Could not reach the Babel cluster", plaintext.Stderr, StringComparison.Ordinal);
            Assert.True(plaintext.Elapsed < TimeSpan.FromSeconds(40), $"It took {plaintext.Elapsed.TotalSeconds:F0} s.");
        }
        finally
        {
            Directory.Delete(certificates, recursive: true);
        }
    }

    /// <summary>A connection string with a SAS that may only read Orleans' membership table, as deploy/k8s/README.md makes one.</summary>
    private static string MembershipReadSas(LocalCluster cluster)
    {
        var table = new TableClient(cluster.Azurite.ConnectionString, "OrleansSiloInstances");
        var sas = table.GenerateSasUri(TableSasPermissions.Read, DateTimeOffset.UtcNow.AddHours(1));
        return $"TableEndpoint=http://127.0.0.1:{cluster.Azurite.TablePort}/{Infrastructure.Azurite.AccountName};SharedAccessSignature={sas.Query.TrimStart('?')}";
    }

    /// <summary>
    /// A connection string with a SAS on the artifact container only (read, add, create, write, delete, list), made after the
    /// container is created with the account key, as deploy/k8s/README.md does.
    /// </summary>
    private static async Task<string> ArtifactContainerSasAsync(LocalCluster cluster)
    {
        var container = new BlobContainerClient(cluster.Azurite.ConnectionString, "babel-artifacts");
        await container.CreateIfNotExistsAsync();
        var permissions = BlobContainerSasPermissions.Read | BlobContainerSasPermissions.Add | BlobContainerSasPermissions.Create
            | BlobContainerSasPermissions.Write | BlobContainerSasPermissions.Delete | BlobContainerSasPermissions.List;
        var sas = container.GenerateSasUri(permissions, DateTimeOffset.UtcNow.AddHours(1));
        return $"BlobEndpoint=http://127.0.0.1:{cluster.Azurite.BlobPort}/{Infrastructure.Azurite.AccountName};SharedAccessSignature={sas.Query.TrimStart('?')}";
    }

    /// <summary>True when a TCP connection to <paramref name="address"/>:<paramref name="port"/> is accepted, false when it is refused.</summary>
    private static async Task<bool> ConnectsAsync(IPAddress address, int port)
    {
        using var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await socket.ConnectAsync(new IPEndPoint(address, port), timeout.Token);
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return false;
        }
    }

    private void Report(CliResult result) => output.WriteLine($"babel: exit code {result.ExitCode} after {result.Elapsed.TotalSeconds:F1} s\n{ChildProcess.Tail(result.Stderr)}");
}
