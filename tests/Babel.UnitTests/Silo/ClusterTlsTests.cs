using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Babel.Silo;
using Babel.Storage;
using Babel.Tests.Security;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Xunit;

namespace Babel.UnitTests.Silo;

/// <summary>
/// Mutual TLS on the silo's gateway (Babel:Tls, Microsoft.Orleans.Connections.Security): a real embedded silo with TLS serves a
/// client configured by the same settings (<see cref="ClusterTls.UseBabelTls(IClientBuilder, IConfiguration)"/>, what
/// <c>babel --cluster</c> calls) and drops a plaintext client and one with another certificate. Certificates are made here.
/// </summary>
public sealed class ClusterTlsTests : IDisposable
{
    private const string Password = "pfx-password-of-the-test";

    /// <summary>Bound for one client's attempt: a refused handshake fails at once, far inside it.</summary>
    private static readonly TimeSpan ClientTimeout = TimeSpan.FromSeconds(20);

    private readonly ScratchFolder _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task A_TLS_silo_serves_a_client_with_its_certificate_and_drops_plaintext_and_foreign_certificate_clients()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var certificate = TestCertificates.SelfSigned("babel-cluster");
        // The silo reads PEM files as a Kubernetes TLS Secret mounts them; the client the same certificate as a PFX with a password.
        var (crt, key) = TestCertificates.WritePem(certificate, _scratch.Combine("tls"));
        var pfx = TestCertificates.WritePfx(certificate, _scratch.Combine("client.pfx"), Password);
        var (clusterId, gateway) = (NewClusterId(), LoopbackPorts.Free());
        await using var silo = await EmbeddedSiloHost.StartAsync(_scratch, cpuSlots: 0, timeout.Token, settings: Settings(clusterId, gateway,
            ("Babel:Tls:Enabled", "true"), ("Babel:Tls:CertificatePath", crt), ("Babel:Tls:KeyPath", key)));

        var hosts = await ActiveSilosAsync(clusterId, gateway, ("Babel:Tls:Enabled", "true"), ("Babel:Tls:CertificatePath", pfx), (BabelTlsOptions.PasswordKey, Password));
        Assert.Equal(SiloStatus.Active, Assert.Single(hosts).Value);

        await AssertRefusedAsync(clusterId, gateway);
        using var foreign = TestCertificates.SelfSigned("babel-cluster");
        var (foreignCrt, foreignKey) = TestCertificates.WritePem(foreign, _scratch.Combine("foreign"));
        await AssertRefusedAsync(clusterId, gateway, ("Babel:Tls:Enabled", "true"), ("Babel:Tls:CertificatePath", foreignCrt), ("Babel:Tls:KeyPath", foreignKey));

