namespace Babel.Modeling.Chat.Jinja;

/// <summary>
/// A template that cannot be parsed or rendered. <see cref="Position"/> is an offset into the template text (with its
/// line breaks normalized), or -1 until the node that failed adds it.
/// </summary>
internal class JinjaException(string message, int position = -1) : Exception(message)
{
    public int Position { get; } = position;

    /// <summary>The same error placed at <paramref name="position"/>.</summary>
    public virtual JinjaException At(int position) => new(Message, position);
}

/// <summary>The template called <c>raise_exception(message)</c>: it refuses its input with its own message.</summary>
internal sealed class JinjaRaisedException(string message, int position = -1) : JinjaException(message, position)
{
    public override JinjaException At(int position) => new JinjaRaisedException(Message, position);
}

/// <summary>The template text itself is malformed (found while parsing, before any rendering).</summary>
internal sealed class JinjaSyntaxException(string message, int position) : JinjaException(message, position)
{
    public override JinjaException At(int position) => new JinjaSyntaxException(Message, position);
}
