using System.Net;
using Orleans.Configuration;

namespace Babel.Silo;

/// <summary>
/// Where a silo's silo and gateway ports listen and which address it advertises, from <see cref="BabelClusterOptions"/>:
/// loopback unless <see cref="BabelClusterOptions.ListenAddress"/> says otherwise, in every mode.
/// </summary>
internal static class SiloEndpoints
{
    /// <summary>Whether <paramref name="address"/> means every interface (0.0.0.0 or ::).</summary>
    public static bool IsEveryInterface(IPAddress address) => address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);

    /// <summary>
    /// The address other silos and clients dial: <see cref="BabelClusterOptions.AdvertisedAddress"/>, else the listen address
    /// when it is one address, else loopback in embedded mode; null leaves the choice of the host's address to Orleans.
    /// </summary>
    public static IPAddress? Advertised(BabelClusterOptions cluster)
    {
        if (cluster.AdvertisedAddress is { } advertised)
            return IPAddress.Parse(advertised);
        var listen = IPAddress.Parse(cluster.ListenAddress);
        if (!IsEveryInterface(listen))
            return listen;
        return cluster.Mode == ClusterMode.Embedded ? IPAddress.Loopback : null;
    }

    /// <summary>Sets the silo's <see cref="EndpointOptions"/>: the ports, the advertised address and both listening endpoints.</summary>
    public static void Configure(ISiloBuilder silo, BabelClusterOptions cluster)
    {
        var listen = IPAddress.Parse(cluster.ListenAddress);
        if (Advertised(cluster) is { } advertised)
            silo.ConfigureEndpoints(advertised, cluster.SiloPort, cluster.GatewayPort);
        else
            silo.ConfigureEndpoints(cluster.SiloPort, cluster.GatewayPort);
        // Set explicitly so that nothing (Orleans' default, or Kubernetes hosting's post-configuration) falls back to 0.0.0.0.
        silo.Configure<EndpointOptions>(o =>
        {
            o.SiloListeningEndpoint = new IPEndPoint(listen, cluster.SiloPort);
            o.GatewayListeningEndpoint = new IPEndPoint(listen, cluster.GatewayPort);
        });
    }
}
