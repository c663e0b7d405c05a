"""Pictures of depth, for the notebooks, the CLI and training's TensorBoard previews: colourised depth maps,
RGB | ground truth | prediction grids, comparisons and curves (viz.py), what the notebooks' explorer draws
(explorer.py) and one frame through longer lenses (lens.py). They take arrays and tensors, never models' files:
nothing here imports models or anything above. Nothing is re-exported: import viz, explorer or lens (matplotlib
loads with them, not with depthlib).
"""
