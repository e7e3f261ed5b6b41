using System.Collections.Concurrent;

namespace Babel.Grains.Distillation;

/// <summary>
/// Runs an async pipeline on the calling thread: its continuations are posted back here instead of to the thread pool, so
/// a shard's torch work stays on the device worker's dedicated thread (with its torch thread settings) while HTTP calls
/// and storage I/O still overlap.
/// </summary>
public sealed class WorkerThreadContext : SynchronizationContext
{
    private readonly BlockingCollection<(SendOrPostCallback Callback, object? State)> _queue = new();

    public static T Run<T>(Func<Task<T>> pipeline)
    {
        var previous = Current;
        var context = new WorkerThreadContext();
        SetSynchronizationContext(context);
        try
        {
            var task = pipeline();
            task.ContinueWith(_ => context._queue.CompleteAdding(), TaskScheduler.Default);
            foreach (var (callback, state) in context._queue.GetConsumingEnumerable()) callback(state);
            return task.GetAwaiter().GetResult();
        }
        finally
        {
            SetSynchronizationContext(previous);
            context._queue.Dispose();
        }
    }

    public override void Post(SendOrPostCallback d, object? state)
    {
        try
        {
            _queue.Add((d, state));
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            // The pipeline finished; a late continuation (e.g. of an abandoned request) runs on the pool instead.
            ThreadPool.QueueUserWorkItem(_ => d(state));
        }
    }

    public override void Send(SendOrPostCallback d, object? state) => throw new NotSupportedException("Synchronous sends to a worker thread would deadlock.");
}
