"""Plots with matplotlib (object API, no pyplot state): heatmaps, curves, bars."""

from kmtl.plotting.heatmap import plot_heatmap

__all__ = ["plot_heatmap"]
