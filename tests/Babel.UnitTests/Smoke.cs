namespace Babel.UnitTests; public class Smoke { [Xunit.Fact] public void Runs() => Xunit.Assert.Equal(4, 2 + 2); }
