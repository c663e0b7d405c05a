"""Numbers the `depthlib` command states in its --help, kept here so that building its parser imports no torch.

Their owners import them from here: depthlib.models.predict (MIN_SIDE), depthlib.inference.export (MAX_SIDE,
DEFAULT_OPSET), depthlib.inference.load (BORDER_REPLAYS).
"""

# Smallest side predict accepts. Below it an image holds too little scene for a depth estimate, and a
# stride-32 encoder sees a single replicated pixel; 8 also keeps every border replay well-defined.
MIN_SIDE = 8
MAX_SIDE = 4096  # upper bound of an ONNX graph's dynamic H / W (torch.export needs a finite range)
DEFAULT_OPSET = 18
# Whether the checkpoint's training border crop is replayed on whole frames: "auto", on frames of the size it belongs
# to (NYU's white border: 640x480 frames only), or "none", never (frames of a source without that border, such as a
# 640x480 camera of your own: `pairs`; the crop would flatten their edge columns into a replicated copy).
BORDER_REPLAYS = ("auto", "none")
