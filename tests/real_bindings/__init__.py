"""The fakes and the segedge CLI checked against the real TensorRT and cuda-python bindings
(no GPU: TensorRT's libraries are stand-ins built here; run setup.sh first)."""
