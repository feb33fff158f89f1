//! A small builder for ONNX graphs: nodes with generated output names,
//! initializers from `f32`/`i64` data, typed inputs and outputs.

use prost::Message as _;

use super::proto::*;

/// A graph under construction.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
}

/// A node attribute.
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// A dimension of a graph input or output.
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

impl GraphBuilder {
    /// Adds a node with one output and returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.counter += 1;
        let out = format!("{}_{}", op_type.to_ascii_lowercase(), self.counter);
        self.op_named(op_type, inputs, attrs, vec![out.clone()]);
        out
    }

    /// Adds a node with the given output names.
    pub fn op_named(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
        outputs: Vec<String>,
    ) {
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| {
                let mut p = AttributeProto { name: name.to_owned(), ..Default::default() };
                match a {
                    Attr::Int(i) => {
                        p.i = i;
                        p.r#type = ATTR_INT;
                    }
                    Attr::Float(f) => {
                        p.f = f;
                        p.r#type = ATTR_FLOAT;
                    }
                    Attr::Ints(v) => {
                        p.ints = v;
                        p.r#type = ATTR_INTS;
                    }
                }
                p
            })
            .collect();
        self.counter += 1;
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs,
            name: format!("n{}", self.counter),
            op_type: op_type.to_owned(),
            attribute,
            domain: String::new(),
        });
    }

    /// Adds an `f32` initializer and returns its name.
    pub fn f32_tensor(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: DT_FLOAT,
            name: name.to_owned(),
            raw_data,
        });
        name.to_owned()
    }

    /// Adds an `i64` initializer and returns its name.
    pub fn i64_tensor(&mut self, name: &str, dims: &[i64], data: &[i64]) -> String {
        let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: DT_INT64,
            name: name.to_owned(),
            raw_data,
        });
        name.to_owned()
    }

    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.inputs.push(value_info(name, elem_type, dims));
    }

    pub fn output(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem_type, dims));
    }

    /// Serializes the model (IR version 8, default opset 17).
    pub fn finish(self, graph_name: &str) -> Vec<u8> {
        let model = ModelProto {
            ir_version: 8,
            producer_name: "tessera".into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: graph_name.to_owned(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
            }),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        };
        model.encode_to_vec()
    }
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => Dimension { dim_value: Some(*v), dim_param: None },
            Dim::Named(n) => Dimension { dim_value: None, dim_param: Some((*n).to_owned()) },
        })
        .collect();
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto { elem_type, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}
