using Babel.Grains.Workers;
using Babel.Contracts;
using Microsoft.Extensions.Options;

namespace Babel.Silo;

/// <summary>
/// Once this silo is Active, starts one device worker grain per compute device, keyed <c>SILO/DEVICE</c> (the grain places
/// itself on that silo). Starting is idempotent, so a restart of the same silo address simply resumes its workers.
/// </summary>
internal sealed partial class SiloStartup(
    IGrainFactory grainFactory,
    ILocalSiloDetails localSilo,
    ComputeDevices computeDevices,
    IOptions<WorkerOptions> workerOptions,
    ILogger<SiloStartup> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(SiloStartup), ServiceLifecycleStage.Active, StartDeviceWorkersAsync);

    /// <summary>The device worker grain key of <paramref name="device"/> on <paramref name="silo"/>.</summary>
    public static string DeviceWorkerKey(SiloAddress silo, string device) => $"{silo.ToParsableString()}/{device}";

    private async Task StartDeviceWorkersAsync(CancellationToken cancellationToken)
    {
        var devices = computeDevices.Discover();
        var threads = workerOptions.Value.ThreadsPerSlot;
        LogDevices(logger, localSilo.SiloAddress, devices.Count, string.Join(",", devices), threads);
        await Task.WhenAll(devices.Select(device =>
            grainFactory.GetGrain<IDeviceWorkerGrain>(DeviceWorkerKey(localSilo.SiloAddress, device)).StartAsync(threads)))
            .WaitAsync(cancellationToken);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Silo {Silo} starts {Count} device workers [{Devices}] with {Threads} threads each")]
    private static partial void LogDevices(ILogger logger, SiloAddress silo, int count, string devices, int threads);
}
