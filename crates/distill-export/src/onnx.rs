//! ONNX export, written directly as protobuf (no code generation, no
//! dependency): a minimal encoder for the ONNX messages we emit, a graph
//! builder, and the two student graphs.
//!
//! Field numbers follow `onnx.proto` (IR version 8, default-domain opset 17).
//! Both graphs take `input_ids` (int64 `[batch, sequence]`, 0 = padding) and
//! return `logits` and `probs` (`[batch, labels]`, softmax or sigmoid).

use distill_core::types::Task;
use distill_model::export::{HostTensor, LinearW, NetWeights, NormW};

pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 17;

// TensorProto.DataType
const FLOAT: i32 = 1;
const INT8: i32 = 3;
const INT64: i32 = 7;
const FLOAT16: i32 = 10;

/// Protobuf writer (proto3 wire format).
#[derive(Default, Clone)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn tag(&mut self, field: u32, wire: u32) {
        self.varint(u64::from((field << 3) | wire));
    }
    fn int(&mut self, field: u32, v: i64) {
        self.tag(field, 0);
        self.varint(v as u64);
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn msg(&mut self, field: u32, m: &Pb) {
        self.bytes(field, &m.0);
    }
    fn float(&mut self, field: u32, v: f32) {
        self.tag(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn packed_ints(&mut self, field: u32, vs: &[i64]) {
        let mut inner = Pb::default();
        for &v in vs {
            inner.varint(v as u64);
        }
        self.bytes(field, &inner.0);
    }
}

/// A node attribute.
pub enum Attr {
    Int(&'static str, i64),
    Float(&'static str, f32),
    Ints(&'static str, Vec<i64>),
}

impl Attr {
    fn encode(&self) -> Pb {
        let mut a = Pb::default();
        match self {
            Attr::Int(name, v) => {
                a.str(1, name);
                a.int(3, *v);
                a.int(20, 2);
            }
            Attr::Float(name, v) => {
                a.str(1, name);
                a.float(2, *v);
                a.int(20, 1);
            }
            Attr::Ints(name, vs) => {
                a.str(1, name);
                a.packed_ints(8, vs);
                a.int(20, 7);
            }
        }
        a
    }
}

/// Dimension of a graph input/output: fixed or symbolic.
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

fn value_info(name: &str, elem: i32, dims: &[Dim]) -> Pb {
    let mut shape = Pb::default();
    for d in dims {
        let mut dim = Pb::default();
        match d {
            Dim::Fixed(v) => dim.int(1, *v),
            Dim::Named(n) => dim.str(2, n),
        }
        shape.msg(1, &dim);
    }
    let mut tensor = Pb::default();
    tensor.int(1, i64::from(elem));
    tensor.msg(2, &shape);
    let mut ty = Pb::default();
    ty.msg(1, &tensor);
    let mut vi = Pb::default();
    vi.str(1, name);
    vi.msg(2, &ty);
    vi
}

/// Graph under construction.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<Pb>,
    inits: Vec<Pb>,
    inputs: Vec<Pb>,
    outputs: Vec<Pb>,
    next: usize,
    /// Bytes of initializer data, by element type (for the size report).
    pub init_bytes: usize,
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    /// Add a node; returns its (single) output name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.node_into(op, inputs, &out, attrs);
        out
    }

    /// Add a node writing to a chosen output name.
    pub fn node_into(&mut self, op: &str, inputs: &[&str], out: &str, attrs: &[Attr]) {
        let mut n = Pb::default();
        for i in inputs {
            n.str(1, i);
        }
        n.str(2, out);
        n.str(3, &format!("{op}_{}", self.nodes.len()));
        n.str(4, op);
        for a in attrs {
            n.msg(5, &a.encode());
        }
        self.nodes.push(n);
    }

    fn init_raw(&mut self, name: &str, dims: &[usize], elem: i32, raw: &[u8]) {
        let mut t = Pb::default();
        t.packed_ints(1, &dims.iter().map(|&d| d as i64).collect::<Vec<_>>());
        t.int(2, i64::from(elem));
        t.str(8, name);
        t.bytes(9, raw);
        self.init_bytes += raw.len();
        self.inits.push(t);
    }

    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init_raw(name, dims, FLOAT, &raw);
        name.to_string()
    }

    pub fn init_f16(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw: Vec<u8> = data
            .iter()
            .flat_map(|&v| f32_to_f16(v).to_le_bytes())
            .collect();
        self.init_raw(name, dims, FLOAT16, &raw);
        name.to_string()
    }

    pub fn init_i8(&mut self, name: &str, dims: &[usize], data: &[i8]) -> String {
        let raw: Vec<u8> = data.iter().map(|&v| v as u8).collect();
        self.init_raw(name, dims, INT8, &raw);
        name.to_string()
    }

    pub fn init_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init_raw(name, dims, INT64, &raw);
        name.to_string()
    }

    pub fn scalar_f32(&mut self, hint: &str, v: f32) -> String {
        let name = self.fresh(hint);
        self.init_f32(&name, &[], &[v])
    }

    pub fn ints(&mut self, hint: &str, vs: &[i64]) -> String {
        let name = self.fresh(hint);
        self.init_i64(&name, &[vs.len()], vs)
    }

    /// Serialise the model.
    pub fn model(&self, name: &str, metadata: &[(&str, String)]) -> Vec<u8> {
        let mut g = Pb::default();
        for n in &self.nodes {
            g.msg(1, n);
        }
        g.str(2, name);
        for t in &self.inits {
            g.msg(5, t);
        }
        for i in &self.inputs {
            g.msg(11, i);
        }
        for o in &self.outputs {
            g.msg(12, o);
        }
        let mut m = Pb::default();
        m.int(1, IR_VERSION);
        m.str(2, "distill");
        m.str(3, env!("CARGO_PKG_VERSION"));
        m.msg(7, &g);
        let mut opset = Pb::default();
        opset.str(1, "");
        opset.int(2, OPSET);
        m.msg(8, &opset);
        for (k, v) in metadata {
            let mut e = Pb::default();
            e.str(1, k);
            e.str(2, v);
            m.msg(14, &e);
        }
        m.0
    }
}

/// IEEE half from f32, round to nearest even (no dependency).
pub fn f32_to_f16(v: f32) -> u16 {
    let x = v.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let mant = x & 0x007f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = m >> shift;
        let rem = m & ((1 << shift) - 1);
        if rem > half || (rem == half && (r & 1) == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && (r & 1) == 1) {
        r += 1;
    }
    sign | r as u16
}

/// Weight precision in the exported graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// f16 weights, cast to f32 at load (halves the file; compute stays f32).
    F16,
    /// int8 weights with per-row (embeddings) / per-output-channel (linear)
    /// symmetric scales, dequantized in the graph (QDQ, weight-only).
    Int8,
}

