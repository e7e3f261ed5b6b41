using System.Net;
using Azure.Data.Tables;
using Microsoft.Extensions.Options;
using Orleans.Clustering.AzureStorage;
using Orleans.Configuration;
using Orleans.Messaging;

namespace Babel.Silo;

/// <summary>
/// A cluster client's gateways, read from the Azure Table membership the silos write (Orleans' table
/// <c>OrleansSiloInstances</c>): the active silos of this cluster id with a gateway port. Orleans' own Azure gateway list
/// creates the table before reading it, which a read-only credential may not do; this one only queries, so a client can
/// hold a SAS that reads that one table and nothing else.
/// </summary>
internal sealed class MembershipTableGateways(TableClient table, IOptions<ClusterOptions> cluster, IOptions<GatewayOptions> gateways) : IGatewayListProvider
{
    /// <summary>The table the silos' Azure Table clustering writes.</summary>
    public const string TableName = AzureStorageClusteringOptions.DEFAULT_TABLE_NAME;

    // Orleans' SiloInstanceTableEntry columns: the silo's IP, its gateway port ("0" when it has none), its generation and status.
    private const string Address = "Address";
    private const string ProxyPort = "ProxyPort";
    private const string Generation = "Generation";
    private const string Active = nameof(SiloStatus.Active);

    public TimeSpan MaxStaleness => gateways.Value.GatewayListRefreshPeriod;

    [Obsolete("Orleans no longer reads it; every provider is considered updatable.")]
    public bool IsUpdatable => true;

    public Task InitializeGatewayListProvider() => Task.CompletedTask;

    public async Task<IList<Uri>> GetGateways()
    {
        var filter = TableClient.CreateQueryFilter($"PartitionKey eq {cluster.Value.ClusterId} and Status eq {Active} and ProxyPort ne {"0"}");
        var found = new List<Uri>();
        await foreach (var row in table.QueryAsync<TableEntity>(filter, select: [Address, ProxyPort, Generation]))
        {
            // Rows that are not silos (the table version row) have no address.
            if (IPAddress.TryParse(row.GetString(Address), out var address) && int.TryParse(row.GetString(ProxyPort), out var port) && port > 0)
                found.Add(SiloAddress.New(address, port, int.TryParse(row.GetString(Generation), out var generation) ? generation : 0).ToGatewayUri());
        }
        return found;
    }
}

/// <summary>The cluster client's side of the perimeter: gateways read with a read-only table credential.</summary>
public static class MembershipTableGatewaysExtensions
{
    /// <summary>
    /// Finds the cluster's gateways in the Azure Table membership through <paramref name="tables"/>, which needs only read
    /// permission on table <see cref="MembershipTableGateways.TableName"/> (the account key works too). The cluster id is
    /// <see cref="ClusterOptions.ClusterId"/>. The list is read again every 5 s.
    /// </summary>
    public static IClientBuilder UseMembershipTableGateways(this IClientBuilder client, StorageConnectionString tables)
    {
        // Silos come and go (pods replaced, nodes drained): learn the live gateways every few seconds, not every minute.
        client.Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(5));
        client.Services.AddSingleton<IGatewayListProvider>(services => new MembershipTableGateways(
            new TableClient(tables.Value, MembershipTableGateways.TableName),
            services.GetRequiredService<IOptions<ClusterOptions>>(),
            services.GetRequiredService<IOptions<GatewayOptions>>()));
        return client;
    }
}
