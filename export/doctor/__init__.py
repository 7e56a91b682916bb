"""``segdoctor``: is this Jetson, in-car box or GPU server ready to run segedge on its GPU?

It reports the platform (probe.py), then proves the stack on the shipped demo
model (checks.py): FP32, FP16 and INT8 engines built here, run through the
native TensorRT backend and ONNX Runtime's TensorRT provider, masks compared
with the CPU path, timed.  Torch-free: the demo ONNX files ship in
``segedge/runtime/assets`` (regenerate with ``segexport demo -o demo_fp32.onnx``,
``segexport demo --fp16 -o demo_fp16.onnx`` and ``segexport demo --int8 --calib
runtime/assets/demo_clip.mp4 -o demo_int8.onnx``).
"""
