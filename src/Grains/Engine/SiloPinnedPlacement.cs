using Orleans.Placement;
using Orleans.Runtime.Placement;

namespace Babel.Grains.Engine;

/// <summary>Places a grain keyed <c>SILO/NAME</c> on the silo <c>SILO</c> (a parsable silo address): a device worker lives where its device is.</summary>
[GenerateSerializer, Immutable]
public sealed class SiloPinnedPlacement : PlacementStrategy;

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class SiloPinnedPlacementAttribute() : PlacementAttribute(new SiloPinnedPlacement());

public sealed class SiloPinnedPlacementDirector : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var key = target.GrainIdentity.Key.ToString()!;
        var silo = SiloAddress.FromParsableString(SiloOf(key));
        if (!context.GetCompatibleSilos(target).Contains(silo))
        {
            throw new OrleansException($"Worker {key} belongs to silo {silo}, which is not active in the cluster.");
        }
        return Task.FromResult(silo);
    }

    public static string SiloOf(string workerKey) => workerKey[..workerKey.LastIndexOf('/')];

    /// <summary>The silo of a worker key, or false when <paramref name="workerKey"/> is not <c>SILO/DEVICE</c> with a parsable silo address.</summary>
    public static bool TryParseSilo(string workerKey, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SiloAddress? silo)
    {
        silo = null;
        var slash = workerKey.LastIndexOf('/');
        if (slash <= 0) return false;
        try
        {
            silo = SiloAddress.FromParsableString(workerKey[..slash]);
            return true;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or IndexOutOfRangeException)
        {
            return false;
        }
    }

    public static string DeviceOf(string workerKey) => workerKey[(workerKey.LastIndexOf('/') + 1)..];

    public static string WorkerKey(SiloAddress silo, string device) => $"{silo.ToParsableString()}/{device}";
}
