using Babel.Modeling.Runtime;
using Babel.Modeling.Text2Tree;
using Babel.Storage;
using Babel.Storage.Icpc;
using Xunit;

namespace Babel.UnitTests.Text2Tree;

public class LabelTreeTests
{
    [Fact]
    public void Hand_built_tree_has_the_expected_nodes_parents_and_depths()
    {
        var tree = Text2TreeTestData.HandTree();
        Assert.Equal(["", "A", "A/A:1", "A/A:1/A01", "A/A:1/A02", "A/A:1/A03", "A/A:7", "A/A:7/A90", "B", "B/B:1", "B/B:1/B01"], tree.NodeIds);
        Assert.Equal([-1, 0, 1, 2, 2, 2, 1, 6, 0, 8, 9], tree.Parent);
        Assert.Equal(3, tree.Levels);
        Assert.Equal([3, 4, 5, 7, 10], tree.LeafNodes);
        Assert.Equal([1, 8], tree.NodesAt(1));
        Assert.Equal([2, 6, 9], tree.NodesAt(2));
        Assert.Equal(2, tree.LabelIndex("A03"));
    }

    [Fact]
    public void Fixed_edges_are_self_loops_and_child_to_parent_and_sibling_edges_join_children_of_one_parent()
    {
        var tree = Text2TreeTestData.HandTree();
        // Level 2 rows are nodes 2 (A:1), 6 (A:7), 9 (B:1).
        AssertEdges(tree.FixedEdges(2), [[2, 1], [6, 1], [9, 8]], tree.NodeCount);
        AssertEdges(tree.SiblingEdges(2), [[6], [2], []], tree.NodeCount);
        // Level 3 rows are the leaves 3, 4, 5, 7, 10.
        AssertEdges(tree.FixedEdges(3), [[3, 2], [4, 2], [5, 2], [7, 6], [10, 9]], tree.NodeCount);
        AssertEdges(tree.SiblingEdges(3), [[4, 5], [3, 5], [3, 4], [], []], tree.NodeCount);
        // Level 1: the chapters are siblings under the root.
        AssertEdges(tree.FixedEdges(1), [[1, 0], [8, 0]], tree.NodeCount);
        AssertEdges(tree.SiblingEdges(1), [[8], [1]], tree.NodeCount);
    }

    private static void AssertEdges(float[,] edges, int[][] expected, int nodes)
    {
        Assert.Equal(expected.Length, edges.GetLength(0));
        Assert.Equal(nodes, edges.GetLength(1));
        for (var r = 0; r < expected.Length; r++)
        {
            var actual = Enumerable.Range(0, nodes).Where(j => edges[r, j] == 1f).Order().ToArray();
            Assert.Equal(expected[r].Order().ToArray(), actual);
            Assert.All(Enumerable.Range(0, nodes), j => Assert.True(edges[r, j] is 0f or 1f));
        }
    }

    [Fact]
    public void Icd10_codes_become_chapter_category_code_paths_and_a_three_character_code_is_its_own_leaf()
    {
        Assert.Equal(["J", "J45", "J45.9"], LabelSchemes.PathOf(LabelSchemes.Icd10, "J45.9"));
        Assert.Equal(["I", "I10", "I10"], LabelSchemes.PathOf(LabelSchemes.Icd10, "I10"));
        Assert.Equal(["A", "A:7", "A90"], LabelSchemes.PathOf(LabelSchemes.Icpc2, "A90"));
        var tree = LabelTree.FromPaths([("I10", "hypertension", LabelSchemes.PathOf(LabelSchemes.Icd10, "I10")), ("I10.1", "other", LabelSchemes.PathOf(LabelSchemes.Icd10, "I10.1"))]);
        Assert.Equal(["", "I", "I/I10", "I/I10/I10", "I/I10/I10.1"], tree.NodeIds);
        Assert.Throws<UserInputException>(() => LabelSchemes.PathOf(LabelSchemes.Icd10, "hypertension"));
    }

    [Fact]
    public void A_code_missing_from_the_tree_is_a_user_error_that_names_the_code()
    {
        var tree = Text2TreeTestData.HandTree();
        var error = Assert.Throws<UserInputException>(() => tree.LabelIndex("Z99"));
        Assert.Contains("'Z99' is not in the label tree", error.Message);

        var labels = new LabelSet(LabelSchemes.Icpc2, [new LabelEntry("A01", "pain", ["A", "A:1", "A01"])], []);
        var dataset = Assert.Throws<UserInputException>(() => CodedTextDataset.Validate([new CodedText("1", "Kopfschmerz", ["N01"])], labels, "input"));
        Assert.Contains("'N01', which is not in the label tree", dataset.Message);
    }

    [Fact]
    public void An_empty_text_is_a_user_error()
    {
        var labels = new LabelSet(LabelSchemes.Icpc2, [new LabelEntry("A01", "pain", ["A", "A:1", "A01"])], []);
        var error = Assert.Throws<UserInputException>(() => CodedTextDataset.Validate([new CodedText("7", "  ", ["A01"])], labels, "input"));
        Assert.Contains("record '7'", error.Message);
        Assert.Contains("empty text", error.Message);
    }

    [Fact]
    public void Multi_hot_targets_mark_each_records_labels()
    {
        TorchRuntime.Initialize();
        var tree = Text2TreeTestData.HandTree();
        using var targets = tree.MultiHot([[0], [1, 4]]);
        Assert.Equal([2L, 5L], targets.shape);
        Assert.Equal([1f, 0, 0, 0, 0, 0, 1, 0, 0, 1], targets.data<float>().ToArray());
    }

    [Fact]
    public void A_subset_keeps_every_label_and_roughly_the_label_proportions()
    {
        var examples = new List<LabelledExample>();
        for (var i = 0; i < 90; i++) examples.Add(new LabelledExample($"h{i}", "t", [0]));
        for (var i = 0; i < 9; i++) examples.Add(new LabelledExample($"m{i}", "t", [1]));
        examples.Add(new LabelledExample("t0", "t", [2]));
        var subset = Text2TreeData.Subset(examples, 20);
        Assert.Equal(18, subset.Count(e => e.Labels[0] == 0));
        Assert.Single(subset, e => e.Labels[0] == 2);
        Assert.Equal(1, subset.Count(e => e.Labels[0] == 1));
        Assert.Equal(subset, Text2TreeData.Subset(examples, 20));
    }
}