        // The silo still serves its own clients after refusing the others.
        Assert.Single(await ActiveSilosAsync(clusterId, gateway, ("Babel:Tls:Enabled", "true"), ("Babel:Tls:CertificatePath", crt), ("Babel:Tls:KeyPath", key)));
        await silo.StopAsync(timeout.Token);
    }

    [Fact]
    public async Task With_an_authority_a_silo_serves_a_client_with_another_certificate_it_issued_and_drops_one_it_did_not()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var authority = TestCertificates.Authority("babel-ca");
        using var siloCertificate = TestCertificates.IssuedBy(authority, "babel-silo");
        using var clientCertificate = TestCertificates.IssuedBy(authority, "babel-client");
        using var otherAuthority = TestCertificates.Authority("babel-ca");
        using var outsider = TestCertificates.IssuedBy(otherAuthority, "babel-client");
        var ca = TestCertificates.WriteCertificatePem(authority, _scratch.Combine("ca.crt"));
        var (siloCrt, siloKey) = TestCertificates.WritePem(siloCertificate, _scratch.Combine("silo"));
        var (clientCrt, clientKey) = TestCertificates.WritePem(clientCertificate, _scratch.Combine("client"));
        var (outsiderCrt, outsiderKey) = TestCertificates.WritePem(outsider, _scratch.Combine("outsider"));
        var (clusterId, gateway) = (NewClusterId(), LoopbackPorts.Free());
        await using var silo = await EmbeddedSiloHost.StartAsync(_scratch, cpuSlots: 0, timeout.Token, settings: Settings(clusterId, gateway,
            ("Babel:Tls:Enabled", "true"), ("Babel:Tls:CertificatePath", siloCrt), ("Babel:Tls:KeyPath", siloKey), ("Babel:Tls:CertificateAuthorityPath", ca)));

        Assert.Single(await ActiveSilosAsync(clusterId, gateway,
            ("Babel:Tls:Enabled", "true"), ("Babel:Tls:CertificatePath", clientCrt), ("Babel:Tls:KeyPath", clientKey), ("Babel:Tls:CertificateAuthorityPath", ca)));
        // The outsider trusts the silo's authority, but the silo does not trust the outsider's.
        await AssertRefusedAsync(clusterId, gateway,
            ("Babel:Tls:Enabled", "true"), ("Babel:Tls:CertificatePath", outsiderCrt), ("Babel:Tls:KeyPath", outsiderKey), ("Babel:Tls:CertificateAuthorityPath", ca));
        await silo.StopAsync(timeout.Token);
    }

    [Fact]
    public void A_peer_is_accepted_only_with_the_same_certificate_or_one_chaining_to_the_authority()
    {
        using var authority = TestCertificates.Authority("babel-ca");
        using var silo = TestCertificates.IssuedBy(authority, "babel-silo");
        using var client = TestCertificates.IssuedBy(authority, "babel-client");
        using var otherAuthority = TestCertificates.Authority("babel-ca");
        using var outsider = TestCertificates.IssuedBy(otherAuthority, "babel-client");
        using var selfSigned = TestCertificates.SelfSigned("babel-silo");
        using var expired = TestCertificates.SelfSigned("babel-silo", lifetime: TimeSpan.FromMinutes(30));
        // What a peer sends: the certificate without its key.
        static X509Certificate2 Public(X509Certificate2 c) => X509CertificateLoader.LoadCertificate(c.RawData);

        var pinned = new ClusterCertificates(silo, null);
        Assert.True(pinned.Accepts(Public(silo), null, SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.False(pinned.Accepts(Public(client), null, SslPolicyErrors.None));
        Assert.False(new ClusterCertificates(expired, null).Accepts(Public(expired), null, SslPolicyErrors.None));

        var issued = new ClusterCertificates(silo, [Public(authority)]);
        Assert.True(issued.Accepts(Public(client), null, SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.False(issued.Accepts(Public(outsider), null, SslPolicyErrors.None));
        Assert.False(issued.Accepts(Public(selfSigned), null, SslPolicyErrors.None));
    }

    private static string NewClusterId() => $"test-{Guid.NewGuid():N}";

    private static Dictionary<string, string?> Settings(string clusterId, int gatewayPort, params (string Key, string Value)[] tls)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Babel:Cluster:ClusterId"] = clusterId,
            ["Babel:Cluster:GatewayPort"] = gatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        foreach (var (key, value) in tls)
            settings[key] = value;
        return settings;
    }

    /// <summary>Connects a client with <paramref name="settings"/> to the gateway and asks the management grain for the active silos.</summary>
    private static async Task<Dictionary<SiloAddress, SiloStatus>> ActiveSilosAsync(string clusterId, int gatewayPort, params (string Key, string Value)[] settings)
    {
        using var timeout = new CancellationTokenSource(ClientTimeout);
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, (string?)s.Value)));
        builder.UseOrleansClient(client =>
        {
            client.Configure<ClusterOptions>(o => o.ClusterId = clusterId);
            client.UseStaticClustering(new IPEndPoint(IPAddress.Loopback, gatewayPort));
            client.UseBabelTls(builder.Configuration);
            // One attempt: a refused connection fails the start at once instead of being retried.
            client.UseConnectionRetryFilter((_, _) => Task.FromResult(false));
        });
        using var host = builder.Build();
        try
        {
            await host.StartAsync(timeout.Token);
            return await host.Services.GetRequiredService<IClusterClient>().GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true).WaitAsync(timeout.Token);
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
    }

    private static async Task AssertRefusedAsync(string clusterId, int gatewayPort, params (string Key, string Value)[] settings)
    {
        var elapsed = Stopwatch.StartNew();
        var error = await Record.ExceptionAsync(() => ActiveSilosAsync(clusterId, gatewayPort, settings));

        Assert.NotNull(error);
        // Refused by the handshake, not given up on by the test's own timeout.
        Assert.False(error is OperationCanceledException, error.ToString());
        Assert.True(elapsed.Elapsed < ClientTimeout, $"The refusal took {elapsed.Elapsed}.");
    }
}

