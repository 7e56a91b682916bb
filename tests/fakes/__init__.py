"""Recording fakes of the GPU stack (``tensorrt``, cuda-python's runtime module), injected
through ``sys.modules`` so TensorRT build, deserialisation, allocation, inference and
teardown run in CI without a GPU.  Their names and signatures are checked against the
real APIs (tensorrt-stubs, cuda-python) in tests/fakes/test_fakes_match_api.py."""