/// Symmetric int8 quantisation of `data` viewed as `[rows, cols]`, one scale
/// per row (`axis = 0`) or per column (`axis = 1`). Returns (values, scales).
pub fn quantize(data: &[f32], rows: usize, cols: usize, axis: usize) -> (Vec<i8>, Vec<f32>) {
    let groups = if axis == 0 { rows } else { cols };
    let mut scales = vec![0f32; groups];
    for r in 0..rows {
        for c in 0..cols {
            let g = if axis == 0 { r } else { c };
            scales[g] = scales[g].max(data[r * cols + c].abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = (0..rows * cols)
        .map(|i| {
            let g = if axis == 0 { i / cols } else { i % cols };
            (data[i] / scales[g]).round().clamp(-127.0, 127.0) as i8
        })
        .collect();
    (q, scales)
}

struct Builder<'a> {
    g: &'a mut Graph,
    precision: Precision,
}

impl Builder<'_> {
    /// A weight matrix `[rows, cols]` as an f32 value in the graph.
    fn matrix(&mut self, name: &str, t: &HostTensor, quant_axis: usize) -> String {
        let (rows, cols) = (t.dims[0], t.dims.get(1).copied().unwrap_or(1));
        match self.precision {
            Precision::F32 => self.g.init_f32(name, &t.dims, &t.data),
            Precision::F16 => {
                let h = self.g.init_f16(&format!("{name}_f16"), &t.dims, &t.data);
                self.g
                    .node("Cast", &[&h], &[Attr::Int("to", i64::from(FLOAT))])
            }
            Precision::Int8 => {
                let (q, scales) = quantize(&t.data, rows, cols, quant_axis);
                let qn = self.g.init_i8(&format!("{name}_q"), &t.dims, &q);
                let sn = self
                    .g
                    .init_f32(&format!("{name}_scale"), &[scales.len()], &scales);
                self.g.node(
                    "DequantizeLinear",
                    &[&qn, &sn],
                    &[Attr::Int("axis", quant_axis as i64)],
                )
            }
        }
    }

    /// Small vectors (biases, norms) stay f32.
    fn vector(&mut self, name: &str, t: &HostTensor) -> String {
        self.g.init_f32(name, &t.dims, &t.data)
    }

    /// `x W + b`.
    fn linear(&mut self, name: &str, x: &str, l: &LinearW) -> String {
        let w = self.matrix(&format!("{name}.weight"), &l.weight, 1);
        let y = self.g.node("MatMul", &[x, &w], &[]);
        match &l.bias {
            Some(b) => {
                let b = self.vector(&format!("{name}.bias"), b);
                self.g.node("Add", &[&y, &b], &[])
            }
            None => y,
        }
    }

    fn layer_norm(&mut self, name: &str, x: &str, n: &NormW) -> String {
        let gamma = self.vector(&format!("{name}.gamma"), &n.gamma);
        let beta = match &n.beta {
            Some(b) => self.vector(&format!("{name}.beta"), b),
            None => {
                let zeros = HostTensor {
                    dims: n.gamma.dims.clone(),
                    data: vec![0.0; n.gamma.data.len()],
                };
                self.vector(&format!("{name}.beta"), &zeros)
            }
        };
        self.g.node(
            "LayerNormalization",
            &[x, &gamma, &beta],
            &[Attr::Int("axis", -1), Attr::Float("epsilon", n.epsilon)],
        )
    }

    /// Embedding lookup `table[ids]` → `[b, s, dim]`; int8 gathers the int8
    /// rows and their per-row scales, then dequantizes only what was gathered.
    fn embedding(&mut self, name: &str, ids: &str, t: &HostTensor) -> String {
        match self.precision {
            Precision::Int8 => {
                let (rows, cols) = (t.dims[0], t.dims[1]);
                let (q, scales) = quantize(&t.data, rows, cols, 0);
                let qn = self.g.init_i8(&format!("{name}_q"), &t.dims, &q);
                let sn = self.g.init_f32(&format!("{name}_scale"), &[rows], &scales);
                let rows_q = self.g.node("Gather", &[&qn, ids], &[Attr::Int("axis", 0)]);
                let rows_f = self
                    .g
                    .node("Cast", &[&rows_q], &[Attr::Int("to", i64::from(FLOAT))]);
                let s = self.g.node("Gather", &[&sn, ids], &[Attr::Int("axis", 0)]);
                let axes = self.g.ints("axes", &[-1]);
                let s3 = self.g.node("Unsqueeze", &[&s, &axes], &[]);
                self.g.node("Mul", &[&rows_f, &s3], &[])
            }
            _ => {
                let table = self.matrix(name, t, 0);
                self.g
                    .node("Gather", &[&table, ids], &[Attr::Int("axis", 0)])
            }
        }
    }

    /// Mean over the sequence of `x` `[b, s, d]` where `mask` `[b, s]` (f32) is 1.
    fn masked_mean(&mut self, x: &str, mask: &str) -> String {
        let axes2 = self.g.ints("axes", &[2]);
        let m3 = self.g.node("Unsqueeze", &[mask, &axes2], &[]);
        let xm = self.g.node("Mul", &[x, &m3], &[]);
        let axes1 = self.g.ints("axes", &[1]);
        let summed = self
            .g
            .node("ReduceSum", &[&xm, &axes1], &[Attr::Int("keepdims", 0)]);
        let lens = self
            .g
            .node("ReduceSum", &[mask, &axes1], &[Attr::Int("keepdims", 1)]);
        let one = self.g.scalar_f32("one", 1.0);
        let lens = self.g.node("Max", &[&lens, &one], &[]);
        self.g.node("Div", &[&summed, &lens], &[])
    }
}

/// Build the ONNX model of a student.
pub fn build(
    weights: &NetWeights,
    task: Task,
    labels: usize,
    precision: Precision,
    metadata: &[(&str, String)],
) -> Vec<u8> {
    let mut graph = Graph::default();
    graph.inputs.push(value_info(
        "input_ids",
        INT64,
        &[Dim::Named("batch"), Dim::Named("sequence")],
    ));
    let mut b = Builder {
        g: &mut graph,
        precision,
    };
    let ids = "input_ids";
    // 1.0 on real tokens, 0.0 on padding (id 0).
    let zero = b.g.init_i64("zero_id", &[], &[0]);
    let real = b.g.node("Greater", &[ids, &zero], &[]);
    let mask =
        b.g.node("Cast", &[&real], &[Attr::Int("to", i64::from(FLOAT))]);
    let pooled = match weights {
        NetWeights::Bag { embedding, .. } => {
            let x = b.embedding("embedding", ids, embedding);
            b.masked_mean(&x, &mask)
        }
        NetWeights::Encoder {
            tokens,
            positions,
            type0,
            emb_norm,
            layers,
            post_norm,
            norm,
            cls_pooling,
            normalize,
            ..
        } => {
            let tok = b.embedding("tokens", ids, tokens);
            // positions 0..s
            let shape = b.g.node("Shape", &[ids], &[]);
            let one_idx = b.g.init_i64("one_idx", &[], &[1]);
            let s =
                b.g.node("Gather", &[&shape, &one_idx], &[Attr::Int("axis", 0)]);
            let start = b.g.init_i64("range_start", &[], &[0]);
            let step = b.g.init_i64("range_step", &[], &[1]);
            let pos_ids = b.g.node("Range", &[&start, &s, &step], &[]);
            let pos = b.embedding("positions", &pos_ids, positions);
            let mut x = b.g.node("Add", &[&tok, &pos], &[]);
            if let Some(t0) = type0 {
                let t0 = b.vector("token_type0", t0);
                x = b.g.node("Add", &[&x, &t0], &[]);
            }
            if let Some(n) = emb_norm {
                x = b.layer_norm("embeddings.norm", &x, n);
            }
            // Attention mask: padded keys get `min_float` ([b, 1, 1, s]).
            let is_pad = b.g.node("Equal", &[ids, &zero], &[]);
            let axes12 = b.g.ints("axes", &[1, 2]);
            let pad4 = b.g.node("Unsqueeze", &[&is_pad, &axes12], &[]);
            let d = tokens.dims[1];
            for (li, l) in layers.iter().enumerate() {
                let p = format!("layers.{li}");
                let dk = d / l.heads;
                let h = if *post_norm {
                    x.clone()
                } else {
                    b.layer_norm(&format!("{p}.norm_attn"), &x, &l.norm_attn)
                };
                let heads_shape = b.g.ints("heads_shape", &[0, 0, l.heads as i64, dk as i64]);
                let split = |b: &mut Builder, name: &str, lw: &LinearW, perm: Vec<i64>| {
                    let y = b.linear(&format!("{p}.{name}"), &h, lw);
                    let y = b.g.node("Reshape", &[&y, &heads_shape], &[]);
                    b.g.node("Transpose", &[&y], &[Attr::Ints("perm", perm)])
                };
                let q = split(&mut b, "query", &l.query, vec![0, 2, 1, 3]);
                let k = split(&mut b, "key", &l.key, vec![0, 2, 3, 1]);
                let v = split(&mut b, "value", &l.value, vec![0, 2, 1, 3]);
                let scores = b.g.node("MatMul", &[&q, &k], &[]);
                let sqrt = b.g.scalar_f32("sqrt_dk", (dk as f32).sqrt());
                let scores = b.g.node("Div", &[&scores, &sqrt], &[]);
                let minf = b.g.scalar_f32("min_float", l.min_float);
                let scores = b.g.node("Where", &[&pad4, &minf, &scores], &[]);
                let w = b.g.node("Softmax", &[&scores], &[Attr::Int("axis", -1)]);
                let ctx = b.g.node("MatMul", &[&w, &v], &[]);
                let ctx = b.g.node(
                    "Transpose",
                    &[&ctx],
                    &[Attr::Ints("perm", vec![0, 2, 1, 3])],
                );
                let merged = b.g.ints("merge_shape", &[0, 0, d as i64]);
                let ctx = b.g.node("Reshape", &[&ctx, &merged], &[]);
                let attn = b.linear(&format!("{p}.output"), &ctx, &l.output);
                x = b.g.node("Add", &[&x, &attn], &[]);
                let h2 = if *post_norm {
                    x = b.layer_norm(&format!("{p}.norm_attn"), &x, &l.norm_attn);
                    x.clone()
                } else {
                    b.layer_norm(&format!("{p}.norm_ff"), &x, &l.norm_ff)
                };
                let inner = b.linear(&format!("{p}.ff_inner"), &h2, &l.ff_inner);
                // exact GELU: 0.5 x (1 + erf(x / sqrt 2))
                let sqrt2 = b.g.scalar_f32("sqrt2", std::f32::consts::SQRT_2);
                let half = b.g.scalar_f32("half", 0.5);
                let one = b.g.scalar_f32("one", 1.0);
                let e = b.g.node("Div", &[&inner, &sqrt2], &[]);
                let e = b.g.node("Erf", &[&e], &[]);
                let e = b.g.node("Add", &[&e, &one], &[]);
                let e = b.g.node("Mul", &[&inner, &e], &[]);
                let gelu = b.g.node("Mul", &[&e, &half], &[]);
                let ff = b.linear(&format!("{p}.ff_outer"), &gelu, &l.ff_outer);
                x = b.g.node("Add", &[&x, &ff], &[]);
                if *post_norm {
                    x = b.layer_norm(&format!("{p}.norm_ff"), &x, &l.norm_ff);
                }
            }
            if let Some(n) = norm {
                x = b.layer_norm("norm", &x, n);
            }
            let pooled = if *cls_pooling {
                let first = b.g.init_i64("first", &[], &[0]);
                b.g.node("Gather", &[&x, &first], &[Attr::Int("axis", 1)])
            } else {
                b.masked_mean(&x, &mask)
            };
            if *normalize {
                // x / max(||x||, 1e-12)
                let axes1 = b.g.ints("axes", &[1]);
                let sq = b.g.node("Mul", &[&pooled, &pooled], &[]);
                let ss =
                    b.g.node("ReduceSum", &[&sq, &axes1], &[Attr::Int("keepdims", 1)]);
                let n = b.g.node("Sqrt", &[&ss], &[]);
                let tiny = b.g.scalar_f32("tiny", 1e-12);
                let n = b.g.node("Max", &[&n, &tiny], &[]);
                b.g.node("Div", &[&pooled, &n], &[])
            } else {
                pooled
            }
        }
    };
    let h = match weights {
        NetWeights::Bag {
            hidden: Some(hl), ..
        } => {
            let y = b.linear("hidden", &pooled, hl);
            b.g.node("Relu", &[&y], &[])
        }
        _ => pooled,
    };
    let out = match weights {
        NetWeights::Bag { out, .. } | NetWeights::Encoder { out, .. } => out,
    };
    let logits = b.linear("out", &h, out);
    b.g.node_into("Identity", &[&logits], "logits", &[]);
    match task {
        Task::Multilabel => b.g.node_into("Sigmoid", &["logits"], "probs", &[]),
        _ => {
            b.g.node_into("Softmax", &["logits"], "probs", &[Attr::Int("axis", -1)])
        }
    }
    for name in ["logits", "probs"] {
        graph.outputs.push(value_info(
            name,
            FLOAT,
            &[Dim::Named("batch"), Dim::Fixed(labels as i64)],
        ));
    }
    graph.model("distill-student", metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_halves() {
        let mut p = Pb::default();
        p.varint(300);
        assert_eq!(p.0, vec![0xac, 0x02]);
        let mut p = Pb::default();
        p.int(1, -1);
        assert_eq!(p.0.len(), 11, "negative int64 takes ten bytes");
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(1e-8), 0);
        assert_eq!(f32_to_f16(0.000_061_035_156), 0x0400, "smallest normal");
    }

    #[test]
    fn int8_round_trip_error_is_half_a_step() {
        let data: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 10.0).collect();
        let (q, s) = quantize(&data, 8, 8, 0);
        for (i, &v) in data.iter().enumerate() {
            let back = f32::from(q[i]) * s[i / 8];
            assert!((back - v).abs() <= s[i / 8] / 2.0 + 1e-7);
        }
    }
}