/// <summary>Bad TLS settings are refused with one sentence naming the setting and the fix, by the silo and by the client.</summary>
public sealed class TlsOptionsTests : IDisposable
{
    private const string Password = "pfx-password-of-the-test";
    private readonly ScratchFolder _scratch = new();

    public void Dispose() => _scratch.Dispose();

    private static ValidateOptionsResult Validate(BabelTlsOptions options, params (string Key, string Value)[] configuration) =>
        new BabelTlsOptionsValidator(new ConfigurationBuilder().AddInMemoryCollection(configuration.Select(c => KeyValuePair.Create(c.Key, (string?)c.Value))).Build())
            .Validate(Options.DefaultName, options);

    [Fact]
    public void Valid_PEM_files_and_a_password_protected_PFX_pass()
    {
        using var certificate = TestCertificates.SelfSigned("babel-cluster");
        var (crt, key) = TestCertificates.WritePem(certificate, _scratch.Combine("tls"));
        var pfx = TestCertificates.WritePfx(certificate, _scratch.Combine("tls.pfx"), Password);

        Assert.True(new BabelTlsOptionsValidator(new ConfigurationBuilder().Build()).Validate(null, new BabelTlsOptions()).Succeeded);
        Assert.True(Validate(new BabelTlsOptions { Enabled = true, CertificatePath = crt, KeyPath = key }).Succeeded);
        Assert.True(Validate(new BabelTlsOptions { Enabled = true, CertificatePath = pfx }, (BabelTlsOptions.PasswordKey, Password)).Succeeded);
    }

    [Fact]
    public void Missing_or_unreadable_files_name_the_setting_and_never_the_password()
    {
        using var certificate = TestCertificates.SelfSigned("babel-cluster");
        var pfx = TestCertificates.WritePfx(certificate, _scratch.Combine("tls.pfx"), Password);
        var missing = _scratch.Combine("nowhere.crt");

        Assert.Equal(["Babel:Tls:Enabled is true but Babel:Tls:CertificatePath is not set; set it to the certificate file (PFX, or PEM such as a Kubernetes TLS Secret's tls.crt)."],
            Validate(new BabelTlsOptions { Enabled = true }).Failures);
        Assert.Equal([$"Babel:Tls:CertificatePath '{missing}' does not exist; mount the file there or correct the path."],
            Validate(new BabelTlsOptions { Enabled = true, CertificatePath = missing }).Failures);
        var wrongPassword = Assert.Single(Validate(new BabelTlsOptions { Enabled = true, CertificatePath = pfx }, (BabelTlsOptions.PasswordKey, "not-" + Password)).Failures!);
        Assert.Equal($"Babel:Tls:CertificatePath '{pfx}' could not be read as a PFX or PEM certificate with its key; check the file, Babel:Tls:KeyPath and the password in BABEL_TLS_CERTIFICATE_PASSWORD.", wrongPassword);
        Assert.DoesNotContain(Password, wrongPassword, StringComparison.Ordinal);
        Assert.Equal([$"Babel:Tls:CertificateAuthorityPath '{missing}' does not exist; mount the file there or correct the path."],
            Validate(new BabelTlsOptions { Enabled = true, CertificatePath = pfx, CertificateAuthorityPath = missing }, (BabelTlsOptions.PasswordKey, Password)).Failures);
    }

