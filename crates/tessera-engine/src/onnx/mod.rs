//! Writing ONNX models: the protobuf messages we need and a small graph builder.

pub mod graph;
pub mod proto;
