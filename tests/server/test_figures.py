"""The figure functions: pure dicts for plotly, user text escaped, the theory's cells overlaid."""

from __future__ import annotations

from server import figures
from server.views.runs import expected_cells, score_matrix
from server.views.schemas import Series, SnapshotView


def series(steps, values):
    return Series(steps=list(steps), values=list(values))


def test_escape_makes_user_text_inert_for_plotly_labels():
    assert figures.escape('<img src=x onerror=alert(1)>"\'') == "&lt;img src=x onerror=alert(1)&gt;&#34;&#39;"
    # quotes as numeric entities: plotly shows &#34; as a quote, but would show &quot; literally


def test_accuracy_draws_one_line_per_length_in_order_and_the_mean_last():
    data = {"test/seq_acc/L10": series([1], [0.1]), "test/seq_acc/L2": series([1], [0.9]),
            "test/seq_acc": series([1], [0.5]), "train/seq_acc/L2": series([1], [0.3])}
    fig = figures.accuracy_figure(data, split="test")
    assert [trace["name"] for trace in fig["data"]] == ["L=2", "L=10", "mean L=4..max"]
    assert fig["data"][0]["y"] == [0.9] and fig["layout"]["yaxis"]["range"] == [-0.02, 1.02]


def test_loss_is_on_a_log_axis_and_empty_without_data():
    assert figures.loss_figure({"train/loss": series([1, 2], [2.0, 1.0])})["layout"]["yaxis"]["type"] == "log"
    assert figures.loss_figure({})["data"] == []


def test_score_matrix_and_emergence_heatmap():
    rows = [("score/iteration/peaky_thres/L1H0", 0, 0.0), ("score/iteration/peaky_thres/L1H0", 10, 0.95),
            ("score/iteration/peaky_thres/L0H1", 10, 0.2), ("score/iteration/peaky_thres/L1H0/len3", 10, 1.0),
            ("score/eoi_locator/peaky_thres/L0H0", 10, 0.7), ("score/iteration/inv/L1H0", 10, 0.5)]
    matrix = score_matrix(rows, role="iteration", score="peaky_thres")
    assert matrix == {"heads": ["L0H1", "L1H0"], "steps": [0, 10], "z": [[None, 0.2], [0.0, 0.95]]}
    heat = figures.emergence_figure(matrix, role="iteration", score="peaky_thres")["data"][0]
    assert heat["type"] == "heatmap" and heat["z"] == matrix["z"] and (heat["zmin"], heat["zmax"]) == (0, 1)


def test_peakiness_follows_the_summary_heads():
    data = {"score/iteration/peaky_thres/L1H2": series([0, 10], [0.1, 0.95])}
    fig = figures.peakiness_figure(data, {"iteration": {"label": "L1H2"}, "eoi_locator": {"label": "L0H0"}})
    assert [trace["name"] for trace in fig["data"]] == ["iteration head L1H2"]
    assert fig["layout"]["shapes"][0]["y0"] == 0.9


def view(length=2, n_layers=2):
    width = 2 * length + 2
    rows = [[round(1 / (q + 1), 3)] * (q + 1) for q in range(width)]
    labels = ["[parity]", "x1=<b>", "x2=1", "EoI", "y1=0", "y2=1"][:width]
    return SnapshotView(run_id=1, step=10, steps=[0, 10], probe=0, length=length, lengths=[length], tokens=[0] * width,
                        labels=labels, n_layers=n_layers, n_heads=1, attention=[[rows] for _ in range(n_layers)],
                        expected=expected_cells(length))


def test_full_matrix_pads_the_upper_triangle_with_none():
    assert figures.full_matrix([[1.0], [0.5, 0.5]]) == [[1.0, None], [0.5, 0.5]]


def test_attention_overlays_the_cells_of_the_layers_role_only():
    layer0 = figures.attention_figure(view(), layer=0, head=0)
    heat, marks = layer0["data"]
    assert len(heat["z"]) == 6 and heat["z"][0][1:] == [None] * 5
    assert marks["name"] == "expected: EoI locator" and list(zip(marks["y"], marks["x"])) == [(4, 3), (5, 3)]
    layer1 = figures.attention_figure(view(), layer=1, head=0)
    assert list(zip(layer1["data"][1]["y"], layer1["data"][1]["x"])) == [(3, 1), (4, 2)]
    assert len(figures.attention_figure(view(), layer=1, head=0, overlay=False)["data"]) == 1


def test_attention_labels_are_escaped_in_ticks_and_hover():
    fig = figures.attention_figure(view(), layer=0, head=0)
    assert "x1=&lt;b&gt;" in fig["layout"]["xaxis"]["ticktext"]
    assert "<b>" not in str(fig["data"][0]["text"]) and "x1=&lt;b&gt;" in fig["data"][0]["text"][1][1]


def test_run_figures_builds_every_element_of_the_run_page():
    rows = [("train/loss", 1, 2.0), ("test/seq_acc/L3", 10, 0.5), ("score/iteration/mul/L1H0", 10, 0.4)]
    figs = figures.run_figures(rows, {"heads": {}}, score="mul")
    assert set(figs) == {"fig-loss", "fig-acc-test", "fig-acc-train", "fig-peaky", "fig-emergence-eoi_locator",
                         "fig-emergence-iteration"}
    assert figs["fig-emergence-iteration"]["data"][0]["z"] == [[0.4]]
    assert figs["fig-emergence-eoi_locator"]["data"][0]["z"] == []