    [Fact]
    public void A_certificate_without_key_or_with_the_wrong_usage_or_expired_is_refused_with_the_fix()
    {
        using var certificate = TestCertificates.SelfSigned("babel-cluster");
        var publicOnly = _scratch.Combine("public.pfx");
        File.WriteAllBytes(publicOnly, X509CertificateLoader.LoadCertificate(certificate.RawData).Export(X509ContentType.Pfx, Password));
        using var serverOnly = TestCertificates.SelfSigned("babel-cluster", usages: ["1.3.6.1.5.5.7.3.1"]);
        var (serverOnlyCrt, serverOnlyKey) = TestCertificates.WritePem(serverOnly, _scratch.Combine("server-only"));
        using var expired = TestCertificates.SelfSigned("babel-cluster", lifetime: TimeSpan.FromMinutes(30));
        var (expiredCrt, expiredKey) = TestCertificates.WritePem(expired, _scratch.Combine("expired"));

        Assert.Equal([$"Babel:Tls:CertificatePath '{publicOnly}' has no private key; put the key in the same file or set Babel:Tls:KeyPath to its PEM file."],
            Validate(new BabelTlsOptions { Enabled = true, CertificatePath = publicOnly }, (BabelTlsOptions.PasswordKey, Password)).Failures);
        Assert.Equal([$"The certificate in Babel:Tls:CertificatePath '{serverOnlyCrt}' is not allowed for both server and client authentication, which every silo does; " +
                      "reissue it with both extended key usages (serverAuth and clientAuth) or none."],
            Validate(new BabelTlsOptions { Enabled = true, CertificatePath = serverOnlyCrt, KeyPath = serverOnlyKey }).Failures);
        Assert.Equal([$"The certificate in Babel:Tls:CertificatePath '{expiredCrt}' expired on {expired.NotAfter.ToUniversalTime():u}; renew it."],
            Validate(new BabelTlsOptions { Enabled = true, CertificatePath = expiredCrt, KeyPath = expiredKey }).Failures);
    }

    [Fact]
    public void With_an_authority_the_own_certificate_must_be_issued_by_it()
    {
        using var authority = TestCertificates.Authority("babel-ca");
        using var otherAuthority = TestCertificates.Authority("other-ca");
        using var issued = TestCertificates.IssuedBy(otherAuthority, "babel-silo");
        var ca = TestCertificates.WriteCertificatePem(authority, _scratch.Combine("ca.crt"));
        var (crt, key) = TestCertificates.WritePem(issued, _scratch.Combine("tls"));

        Assert.Equal([$"The certificate in Babel:Tls:CertificatePath '{crt}' is not issued by the authority in Babel:Tls:CertificateAuthorityPath '{ca}'; " +
                      "use a certificate that authority issued, or the authority that issued it."],
            Validate(new BabelTlsOptions { Enabled = true, CertificatePath = crt, KeyPath = key, CertificateAuthorityPath = ca }).Failures);
    }

    [Fact]
    public void A_certificate_given_while_TLS_is_off_is_refused_rather_than_ignored()
    {
        Assert.Equal(["Babel:Tls:CertificatePath is set but Babel:Tls:Enabled is not true, so connections would stay plaintext; set Babel:Tls:Enabled to true, or remove the certificate settings."],
            Validate(new BabelTlsOptions { CertificatePath = "/etc/babel/tls/tls.crt" }).Failures);
    }

    [Fact]
    public void The_silo_refuses_bad_TLS_settings_while_building_and_the_client_as_user_input()
    {
        var missing = _scratch.Combine("tls.crt");
        (string, string?)[] settings = [("Babel:Tls:Enabled", "true"), ("Babel:Tls:CertificatePath", missing)];
        var expected = $"Babel:Tls:CertificatePath '{missing}' does not exist; mount the file there or correct the path.";

        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Item1, s.Item2)));
        Assert.Equal(expected, StartupFailure.Describe(Assert.Throws<OptionsValidationException>(() => builder.AddBabelSilo())));

        var clientBuilder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        clientBuilder.Configuration.AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Item1, s.Item2)));
        var error = Assert.Throws<UserInputException>(() => clientBuilder.UseOrleansClient(client => client.UseBabelTls(clientBuilder.Configuration)));
        Assert.Equal(expected, error.Message);
    }
}
