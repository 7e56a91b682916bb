"""Recording fakes of the GPU stack (``tensorrt``, cuda-python's runtime module), injected
through ``sys.modules`` so TensorRT build, deserialisation, allocation, inference and
teardown run in CI without a GPU.  Their names and signatures are checked against the
real APIs (tensorrt-stubs, cuda-python) in tests/fakes/test_fakes_match_api.py, and names,
enum values, signatures, read-only properties and what each failing call raises against the
real TensorRT 10.3/10.16/11.4 and cuda-python 12.3/12.9 bindings in tests/real_bindings."""
