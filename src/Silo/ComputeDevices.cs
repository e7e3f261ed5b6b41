using Babel.Grains.Engine;
using Babel.Modeling.Runtime;
using Microsoft.Extensions.Options;
using TorchSharp;

namespace Babel.Silo;

/// <summary>
/// The compute devices of this silo, one device worker each: the <see cref="WorkerOptions.Devices"/> override when set,
/// else <c>cuda:0</c> … when TorchSharp sees CUDA, else CPU slots <c>cpu:0</c> … <c>cpu:{CpuSlots-1}</c>.
/// </summary>
public sealed class ComputeDevices(IOptions<WorkerOptions> options)
{
    /// <summary>Detects the devices; initializes TorchSharp first, because CUDA can only be queried after that.</summary>
    public IReadOnlyList<string> Discover()
    {
        var worker = options.Value;
        if (!string.IsNullOrWhiteSpace(worker.Devices))
            return Resolve(worker, cudaDevices: 0);
        TorchRuntime.Initialize(worker.ThreadsPerSlot);
        return Resolve(worker, torch.cuda.is_available() ? torch.cuda.device_count() : 0);
    }

    /// <summary>The device list for <paramref name="cudaDevices"/> detected CUDA devices; pure, so it is tested without a GPU.</summary>
    public static IReadOnlyList<string> Resolve(WorkerOptions worker, int cudaDevices)
    {
        if (!string.IsNullOrWhiteSpace(worker.Devices))
            return Split(worker.Devices).Distinct(StringComparer.Ordinal).ToArray();
        if (cudaDevices > 0)
            return Enumerable.Range(0, cudaDevices).Select(i => $"cuda:{i}").ToArray();
        return Enumerable.Range(0, Math.Max(0, worker.CpuSlots)).Select(i => $"cpu:{i}").ToArray();
    }

    internal static string[] Split(string devices) =>
        devices.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary><c>cuda:N</c> or <c>cpu:N</c> with N a non-negative integer.</summary>
    internal static bool IsDeviceName(string device)
    {
        var colon = device.IndexOf(':', StringComparison.Ordinal);
        return colon > 0
            && device[..colon] is "cuda" or "cpu"
            && int.TryParse(device[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _);
    }
}
