using TorchSharp;
using static TorchSharp.torch;

namespace Babel.Modeling.Runtime;

/// <summary>The one place that prepares TorchSharp for this process: native library fix-up, then thread count.</summary>
public static class TorchRuntime
{
    private static readonly Lock _gate = new();
    private static bool _initialized;

    /// <summary>
    /// Call before the first torch operation. <paramref name="threads"/> defaults to 1: small ops slow down
    /// sharply when two torch threads compete with another process for 2 cores; big batched forwards opt into more.
    /// </summary>
    public static void Initialize(int threads = 1)
    {
        lock (_gate)
        {
            if (!_initialized)
            {
                LibStdCxxCompatibility.EnsureLoadable();
                InitializeDeviceType(DeviceType.CPU);
                // Inter-op threads can be set once per process, before any parallel work.
                set_num_interop_threads(1);
                _initialized = true;
            }
            set_num_threads(threads);
        }
    }

    public static int Threads => get_num_threads();
}
