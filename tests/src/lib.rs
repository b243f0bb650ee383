//! Helpers shared by the integration tests: locating the test models, the ggml oracle.
