using Babel.Grains.Engine;
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
    /// <summary>How often the silo re-starts its device workers, which revives one that Orleans deactivated.</summary>
    public static readonly TimeSpan KeepAlivePeriod = TimeSpan.FromSeconds(2);

    private readonly CancellationTokenSource _stopping = new();
    private Task _keepAlive = Task.CompletedTask;

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(SiloStartup), ServiceLifecycleStage.Active, StartAsync, StopAsync);

    private async Task StartAsync(CancellationToken cancellationToken)
    {
        var devices = computeDevices.Discover();
        LogDevices(logger, localSilo.SiloAddress, devices.Count, string.Join(",", devices), workerOptions.Value.ThreadsPerSlot);
        await StartDeviceWorkersAsync(devices, cancellationToken);
        _keepAlive = KeepAliveAsync(devices, _stopping.Token);
    }

    private async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await _keepAlive.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>
    /// Orleans deactivates a worker whose grain directory partition lived on a silo that died, and nothing else would
    /// activate it again; starting is idempotent, so re-starting every worker periodically brings such a worker back.
    /// </summary>
    private async Task KeepAliveAsync(IReadOnlyList<string> devices, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(KeepAlivePeriod);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                try
                {
                    await StartDeviceWorkersAsync(devices, cancellationToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogKeepAliveFailed(logger, e);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>The device worker grain key of <paramref name="device"/> on <paramref name="silo"/>.</summary>
    public static string DeviceWorkerKey(SiloAddress silo, string device) => $"{silo.ToParsableString()}/{device}";

    private async Task StartDeviceWorkersAsync(IReadOnlyList<string> devices, CancellationToken cancellationToken)
    {
        var threads = workerOptions.Value.ThreadsPerSlot;
        await Task.WhenAll(devices.Select(device =>
            grainFactory.GetGrain<IDeviceWorkerGrain>(DeviceWorkerKey(localSilo.SiloAddress, device)).StartAsync(threads)))
            .WaitAsync(cancellationToken);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Silo {Silo} starts {Count} device workers [{Devices}] with {Threads} threads each")]
    private static partial void LogDevices(ILogger logger, SiloAddress silo, int count, string devices, int threads);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not re-start this silo's device workers; trying again shortly")]
    private static partial void LogKeepAliveFailed(ILogger logger, Exception exception);
}
