namespace Babel.Grains.Engine;

/// <summary>
/// What a worker keeps between shards so that it reads an input once, not once per shard: a dataset parsed from its file,
/// a token stream's checked index. Shards of every kind share it, keyed by what determines the value (an artifact key —
/// content-addressed, so a key never names two contents — and the options that shape the value). Bounded by entries and
/// by estimated bytes, least recently used out first; a value larger than the whole bound is returned but not kept. A
/// load that throws is not kept, so the next shard tries again. Values are shared between threads: they must be immutable.
/// </summary>
public sealed class WorkerCache
{
    /// <summary>Entries the process-wide cache keeps.</summary>
    public const int DefaultMaxEntries = 32;

    /// <summary>Estimated bytes the process-wide cache keeps (1 GiB): a few datasets, never a model (those live in <c>ModelReplicas</c>).</summary>
    public const long DefaultMaxBytes = 1L << 30;

    private readonly object _gate = new();
    private readonly Dictionary<string, LinkedListNode<Entry>> _entries = new(StringComparer.Ordinal);
    // Least recently used first.
    private readonly LinkedList<Entry> _order = new();
    private long _bytes;
    private long _loads;

    public WorkerCache(int maxEntries = DefaultMaxEntries, long maxBytes = DefaultMaxBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxEntries, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 1);
        MaxEntries = maxEntries;
        MaxBytes = maxBytes;
    }

    /// <summary>The cache the workers of this process share (the shard context's default).</summary>
    public static WorkerCache Shared { get; } = new();

    public int MaxEntries { get; }
    public long MaxBytes { get; }

    /// <summary>How many times a value was loaded (a miss); a test's way to see that a dataset was read once.</summary>
    public long Loads => Interlocked.Read(ref _loads);

    public int Count
    {
        get
        {
            lock (_gate) return _entries.Count;
        }
    }

    /// <summary>
    /// The value cached under <paramref name="key"/> and <typeparamref name="T"/>, or <paramref name="load"/>'s, which is
    /// kept with the size <paramref name="bytes"/> estimates. Concurrent callers of one key wait for a single load.
    /// </summary>
    public T GetOrAdd<T>(string key, Func<T> load, Func<T, long> bytes) where T : class
    {
        ArgumentNullException.ThrowIfNull(key);
        var full = $"{typeof(T).FullName}|{key}";
        LinkedListNode<Entry> node;
        lock (_gate)
        {
            if (_entries.TryGetValue(full, out var found))
            {
                node = found;
                _order.Remove(node);
                _order.AddLast(node);
            }
            else
            {
                node = _order.AddLast(new Entry(full, new Lazy<object>(() =>
                {
                    Interlocked.Increment(ref _loads);
                    return load();
                }, LazyThreadSafetyMode.ExecutionAndPublication)));
                _entries[full] = node;
            }
        }
        T value;
        try
        {
            value = (T)node.Value.Value.Value;
        }
        catch
        {
            lock (_gate) Remove(node);
            throw;
        }
        lock (_gate)
        {
            if (node.Value.Bytes is null && node.List is not null)
            {
                node.Value.Bytes = Math.Max(0, bytes(value));
                _bytes += node.Value.Bytes.Value;
                while (_order.First is { } oldest && (_entries.Count > MaxEntries || _bytes > MaxBytes)) Remove(oldest);
            }
        }
        return value;
    }

    /// <summary>Drops every entry (values in use stay valid for their users).</summary>
    public void Clear()
    {
        lock (_gate)
        {
            _entries.Clear();
            _order.Clear();
            _bytes = 0;
        }
    }

    private void Remove(LinkedListNode<Entry> node)
    {
        if (node.List is null) return;
        _order.Remove(node);
        _entries.Remove(node.Value.Key);
        _bytes -= node.Value.Bytes ?? 0;
    }

    private sealed class Entry(string key, Lazy<object> value)
    {
        public string Key { get; } = key;
        public Lazy<object> Value { get; } = value;
        // Unknown until the value is loaded.
        public long? Bytes { get; set; }
    }
}
