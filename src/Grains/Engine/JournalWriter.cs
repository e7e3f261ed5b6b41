using System.Buffers;
using Babel.Storage.Journals;

namespace Babel.Grains.Engine;

/// <summary>
/// Appends a job's journal entries with group commit: entries arriving while an append is in flight go out together in
/// the next one, so many workers completing at once cost one storage write, not one each. A caller's task completes when
/// its entries are durable. After a failed append nothing more is written (the grain's memory may be ahead of its
/// journal); the job grain deactivates and its next activation replays what landed. Not thread-safe: one grain's turns use it.
/// </summary>
internal sealed class JournalWriter(IJobJournal journal, string jobId, int epoch, int maxAppendsPerSegment)
{
    /// <summary>Lines a segment holds at most before the next one starts, so one segment stays quick to read for <c>babel logs</c>.</summary>
    public const int MaxLinesPerSegment = 50_000;

    private ArrayBufferWriter<byte> _buffer = new();
    private int _bufferedLines;
    private TaskCompletionSource? _buffered;
    private TaskCompletionSource? _inFlight;
    private Exception? _failed;
    private int _part;
    private int _partAppends;
    private long _partLines;

    /// <summary>The folder of a job's journal segments.</summary>
    public static string Folder(string jobId) => $"{jobId}/journal/";

    /// <summary>Segments sort by epoch (activation) then part, which is the order they were written in.</summary>
    public static string Segment(string jobId, int epoch, int part) => $"{Folder(jobId)}{epoch:D6}-{part:D4}.jsonl";

    /// <summary>Every segment written by this writer with its lines, for <c>babel logs</c>.</summary>
    public event Action<string, long>? Appended;

    /// <summary>The storage failure that stopped this writer, or null.</summary>
    public Exception? Failure => _failed;

    /// <summary>Queues <paramref name="entries"/>; the task completes when they are durable (at once for none).</summary>
    public Task AppendAsync(IReadOnlyList<JournalEntry> entries)
    {
        if (_failed is not null) return Task.FromException(new InvalidOperationException("The job's journal could not be written; the job grain restarts.", _failed));
        if (entries.Count == 0) return FlushedAsync();
        foreach (var entry in entries) entry.WriteLine(_buffer);
        _bufferedLines += entries.Count;
        if (_buffered is null)
        {
            _buffered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_inFlight is null) _ = WriteLoopAsync();
        }
        return _buffered.Task;
    }

    /// <summary>Completes when every entry queued so far is durable.</summary>
    public Task FlushedAsync() => _buffered?.Task ?? _inFlight?.Task ?? Task.CompletedTask;

    private async Task WriteLoopAsync()
    {
        // Let the calls already queued on this grain add their entries to the first batch.
        await Task.Yield();
        while (_buffered is { } batch)
        {
            var bytes = _buffer.WrittenMemory;
            var lines = _bufferedLines;
            _buffer = new ArrayBufferWriter<byte>(Math.Max(256, bytes.Length));
            _bufferedLines = 0;
            _buffered = null;
            _inFlight = batch;
            var segment = Segment(jobId, epoch, _part);
            try
            {
                await journal.AppendAsync(segment, bytes);
            }
            catch (Exception e)
            {
                _failed = e;
                _inFlight = null;
                batch.SetException(e);
                _buffered?.SetException(e);
                _buffered = null;
                return;
            }
            _partLines += lines;
            Appended?.Invoke(segment, lines);
            if (++_partAppends >= maxAppendsPerSegment || _partLines >= MaxLinesPerSegment)
            {
                _part++;
                _partAppends = 0;
                _partLines = 0;
            }
            _inFlight = null;
            batch.SetResult();
        }
    }
}
